"""A local page to draw a digit and watch the model's probabilities: the FastAPI app and the `serve` command.

`python scripts/serve.py [--port 8000] [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>]`
FastAPI and uvicorn are the optional extra `serve`: they are imported only when this command runs.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and
# `fastapi.Request` is only imported inside create_app.
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits.errors import UserError
from kaggle_digits.predict import attribution
from kaggle_digits.predict.predictor import Predictor, read_gray, to_mnist

HOST = "127.0.0.1"  # loopback only: the page is for the person at this machine
DEFAULT_PORT = 8000
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # a 280x280 drawing is ~10 kB; a phone photo as JPEG fits too
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
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    # No /docs: its page loads scripts from a CDN, and this app must work without any outside network.
    app = fastapi.FastAPI(title="kaggle-digits", docs_url=None, redoc_url=None, openapi_url=None)
    page = PAGE.read_text(encoding="utf-8")
    # One prediction at a time: the models are not promised to be thread-safe, and two cores gain
    # nothing from running two at once.
    predict_lock = threading.Lock()
    limit_mb = MAX_UPLOAD_BYTES / 1024 / 1024

    def too_large(size: str) -> Any:
        return fastapi.HTTPException(413, f"upload of {size} is too large: the limit is {limit_mb:g} MB")

    def predict_image(body: bytes, explain: bool) -> dict[str, Any]:
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

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "predictor": predictor.describe()}

    @app.post("/predict")
    async def predict(request: fastapi.Request, explain: str = "0") -> dict[str, Any]:
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
