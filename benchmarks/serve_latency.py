"""Latency of `POST /predict`: the real `serve` command on a loopback port, a real HTTP client, 200 requests.

    python benchmarks/serve_latency.py [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>]
        [--requests 200] [--runs-dir runs] [--submissions-dir submissions]

Default predictor: the one `serve` picks (the newest ensemble in submissions/, else the best trial).
The request is what the drawing page sends: a 280x280 PNG of a dark digit on white (real MNIST test
digits, drawn large). The baseline, in this process with the same predictor, is the same work without
HTTP: decoding and preprocessing the PNG, then predict_proba on one image (also shown: predict_proba
alone). Blocks of requests and baseline calls alternate, so both see the same machine state (timing here
is bimodal), and the medians are compared.
"""

from __future__ import annotations

import argparse
import http.client
import io
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import BUNDLED_MNIST_DIR
from kaggle_digits.predict import predictor as predict

BLOCK = 20  # requests per block; blocks of HTTP and in-process calls alternate
WARMUP = 10
AIM_MS = 50.0


def page_like_pngs(count: int = 20) -> list[bytes]:
    """Real MNIST test digits as the page sends them: 280x280 PNG, black ink on white."""
    X, _ = data.load_mnist(BUNDLED_MNIST_DIR)
    _, test_idx = data.mirror_split(len(X))
    pngs = []
    for i in test_idx[:count]:
        image = Image.fromarray(255 - X[i]).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA")
        out = io.BytesIO()
        image.save(out, "PNG")
        pngs.append(out.getvalue())
    return pngs


def start_server(options: list[str]) -> tuple[subprocess.Popen, int, list[str]]:
    """`python scripts/serve.py --port 0 ...`; returns the process, its port and its output so far."""
    process = subprocess.Popen(
        [sys.executable, "scripts/serve.py", "--port", "0", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"serving http://127\.0\.0\.1:(\d+)/", line)
            if match:
                port.append(int(match.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300) or not port:
        process.kill()
        sys.exit("serve did not start:\n" + "".join(lines))
    return process, port[0], lines


def post(connection: http.client.HTTPConnection, png: bytes) -> float:
    """One POST /predict on a kept-alive connection; seconds until the whole answer is read."""
    started = time.perf_counter()
    connection.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"POST /predict answered {response.status}: {body[:200]!r}")
    return elapsed


def summary(seconds: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble")
    which.add_argument("--trial")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--submissions-dir", default="submissions")
    args = parser.parse_args()

    folders = ["--runs-dir", args.runs_dir, "--submissions-dir", args.submissions_dir]
    choice = ["--ensemble", args.ensemble] if args.ensemble else ["--trial", args.trial] if args.trial else []
    predictor = predict.load_predictor(args.runs_dir, args.submissions_dir, args.ensemble, args.trial)
    print(f"predictor: {predict.summary(predictor)}")
    if isinstance(predictor, predict.EnsemblePredictor):
        for member, weight in zip(predictor.members, predictor.weights):
            print(f"  {member.name}: {member.trial.model}, {len(member.fold_models)} fold models, weight {weight:.3f}")
    pngs = page_like_pngs()
    digits = [predict.prepare(png) for png in pngs]

    process, port, lines = start_server(choice + folders)
    print(f"server: {''.join(lines).strip().splitlines()[-1]}")
    http_times: list[float] = []
    local_times: list[float] = []
    bare_times: list[float] = []
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(WARMUP):
            post(connection, pngs[i % len(pngs)])
            predictor.predict_proba(predict.prepare(pngs[i % len(pngs)])[np.newaxis])
        started = time.monotonic()
        done = 0
        while done < args.requests:
            n = min(BLOCK, args.requests - done)
            # A new connection per block: the server closes one left idle for 5 s (uvicorn's keep-alive
            # timeout) while this process runs the baseline. Connecting on loopback costs ~0.1 ms.
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for k in range(done, done + n):
                http_times.append(post(connection, pngs[k % len(pngs)]))
            for k in range(done, done + n):
                t0 = time.perf_counter()
                predictor.predict_proba(predict.prepare(pngs[k % len(pngs)])[np.newaxis])
                local_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                predictor.predict_proba(digits[k % len(digits)][np.newaxis])
                bare_times.append(time.perf_counter() - t0)
            done += n
            print(f"requests {done}/{args.requests}  elapsed {time.monotonic() - started:.0f}s", flush=True)
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)

    http_med, http_p95 = summary(http_times)
    local_med, local_p95 = summary(local_times)
    bare_med, bare_p95 = summary(bare_times)
    print()
    print(f"{'':44}{'median':>10}{'p95':>10}   (ms, {args.requests} each)")
    print(f"{'POST /predict over HTTP (loopback)':44}{http_med:10.1f}{http_p95:10.1f}")
    print(f"{'baseline: PNG decode + preprocess + predict':44}{local_med:10.1f}{local_p95:10.1f}")
    print(f"{'baseline: predict_proba alone':44}{bare_med:10.1f}{bare_p95:10.1f}")
    print(
        f"HTTP / in-process median: {http_med / local_med:.2f}x; mean of HTTP {statistics.mean(http_times) * 1000:.1f} ms"
    )
    verdict = "met" if http_med < AIM_MS else "NOT met"
    print(f"aim: median under {AIM_MS:.0f} ms: {verdict} ({http_med:.1f} ms)")


if __name__ == "__main__":
    main()
