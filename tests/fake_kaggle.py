"""A small fake Kaggle server for tests: the real `kaggle` client talks to it over HTTP on 127.0.0.1.

It answers the routes this toolkit uses, the way the client sends them (`POST /v1/<service>/<Method>`
with JSON and Basic auth): competition download (a 302 to a zip it serves), submission upload (start
upload -> PUT -> create), the submission limits, the submission list (scoring uploads against a known solution), dataset
create/version with blob uploads, kernel push, kernel status, kernel output listing and file download,
the weekly accelerator quota, and a kernel session's log (the list route and the live stream, which the
client reads with a GET). It can answer any route with an error status, or go down. Every request is
recorded.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    route: str  # the API method name (e.g. "CreateSubmission"), or "files"/"upload" for blob traffic
    body: Any  # parsed JSON for API calls, raw bytes for uploads
    authorized: bool


@dataclass
class FakeSubmission:
    ref: int
    file_name: str
    description: str
    content: bytes
    date: str
    polls: int = 0
    status: str = "PENDING"
    public_score: str = ""
    error: str = ""


@dataclass
class FakeKernel:
    slug: str
    versions: list[dict] = field(default_factory=list)


class FakeKaggle:
    """Start with `start()`; `url` is the endpoint to give the client. Configure the public attributes."""

    def __init__(self, username: str = "kdtester", key: str = "0123456789abcdef") -> None:
        self.username, self.key = username, key
        self.requests: list[Recorded] = []
        # route name ("*" for every API route) -> (HTTP status, message); consulted before answering.
        self.failures: dict[str, tuple[int, str]] = {}
        self.competition_zip: bytes | None = None
        self.solution: list[int] | None = None  # labels by ImageId - 1, used to score submissions
        self.polls_until_scored = 1
        self.scoring_error: str | None = None  # make every submission end with status ERROR
        self.submissions: list[FakeSubmission] = []
        # GetSubmissionLimits: a daily limit, submissions made earlier today (before the test's uploads),
        # the lifetime cap being reached, and whether the account has a team yet (without one Kaggle
        # answers all zeros).
        self.daily_limit = 5
        self.submitted_earlier_today = 0
        self.limited_by_total = False
        self.on_team = True
        self.blobs: dict[str, dict] = {}  # token -> {"name", "content"}
        self.datasets: dict[str, list[dict[str, bytes]]] = {}  # "owner/slug" -> versions of {name: bytes}
        self.kernels: dict[str, FakeKernel] = {}
        self.dataset_processing: list[str] = []  # statuses a new version shows before READY, e.g. ["BLOBS_RECEIVED"]
        self._processing: list[str] = []
        self.kernel_push_error: str | None = None
        self.kernel_statuses: list[str] = ["COMPLETE"]  # consumed one per status call; the last one stays
        self.kernel_failure_message = ""
        self.kernel_outputs: dict[str, bytes] = {}
        self.kernel_log = "[]"
        # Successive answers' logs (ListKernelSessionOutput), one per call; the last one stays.
        self.kernel_log_steps: list[str] = []
        # The live log stream (GET /v1/kernels/logs/stream/<owner>/<slug>): its events, sent as Server-Sent
        # Events while `kernel_running`, else as the finished session's JSON blob; `stream_breaks` cuts the
        # first connections after `stream_break_after` events (the client opens it again).
        self.kernel_log_events: list[dict] = []
        self.kernel_running = True
        self.stream_breaks = 0
        self.stream_break_after = 1
        # GetAcceleratorQuotaStatistics: the weekly GPU quota (seconds) and its refresh time.
        self.gpu_seconds_used = 3600.0
        self.gpu_seconds_reserved = 0.0
        self.gpu_seconds_allowed = 30 * 3600.0
        self.quota_refresh = "2026-12-12T00:00:00Z"
        self.tokens: dict[str, str] = {}  # access token -> user name (KAGGLE_API_TOKEN credentials)
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._counter = 1000

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeKaggle:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Shut the server down; afterwards its port refuses connections (Kaggle unreachable)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- helpers for tests -------------------------------------------------------------------------

    def fail(self, status: int, message: str = "", route: str = "*") -> None:
        """Answer `route` (an API method name, or every one) with this HTTP status and JSON message."""
        self.failures[route] = (status, message or f"fake error {status}")

    def calls(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.route == route]

    def set_competition_files(self, data_dir: Path) -> None:
        """Serve train.csv, test.csv and sample_submission.csv of `data_dir` as digit-recognizer.zip."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ("train.csv", "test.csv", "sample_submission.csv"):
                archive.write(data_dir / name, name)
        self.competition_zip = buffer.getvalue()

    def set_solution(self, solution_csv: Path) -> None:
        with open(solution_csv, newline="") as f:
            rows = list(csv.reader(f))[1:]
        self.solution = [int(label) for _, label in rows]

    def dataset_files(self, ref: str, version: int = -1) -> dict[str, bytes]:
        return self.datasets[ref][version]

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    # --- routes ------------------------------------------------------------------------------------

    def answer(self, route: str, body: dict) -> tuple[int, Any, dict]:
        """(status, JSON answer or bytes, extra headers) for one API call."""
        routes = {
            "DownloadDataFiles": self._download,
            "StartSubmissionUpload": self._start_upload,
            "StartBlobUpload": self._start_upload,
            "CreateSubmission": self._create_submission,
            "ListSubmissions": self._list_submissions,
            "GetSubmissionLimits": self._submission_limits,
            "GetDatasetStatus": self._dataset_status,
            "CreateDataset": self._create_dataset,
            "CreateDatasetVersion": self._create_dataset_version,
            "SaveKernel": self._save_kernel,
            "GetKernelSessionStatus": self._kernel_status,
            "ListKernelSessionOutput": self._kernel_output,
            "GetAcceleratorQuotaStatistics": self._quota,
            "IntrospectToken": self._introspect,
        }
        if route not in routes:
            return 404, {"code": 404, "message": f"fake Kaggle has no route {route}"}, {}
        return routes[route](body)

    def _introspect(self, body: dict) -> tuple[int, Any, dict]:
        user = self.tokens.get(body.get("token", ""))
        return 200, ({"active": True, "username": user} if user else {"active": False}), {}

    def _download(self, body: dict) -> tuple[int, Any, dict]:
        if body.get("competitionName") != "digit-recognizer" or self.competition_zip is None:
            return 404, {"code": 404, "message": "Competition not found"}, {}
        return 302, b"", {"Location": f"{self.url}/files/digit-recognizer.zip"}

    def _start_upload(self, body: dict) -> tuple[int, Any, dict]:
        token = f"blob-{self._next()}"
        self.blobs[token] = {"name": body.get("fileName") or body.get("name"), "content": None}
        return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}, {}

    def _uploaded(self, token: str) -> dict | None:
        blob = self.blobs.get(token)
        return blob if blob is not None and blob["content"] is not None else None

    def _create_submission(self, body: dict) -> tuple[int, Any, dict]:
        blob = self._uploaded(body.get("blobFileTokens", ""))
        if blob is None:
            return 400, {"code": 400, "message": "Submission file was not uploaded"}, {}
        submission = FakeSubmission(
            ref=self._next(),
            file_name=blob["name"],
            description=body.get("submissionDescription", ""),
            content=blob["content"],
            date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        self.submissions.append(submission)
        return 200, {"message": "Successfully submitted to Digit Recognizer", "ref": submission.ref}, {}

    def _score(self, submission: FakeSubmission) -> None:
        if self.scoring_error is not None:
            submission.status, submission.error = "ERROR", self.scoring_error
            return
        rows = list(csv.reader(io.StringIO(submission.content.decode())))[1:]
        truth = self.solution or []
        correct = sum(1 for image_id, label in rows if truth and truth[int(image_id) - 1] == int(label))
        submission.status, submission.public_score = "COMPLETE", f"{correct / max(len(truth), 1):.5f}"

    def _list_submissions(self, body: dict) -> tuple[int, Any, dict]:
        listed = []
        for s in reversed(self.submissions):
            s.polls += 1
            if s.status == "PENDING" and s.polls >= self.polls_until_scored:
                self._score(s)
            item = {"ref": s.ref, "date": s.date, "description": s.description, "fileName": s.file_name}
            item.update({"status": s.status, "publicScore": s.public_score, "errorDescription": s.error})
            listed.append(item)
        return 200, {"submissions": listed[: int(body.get("pageSize") or 20)]}, {}

    def _submission_limits(self, body: dict) -> tuple[int, Any, dict]:
        if body.get("competitionName") != "digit-recognizer":
            return 404, {"code": 404, "message": "Competition not found"}, {}
        if not self.on_team:
            return 200, {}, {}
        today = self.submitted_earlier_today + len(self.submissions)
        allowed = 0 if self.limited_by_total else max(self.daily_limit - today, 0)
        answer = {
            "numToday": today,
            "numTotal": today,
            "numAllowedNow": allowed,
            "limitedByTotal": self.limited_by_total,
        }
        # Zero and false fields are left out, as protobuf JSON does by default: the client reads them as 0.
        return 200, {key: value for key, value in answer.items() if value}, {}

    def _dataset_status(self, body: dict) -> tuple[int, Any, dict]:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}, {}
        return 200, {"status": self._processing.pop(0) if self._processing else "READY"}, {}

    def _files(self, tokens: list[dict]) -> dict[str, bytes] | None:
        files = {}
        for item in tokens:
            blob = self._uploaded(item.get("token", ""))
            if blob is None:
                return None
            files[blob["name"]] = blob["content"]
        return files

    def _create_dataset(self, body: dict) -> tuple[int, Any, dict]:
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        files = self._files(body.get("files", []))
        if files is None:
            return 200, {"status": "Error", "error": "a file was not uploaded"}, {}
        if ref in self.datasets:
            return 200, {"status": "Error", "error": f"dataset {ref} already exists"}, {}
        self.datasets[ref] = [files]
        self._processing = list(self.dataset_processing)
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok", "error": ""}, {}

    def _create_dataset_version(self, body: dict) -> tuple[int, Any, dict]:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}, {}
        files = self._files(body.get("body", {}).get("files", []))
        if files is None:
            return 200, {"status": "Error", "error": "a file was not uploaded"}, {}
        self.datasets[ref].append(files)
        self._processing = list(self.dataset_processing)
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok", "error": ""}, {}

    def _save_kernel(self, body: dict) -> tuple[int, Any, dict]:
        if self.kernel_push_error is not None:
            return 200, {"error": self.kernel_push_error}, {}
        slug = body.get("slug", "")
        missing = [d for d in body.get("datasetDataSources", []) if d not in self.datasets]
        if missing:
            return 200, {"url": f"https://www.kaggle.com/code/{slug}", "invalidDatasetSources": missing}, {}
        kernel = self.kernels.setdefault(slug, FakeKernel(slug))
        kernel.versions.append(body)
        answer = {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}", "error": ""}
        answer["versionNumber"] = len(kernel.versions)
        return 200, answer, {}

    def _kernel(self, body: dict) -> FakeKernel | None:
        return self.kernels.get(f"{body.get('userName')}/{body.get('kernelSlug')}")

    def _kernel_status(self, body: dict) -> tuple[int, Any, dict]:
        if self._kernel(body) is None:
            return 404, {"code": 404, "message": "Kernel not found"}, {}
        status = self.kernel_statuses.pop(0) if len(self.kernel_statuses) > 1 else self.kernel_statuses[0]
        return 200, {"status": status, "failureMessage": self.kernel_failure_message}, {}

    def _quota(self, body: dict) -> tuple[int, Any, dict]:
        gpu = {
            "timeUsed": f"{self.gpu_seconds_used:g}s",
            "timeReserved": f"{self.gpu_seconds_reserved:g}s",
            "totalTimeAllowed": f"{self.gpu_seconds_allowed:g}s",
        }
        tpu = {"timeUsed": "0s", "totalTimeAllowed": "72000s"}
        return 200, {"quotaRefreshTime": self.quota_refresh, "gpuQuota": gpu, "tpuQuota": tpu}, {}

    def _kernel_output(self, body: dict) -> tuple[int, Any, dict]:
        if self._kernel(body) is None:
            return 404, {"code": 404, "message": "Kernel not found"}, {}
        if self.kernel_log_steps:
            self.kernel_log = (
                self.kernel_log_steps.pop(0) if len(self.kernel_log_steps) > 1 else self.kernel_log_steps[0]
            )
        files = [{"url": f"{self.url}/files/output/{name}", "fileName": name} for name in self.kernel_outputs]
        return 200, {"files": files, "log": self.kernel_log, "nextPageToken": ""}, {}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKaggle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        fake = self.server_fake
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{fake.username}:{fake.key}".encode()).decode()
        return header == f"Basic {expected}" or header.removeprefix("Bearer ") in fake.tokens

    def _send(self, status: int, payload: Any, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        content_type = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.server_fake
        raw = self._read_body()
        route = self.path.rstrip("/").split("/")[-1]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = raw
        authorized = self._authorized()
        fake.requests.append(Recorded("POST", self.path, route, body, authorized))
        failure = fake.failures.get(route) or fake.failures.get("*")
        if failure:
            status, message = failure
            self._send(status, {"code": status, "message": message})
        elif not self.path.startswith("/v1/"):
            self._send(404, {"code": 404, "message": f"no such path {self.path}"})
        elif not authorized and route != "IntrospectToken":
            self._send(401, {"code": 401, "message": "Unauthenticated"})
        else:
            self._send(*fake.answer(route, body))

    def _log_stream(self) -> None:
        """The kernel log stream, as Kaggle's midtier answers it (see FakeKaggle.kernel_log_events)."""
        fake = self.server_fake
        path = self.path.split("?")[0]
        fake.requests.append(Recorded("GET", self.path, "LogsStream", None, self._authorized()))
        failure = fake.failures.get("LogsStream")
        owner_slug = path[len("/v1/kernels/logs/stream/") :]
        if failure:
            self._send(failure[0], {"code": failure[0], "message": failure[1]})
        elif not self._authorized():
            self._send(401, {"code": 401, "message": "Unauthenticated"})
        elif owner_slug not in fake.kernels:
            self._send(404, {"code": 404, "message": "Kernel not found"})
        elif not fake.kernel_running:
            self._send(200, json.dumps(fake.kernel_log_events).encode())
        else:
            events = [f"data: {json.dumps(e)}\n\n".encode() for e in fake.kernel_log_events]
            broken = fake.stream_breaks > 0
            if broken:
                fake.stream_breaks -= 1
                events = events[: fake.stream_break_after]
            else:
                events.append(b"data: END_OF_LOG\n\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in events:
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            if broken:  # a chunk that never arrives whole: the connection drops mid-stream
                self.wfile.write(b'40\r\ndata: {"da')
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:  # noqa: N802
        fake = self.server_fake
        if self.path.startswith("/v1/kernels/logs/stream/"):
            self._log_stream()
            return
        fake.requests.append(Recorded("GET", self.path, "files", None, self._authorized()))
        if self.path == "/files/digit-recognizer.zip" and fake.competition_zip is not None:
            self._send(200, fake.competition_zip)
        elif self.path.startswith("/files/output/") and self.path[len("/files/output/") :] in fake.kernel_outputs:
            self._send(200, fake.kernel_outputs[self.path[len("/files/output/") :]])
        else:
            self._send(404, b"not found")

    def do_PUT(self) -> None:  # noqa: N802
        fake = self.server_fake
        content = self._read_body()
        token = self.path.split("/")[-1]
        fake.requests.append(Recorded("PUT", self.path, "upload", content, self._authorized()))
        failure = fake.failures.get("upload")
        if failure:
            self._send(failure[0], {"code": failure[0], "message": failure[1]})
        elif self.path.startswith("/upload/") and token in fake.blobs:
            fake.blobs[token]["content"] = content
            self._send(200, {})
        else:
            self._send(404, {"code": 404, "message": "unknown upload"})
