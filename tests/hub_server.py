"""A fake Hugging Face Hub on loopback, for testing ``fusedata.push`` without huggingface.co.

It is a fake because no upload-capable Hub server exists offline: the PyPI candidates are a
CLI wrapper without its server binary and a read-only caching proxy (see
``docs/data.md#publishing-to-the-hub``). It speaks only the subset of the Hub HTTP API that
``HfApi.create_repo`` + ``HfApi.upload_folder`` (huggingface_hub 2.4) use on a dataset repo:

- ``POST /api/repos/create`` - 200 with the repo URL, 409 when the repo already exists;
- ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]`` - repo info (``repo_exists``), 404 +
  ``X-Error-Code: RepoNotFound`` when missing;
- ``GET  /api/whoami-v2`` - a fixed user;
- ``POST /api/validate-yaml`` - accepts every README;
- ``POST /api/{type}s/{ns}/{name}/preupload/{rev}`` - answers ``uploadMode: "regular"`` for
  every file, so contents come inline (base64) in the commit and nothing goes through LFS or
  Xet storage; ``oid`` is the git blob SHA-1 of the stored copy, so the client skips files
  that are already there;
- ``POST /api/{type}s/{ns}/{name}/commit/{rev}`` - the NDJSON commit (``header`` line, then
  ``file`` / ``deletedFile`` / ``deletedFolder`` lines), applied atomically.

Received files are kept in memory per repo (``hub.files(repo_id)``) so tests can assert them;
every request is logged in ``hub.requests`` and anything outside the subset in
``hub.unhandled`` (answered 404). ``hub.fail_commits(n, mode)`` makes the next ``n`` commit
requests fail after their body was read: ``mode="500"`` answers HTTP 500 (with
``Retry-After: 0`` so client retries are quick), ``mode="drop"`` closes the connection
without a response (a network failure mid-upload).

It binds 127.0.0.1 only, caps request bodies (``max_body``), repos and files, times out idle
connections, and stops its thread on ``__exit__``/``close()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"  # loopback only, never any other address
USER = "fusekit-test"
MAX_REPOS = 64
MAX_FILES_PER_REPO = 10_000

_REPO_RE = re.compile(
    r"^/api/(?P<type>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
    r"(?:/(?P<op>preupload|commit|revision)/(?P<rev>.+))?$"
)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which is what the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)  # {"oid", "summary", "paths"}

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class FakeHub:
    """Context manager: ``with FakeHub(token="hf_x") as hub: HfApi(endpoint=hub.url, token="hf_x")``.

    ``token=None`` accepts any request; otherwise requests must carry ``Bearer <token>`` (401 else).
    """

    def __init__(self, token: str | None = None, max_body: int = 32 * 1024 * 1024, timeout: float = 10.0):
        self.token, self.max_body = token, max_body
        self.lock = threading.Lock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.unhandled: list[tuple[str, str]] = []
        self._fail_left = 0
        self._fail_mode = "500"
        self.failed_commits = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.settimeout(timeout)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            # -- plumbing -------------------------------------------------------------
            def _body(self) -> bytes | None:
                n = int(self.headers.get("Content-Length") or 0)
                if n > hub.max_body:
                    self._send(413, {"error": f"body over {hub.max_body} bytes"}, close=True)
                    return None
                return self.rfile.read(n) if n else b""

            def _send(self, code: int, body: dict, headers: dict | None = None, close: bool = False) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if hub.token is None or self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return True
                self._send(401, {"error": "Invalid credentials in Authorization header"},
                           {"X-Error-Message": "Invalid credentials in Authorization header"})
                return False

            def _not_found(self, repo_id: str) -> None:
                self._send(404, {"error": f"Repository not found: {repo_id}"},
                           {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

            def _dispatch(self, method: str) -> None:
                path = urlsplit(self.path).path
                with hub.lock:
                    hub.requests.append((method, path))
                body = self._body() if method == "POST" else b""
                if body is None or not self._authorized():
                    return
                if method == "GET" and path == "/api/whoami-v2":
                    return self._send(200, {"type": "user", "name": USER, "orgs": [],
                                            "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
                if method == "POST" and path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if method == "POST" and path == "/api/repos/create":
                    return self._create(json.loads(body or b"{}"))
                m = _REPO_RE.match(path)
                if m:
                    repo_type = m["type"][:-1]
                    repo_id = f"{unquote(m['ns'])}/{unquote(m['name'])}"
                    op = m["op"]
                    if method == "GET" and op in (None, "revision"):
                        return self._info(repo_type, repo_id)
                    if method == "POST" and op == "preupload":
                        return self._preupload(repo_type, repo_id, json.loads(body or b"{}"))
                    if method == "POST" and op == "commit":
                        return self._commit(repo_type, repo_id, unquote(m["rev"]), body)
                with hub.lock:
                    hub.unhandled.append((method, path))
                self._send(404, {"error": f"{method} {path} is not implemented by the fake hub"})

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            # -- endpoints --------------------------------------------------------------
            def _create(self, payload: dict) -> None:
                repo_type = payload.get("type") or "model"
                name = payload.get("name") or ""
                repo_id = f"{payload.get('organization') or USER}/{name}"
                if not name or "/" in name:
                    return self._send(400, {"error": f"invalid repo name {name!r}"})
                key = (repo_type, repo_id)
                with hub.lock:
                    if key in hub.repos:
                        return self._send(409, {"error": f"You already created this {repo_type} repo",
                                                "url": hub.repo_url(repo_type, repo_id)})
                    if len(hub.repos) >= MAX_REPOS:
                        return self._send(507, {"error": "fake hub is full"})
                    private = payload.get("visibility") == "private" or bool(payload.get("private"))
                    hub.repos[key] = Repo(repo_type, repo_id, private)
                self._send(200, {"url": hub.repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})

            def _info(self, repo_type: str, repo_id: str) -> None:
                with hub.lock:
                    repo = hub.repos.get((repo_type, repo_id))
                    if repo is None:
                        return self._not_found(repo_id)
                    info = {"id": repo_id, "author": repo_id.split("/")[0], "sha": repo.head,
                            "private": repo.private, "gated": False, "disabled": False,
                            "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(repo.files.items())]}
                self._send(200, info)

            def _preupload(self, repo_type: str, repo_id: str, payload: dict) -> None:
                with hub.lock:
                    repo = hub.repos.get((repo_type, repo_id))
                    if repo is None:
                        return self._not_found(repo_id)
                    files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                              "oid": git_blob_sha1(repo.files[f["path"]]) if f["path"] in repo.files else None}
                             for f in payload.get("files", [])]
                    head = repo.head
                self._send(200, {"files": files, "commitOid": head})

            def _commit(self, repo_type: str, repo_id: str, rev: str, body: bytes) -> None:
                with hub.lock:
                    repo = hub.repos.get((repo_type, repo_id))
                    fail = repo is not None and hub._fail_left > 0
                    if fail:
                        hub._fail_left -= 1
                        hub.failed_commits += 1
                        mode = hub._fail_mode
                if repo is None:
                    return self._not_found(repo_id)
                if fail:
                    if mode == "drop":  # the body was read; vanish without a response
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    return self._send(500, {"error": "failing on purpose"}, {"Retry-After": "0"})
                if rev != "main":
                    return self._send(400, {"error": f"fake hub only has branch main, not {rev!r}"})
                header, adds, deletes = None, {}, []
                try:
                    for line in body.splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        key, value = item["key"], item["value"]
                        if key == "header":
                            header = value
                        elif key == "file":
                            if value.get("encoding") != "base64":
                                raise ValueError(f"unsupported encoding {value.get('encoding')!r}")
                            adds[value["path"]] = base64.b64decode(value["content"], validate=True)
                        elif key in ("deletedFile", "deletedFolder"):
                            deletes.append((key, value["path"]))
                        else:  # lfsFile and friends: never asked for (preupload says "regular")
                            raise ValueError(f"unsupported commit operation {key!r}")
                    if header is None or not header.get("summary"):
                        raise ValueError("commit has no header with a summary")
                except (ValueError, KeyError, TypeError) as e:
                    return self._send(400, {"error": f"bad commit payload: {e}"})
                with hub.lock:
                    files = dict(repo.files)
                    for key, path in deletes:
                        if key == "deletedFile":
                            files.pop(path, None)
                        else:
                            prefix = path.rstrip("/") + "/"
                            files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                    files.update(adds)
                    if len(files) > MAX_FILES_PER_REPO:
                        return self._send(507, {"error": "too many files"})
                    repo.files = files
                    oid = uuid.uuid4().hex + uuid.uuid4().hex[:8]
                    repo.commits.append({"oid": oid, "summary": header["summary"], "paths": sorted(adds)})
                self._send(200, {"commitUrl": f"{hub.repo_url(repo_type, repo_id)}/commit/{oid}",
                                 "commitOid": oid, "success": True, "pullRequestUrl": None})

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)

    # -- test helpers -------------------------------------------------------------
    def repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            return dict(repo.files) if repo else {}

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[dict]:
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            return list(repo.commits) if repo else []

    def fail_commits(self, n: int = 1, mode: str = "500") -> None:
        """Make the next ``n`` commit requests fail: ``"500"`` (HTTP 500) or ``"drop"`` (no response)."""
        if mode not in ("500", "drop"):
            raise ValueError(f"mode must be '500' or 'drop', not {mode!r}")
        with self.lock:
            self._fail_left, self._fail_mode = n, mode

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
