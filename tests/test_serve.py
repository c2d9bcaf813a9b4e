"""`serve`: the API through FastAPI's test client, and the drawing page in a real headless Chromium talking
to the real `serve` command on a loopback port."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from PIL import Image

from kaggle_digits.predict import predictor as predict
from kaggle_digits.predict import serve
from kaggle_digits.search import runs
from tests.conftest import REPO, user_image

# Starlette's test client warns that it will move to another HTTP library; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def predictor(tuned_mlp):
    return predict.TrialPredictor.load(runs.load_trial(tuned_mlp.best_trial))


@pytest.fixture(scope="module")
def client(predictor):
    from fastapi.testclient import TestClient

    # As a browser on this machine sends it: Host 127.0.0.1 (the client's default, "testserver", is refused).
    with TestClient(serve.create_app(predictor), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def digit_png():
    """A real MNIST test-split 3, as dark ink on a white 260x200 PNG, and its label."""
    from kaggle_digits.data import dataset as data

    X, y = data.load_mnist(REPO / "data" / "mnist")
    _, test_idx = data.mirror_split(len(X))
    i = int(test_idx[np.flatnonzero(y[test_idx] == 3)[0]])
    return user_image(X[i], "PNG")


def test_predict_answers_label_probabilities_and_what_the_model_saw(client, predictor, digit_png):
    response = client.post("/predict", content=digit_png, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = predictor.predict_proba(predict.prepare(digit_png)[np.newaxis])[0]
    assert answer["label"] == int(expected.argmax())
    assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-6)
    assert np.array_equal(np.array(answer["image"], dtype=np.uint8), predict.prepare(digit_png))
    assert "attribution" not in answer  # only when asked: the map costs more than the prediction


def test_predict_with_explain_answers_the_map_of_the_predicted_label(client, predictor, digit_png):
    from kaggle_digits.predict import attribution

    response = client.post("/predict?explain=1", content=digit_png, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    answer = response.json()
    amap = np.array(answer["attribution"], dtype=np.float32)
    assert amap.shape == (28, 28)
    digit = predict.prepare(digit_png)
    expected = attribution.explain(predictor, digit[np.newaxis], [answer["label"]]).maps[0]
    np.testing.assert_allclose(amap, expected, rtol=1e-3, atol=1e-7)
    assert amap.max() > 0  # some ink pushes toward the label the model gave
    bad = client.post("/predict?explain=maybe", content=digit_png, headers={"Content-Type": "image/png"})
    assert bad.status_code == 400 and bad.json()["detail"] == "explain=maybe: expected 0 or 1"


def test_bad_uploads_are_4xx_with_a_message(client):
    blank = io.BytesIO()
    Image.new("L", (280, 280), 255).save(blank, "PNG")
    ten_mb = bytes(10 * 1024 * 1024)

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for _ in range(40):
            yield bytes(100_000)

    cases = [
        (client.post("/predict", content=b""), 400, "empty body"),
        (client.post("/predict", content=ten_mb), 413, "upload of 10.0 MB is too large: the limit is 2 MB"),
        (client.post("/predict", content=chunks()), 413, "too large"),
        (client.post("/predict", content=b"%PDF-1.4 not an image"), 400, "upload: not a PNG or JPEG image"),
        (client.post("/predict", content=blank.getvalue()[:100]), 400, "damaged or unreadable image"),
        (client.post("/predict", content=blank.getvalue()), 422, "no ink found"),
        (client.post("/predict", files={"file": ("d.png", blank.getvalue())}), 415, "not a form"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    assert client.get("/health").json()["status"] == "ok"  # still serving


def test_health_names_the_predictor_and_the_page_is_self_contained(client, tuned_mlp):
    health = client.get("/health").json()
    assert health["predictor"]["kind"] == "trial"
    # Not where the user's files are: the trial's folder is outside the current one, so `<study>/trial-<n>`.
    assert health["predictor"]["path"] == f"{tuned_mlp.best_trial.parent.name}/{tuned_mlp.best_trial.name}"
    assert health["predictor"]["folds"] == 2
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'id="clear"' in page.text and 'id="upload"' in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), "the page must not load anything from outside"
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would fetch scripts from a CDN


def test_health_shows_a_path_inside_the_current_folder_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert serve.shown_path(tmp_path / "runs" / "mlp" / "trial-3") == "runs/mlp/trial-3"
    assert serve.shown_path("subs/x.json") == "subs/x.json"
    assert serve.shown_path("/elsewhere/home/me/subs/x.json") == "subs/x.json"


def test_only_the_loopback_host_names_are_answered(client):
    # A page on another site that rebinds its name to 127.0.0.1 still sends its own name as Host.
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:5000", "[::1]", "[::1]:8000"):
        response = client.get("/health", headers={"Host": host})
        assert response.status_code == 200, host
    for host in ("evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example", "localhost.evil", "0.0.0.0"):
        response = client.get("/health", headers={"Host": host})
        assert response.status_code == 400 and "predictor" not in response.text, host
        assert client.post("/predict", content=b"x", headers={"Host": host}).status_code == 400


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels (8-bit gray) with only a few bytes of image data: what a
    decompression bomb looks like from its header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    )


def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded(client):
    # A real one: 5000x5000 white pixels compress to a few kB of PNG.
    big = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(big, "PNG")
    assert len(big.getvalue()) < serve.MAX_UPLOAD_BYTES
    cases = [
        (big.getvalue(), "upload: 5000x5000 pixels is too large (limit 16.8 megapixels): send a smaller image"),
        (_png_header_only(20_000, 3_000), "upload: 20000x3000 pixels is too large (limit 16.8 megapixels)"),
        # Over Pillow's own limit (which it refuses on opening): the same answer, without the size.
        (_png_header_only(30_000, 30_000), "upload: the image is too large (limit 16.8 megapixels)"),
    ]
    for body, detail in cases:
        response = client.post("/predict", content=body, headers={"Content-Type": "image/png"})
        assert response.status_code == 413 and response.json()["detail"].startswith(detail)
    # At the limit: decoded (and found empty: no ink). So is a larger photo as JPEG, which is decoded at a
    # fraction of its size.
    for size, kind in [((4096, 4096), "PNG"), ((6000, 4000), "JPEG")]:
        image = io.BytesIO()
        Image.new("L", size, 255).save(image, kind)
        assert len(image.getvalue()) < serve.MAX_UPLOAD_BYTES
        response = client.post("/predict", content=image.getvalue())
        assert response.status_code == 422 and "no ink" in response.json()["detail"], (kind, response.text)


def test_requests_beyond_those_being_read_at_once_are_answered_429(client, digit_png):
    slots = client.app.state.decoding
    for _ in range(serve.MAX_DECODING):  # as if that many uploads were being read and decoded now
        assert slots.acquire(blocking=False)
    try:
        busy = client.post("/predict", content=digit_png, headers={"Content-Type": "image/png"})
        assert busy.status_code == 429
        assert busy.json()["detail"] == (
            f"busy: {serve.MAX_DECODING} images are being read already; send this one again in a moment"
        )
    finally:
        for _ in range(serve.MAX_DECODING):
            slots.release()
    assert client.post("/predict", content=digit_png, headers={"Content-Type": "image/png"}).status_code == 200
    with pytest.raises(ValueError):  # every slot was given back
        slots.release()


def test_serve_without_fastapi_says_how_to_install_it(run_cli, tuned_mlp, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    result = run_cli("serve", "--trial", tuned_mlp.best_trial)
    assert result.code == 2
    assert result.err.strip() == (
        'error: serve needs FastAPI and uvicorn (uvicorn is not installed): pip install -e ".[serve]"'
    )


def test_serve_on_a_busy_port_is_one_line(run_cli, tuned_mlp):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", port, "--trial", tuned_mlp.best_trial)
    assert result.code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.err
    assert len(result.err.strip().splitlines()) == 1


# --- the page in a real browser ----------------------------------------------------------------


@pytest.fixture
def server(tuned_mlp):
    """`python scripts/serve.py --port 0 --trial ...` in a subprocess; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "scripts/serve.py", "--port", "0", "--trial", str(tuned_mlp.best_trial)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(120):
        process.kill()
        pytest.fail("serve did not start:\n" + "".join(lines))
    yield url[0]
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0, "".join(lines)
    reader.join(5)
    assert "stopped" in "".join(lines)


def test_kept_alive_connections_do_not_wait_for_delayed_acks():
    """With Nagle's algorithm on, each answer after the first on a connection stalled ~40 ms for a delayed
    ACK. asyncio (uvicorn's server) turns it off on the connections it accepts only when the listening
    socket says it is TCP: checked on the socket itself, not by timing requests (a busy machine is slow)."""
    import asyncio

    listener = serve.listen(0)

    async def accepted_nodelay() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_client, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            nodelay = await asyncio.wait_for(accepted, 60)
            writer.close()
        return nodelay

    assert asyncio.run(accepted_nodelay()) != 0


@pytest.fixture
def browser():
    """Debian's headless Chromium through chromedriver, with a fresh profile and no outside network."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them: in CI this test must run
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium then never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _bars(driver) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(bar.get_attribute("data-probability")) for bar in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")]


def test_drawing_on_the_page_shows_the_prediction_as_ten_bars(server, browser, predictor, digit_png, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "predictor").text.startswith("model: trial mlp/trial-"))
    assert len(_bars(browser)) == 10 and browser.find_element(By.ID, "label").text == "–"

    # One stroke with the mouse: a pointerdown, moves and a pointerup on the canvas (a "7": bar, then down).
    pad = browser.find_element(By.ID, "pad")
    stroke = ActionChains(browser).move_to_element_with_offset(pad, -70, -90).click_and_hold()
    for x, y in [(-20, -90), (30, -90), (70, -90), (50, -40), (30, 10), (10, 60), (0, 100)]:
        stroke.move_to_element_with_offset(pad, x, y)
    stroke.release().perform()
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip() not in ("", "–"))
    wait.until(lambda d: abs(sum(_bars(d)) - 1) < 1e-3)

    # The bars are the model's probabilities for exactly what was drawn.
    shown = _bars(browser)
    label = int(browser.find_element(By.ID, "label").text)
    drawn = base64.b64decode(browser.execute_script("return pad.toDataURL('image/png');").split(",", 1)[1])
    expected = predictor.predict_proba(predict.prepare(drawn)[np.newaxis])[0]
    np.testing.assert_allclose(shown, expected, atol=1e-5)
    assert label == int(np.argmax(expected)) == int(np.argmax(shown))
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#bars .fill')].map(f => f.getBoundingClientRect().width);"
    )
    assert len(widths) == 10 and int(np.argmax(widths)) == label and widths[label] > 0
    assert (
        browser.find_element(By.CSS_SELECTOR, f'#bars .bar[data-digit="{label}"]').get_attribute("class") == "bar best"
    )

    # Beside the bars, the map of the predicted label over the digit: red where ink pushes toward it.
    map_canvas = browser.find_element(By.ID, "map")
    wait.until(lambda d: map_canvas.get_attribute("data-label") == str(label))
    assert map_canvas.is_displayed() and map_canvas.size["width"] >= 100
    red = browser.execute_script(
        "const d = mapCtx.getImageData(0, 0, 28, 28).data; let red = 0;"
        "for (let i = 0; i < d.length; i += 4) { if (d[i] > 200 && d[i + 2] < 150) red++; } return red;"
    )
    assert red > 0, "the map shows no pixel pushing toward the label"
    assert f"toward {label}" in browser.find_element(By.ID, "map-caption").text

    # Clear empties the pad and the answer.
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "label").text == "–" and _bars(browser) == [0.0] * 10
    assert map_canvas.get_attribute("data-label") == ""
    assert browser.execute_script(
        "return ctx.getImageData(0, 0, pad.width, pad.height).data.every((v, i) => i % 4 === 3 || v === 255);"
    )

    # Upload: the button's file input sends the file itself.
    upload = tmp_path / "three.png"
    upload.write_bytes(digit_png)
    expected = predictor.predict_proba(predict.prepare(digit_png)[np.newaxis])[0]
    file_input = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false;", file_input)
    file_input.send_keys(str(upload))
    wait.until(lambda d: d.find_element(By.ID, "label").text == str(int(np.argmax(expected))))
    np.testing.assert_allclose(_bars(browser), expected, atol=1e-5)

    # A blank upload is refused with the server's message on the page.
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    file_input.send_keys(str(blank))
    wait.until(lambda d: "no ink found" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "label").text == "–"
