"""A local page to draw a digit and watch the model's probabilities: the FastAPI app and the `serve` command.

`python scripts/serve.py [--port 8000] [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>]`
FastAPI and uvicorn are the optional extra `serve`: they are imported only when this command runs.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and
# `fastapi.Request` is only imported inside create_app.
import io
import os
import socket
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kaggle_digits.errors import UserError
from kaggle_digits.predict import attribution
from kaggle_digits.predict.predictor import WORKING_SIDE, Predictor, read_gray, to_mnist

HOST = "127.0.0.1"  # loopback only: the page is for the person at this machine
# The Host names a request may carry (any port): a web page elsewhere that rebinds its own name to
# 127.0.0.1 still sends that name, and is refused.
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_PORT = 8000
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # a 280x280 drawing is ~10 kB; a phone photo as JPEG fits too
# Pixels one upload may decode to: a drawing or a photo fits (a JPEG is decoded at a fraction of its size),
# while a small PNG that inflates to a huge image (a few kB can say 50 megapixels) is refused from its
# header, before any decoding.
MAX_PIXELS = 4096 * 4096
MAX_DECODING = 4  # requests read and decoded at once; more are answered 429 at once, not queued
PAGE = Path(__file__).resolve().parents[1] / "static" / "draw.html"
INSTALL_HINT = 'pip install -e ".[serve]"'


def serving_modules() -> tuple[Any, Any]:
    """fastapi and uvicorn, or a UserError saying how to install them."""
    try:
        import fastapi
        import uvicorn
    except ImportError as exc:
        raise UserError(f"serve needs FastAPI and uvicorn ({exc.name} is not installed): {INSTALL_HINT}") from None
    return fastapi, uvicorn


def create_app(predictor: Predictor) -> Any:
    """The FastAPI app: `GET /` the drawing page, `POST /predict` an image, `GET /health` the predictor.

    POST /predict takes the PNG or JPEG bytes as the request body (at most MAX_UPLOAD_BYTES) and
    answers `{"label": int, "probabilities": [10 floats], "image": 28x28 ints}` (image: what the model
    saw); with `?explain=1` also `"attribution"`: the 28x28 map of the predicted label (floats; positive
    pushes toward it). A bad upload is a 4xx answer `{"detail": "one line"}`.
    """
    fastapi, _ = serving_modules()
    from fastapi import Request
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    # No /docs: its page loads scripts from a CDN, and this app must work without any outside network.
    app = fastapi.FastAPI(title="kaggle-digits", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(ALLOWED_HOSTS), www_redirect=False)
    # A request holds a slot from its first byte to its answer: bodies and decoded images in memory are
    # bounded by MAX_DECODING of each. (On app.state so that a test can fill it.)
    app.state.decoding = threading.BoundedSemaphore(MAX_DECODING)
    page = PAGE.read_text(encoding="utf-8")
    # One prediction at a time: the models are not promised to be thread-safe, and two cores gain
    # nothing from running two at once.
    predict_lock = threading.Lock()
    limit_mb = MAX_UPLOAD_BYTES / 1024 / 1024

    def too_large(size: str) -> Any:
        return fastapi.HTTPException(413, f"upload of {size} is too large: the limit is {limit_mb:g} MB")

    def predict_image(body: bytes, explain: bool) -> dict[str, Any]:
        check_pixels(body)
        try:
            gray = read_gray(body, "upload")
        except UserError as exc:
            raise fastapi.HTTPException(400, str(exc)) from None
        try:
            digit = to_mnist(gray, "upload")
        except UserError as exc:
            raise fastapi.HTTPException(422, str(exc)) from None
        with predict_lock:
            proba = predictor.predict_proba(digit[np.newaxis])[0]
            label = int(np.argmax(proba))
            amap = attribution.explain(predictor, digit[np.newaxis], [label]).maps[0] if explain else None
        answer = {
            "label": label,
            "probabilities": [round(float(p), 6) for p in proba],
            "image": digit.tolist(),
        }
        if amap is not None:
            answer["attribution"] = [[float(f"{v:.4g}") for v in row] for row in amap.tolist()]
        return answer

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    def check_pixels(body: bytes) -> None:
        """413 when the image would decode to more than MAX_PIXELS, found from its header alone (read_gray's
        own limit is for files). A JPEG counts at the reduced scale read_gray decodes it at."""
        limit = f"(limit {MAX_PIXELS / 1e6:.1f} megapixels): send a smaller image"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(body)) as image:  # reads the header only
                    width, height = image.size
                    if image.format == "JPEG":
                        image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))  # as read_gray: no decoding yet
                    decoded = image.size[0] * image.size[1]
        except Image.DecompressionBombError:  # over Pillow's own limit, far above ours
            raise fastapi.HTTPException(413, f"upload: the image is too large {limit}") from None
        except Exception:  # noqa: BLE001 - not an image: read_gray says what is wrong with it
            return
        if decoded > MAX_PIXELS:
            raise fastapi.HTTPException(413, f"upload: {width}x{height} pixels is too large {limit}")

    describe = predictor.describe()
    if describe.get("path"):
        describe["path"] = shown_path(describe["path"])

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "predictor": describe}

    @app.post("/predict")
    async def predict(request: Request, explain: str = "0") -> dict[str, Any]:
        if not app.state.decoding.acquire(blocking=False):
            raise fastapi.HTTPException(
                429, f"busy: {MAX_DECODING} images are being read already; send this one again in a moment"
            )
        try:
            return await predict_body(request, explain)
        finally:
            app.state.decoding.release()

    async def predict_body(request: Request, explain: str) -> dict[str, Any]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise too_large(f"{int(declared) / 1024 / 1024:.1f} MB")
        if request.headers.get("content-type", "").startswith("multipart/"):
            raise fastapi.HTTPException(
                415, "send the image itself as the request body (curl --data-binary @digit.png), not a form"
            )
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a lying or absent length is no way round
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                raise too_large(f"more than {limit_mb:g} MB")
        if not body:
            raise fastapi.HTTPException(400, "empty body: send a PNG or JPEG image")
        if explain not in ("0", "1", "false", "true"):
            raise fastapi.HTTPException(400, f"explain={explain}: expected 0 or 1")
        return await run_in_threadpool(predict_image, bytes(body), explain in ("1", "true"))

    return app


def shown_path(path: str | os.PathLike) -> str:
    """A path as /health shows it: relative to the current folder when inside it, else its last two parts
    (`<study>/trial-<n>`, `<submissions>/<name>.json`); never where the user's files are on this machine."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def warm_up(predictor: Predictor) -> None:
    """One prediction and one map of a drawn stroke before serving: the first stroke on the page would
    otherwise wait while the models build their compiled prediction and gradient functions."""
    stroke = np.zeros((1, 28, 28), dtype=np.uint8)
    stroke[0, 4:24, 13:15] = 255
    proba = predictor.predict_proba(stroke)
    attribution.explain(predictor, stroke, [int(np.argmax(proba[0]))])


def listen(port: int) -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say
    # they are TCP; with it on, every answer on a kept-alive connection waited for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError as exc:
        listener.close()
        raise UserError(
            f"--port {port}: cannot listen on {HOST}:{port} ({exc.strerror}); choose another port"
        ) from None
    listener.listen(128)
    return listener
