"""Publish a dataset folder (``README.md`` + ``data/<config>/*.parquet``) to a Hub dataset repo.

``push`` is what ``fusedata push`` runs. It talks to the Hub through a small ``HubClient``
interface so that the network part is one class, ``HfApiClient`` (over
``huggingface_hub.HfApi``); tests point that class at a loopback fake hub with ``endpoint=``.

Resuming: before creating the repo, ``push`` leaves a hidden marker (``.fusekit-push.json``)
in the folder naming the repo; it is removed once the upload succeeded. A re-run of the same
command after a failure finds the marker, so the repo it created the first time does not count
as "already exists", and ``upload_folder`` skips the files that already arrived.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import FusekitError
from .publish import upload_tree

MARKER = ".fusekit-push.json"
DEFAULT_MESSAGE = "Upload dataset with fusedata"


class RepoExistsError(Exception):
    """``HubClient.create_repo`` raises this when the repo exists and ``exist_ok`` is false."""


@runtime_checkable
class HubClient(Protocol):
    """What ``push`` needs from the Hub; every repo is a dataset repo."""

    def repo_exists(self, repo_id: str) -> bool: ...

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False) -> str:
        """Create the repo and return its URL; raise ``RepoExistsError`` if it exists and not ``exist_ok``."""
        ...

    def upload_folder(self, folder: Path, repo_id: str, commit_message: str, *,
                      files: list[str] | None = None, large: bool = False) -> str | None:
        """Upload ``files`` (relative POSIX paths; all of ``folder`` when None); return the commit URL."""
        ...


def _fnmatch_escape(path: str) -> str:
    """A pattern that fnmatch matches against ``path`` only (``[``, ``*``, ``?`` made literal)."""
    return "".join(f"[{c}]" if c in "[*?" else c for c in path)


class HfApiClient:
    """``HubClient`` over ``huggingface_hub.HfApi`` (``endpoint=None`` means ``HF_ENDPOINT`` or huggingface.co)."""

    def __init__(self, token: str | None = None, endpoint: str | None = None):
        from huggingface_hub import HfApi

        self.api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self.api.endpoint

    @staticmethod
    def _online() -> None:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise FusekitError("HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to publish")

    def repo_exists(self, repo_id: str) -> bool:
        self._online()
        return self.api.repo_exists(repo_id, repo_type="dataset")

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False) -> str:
        from huggingface_hub.errors import HfHubHTTPError

        self._online()
        try:
            return str(self.api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=exist_ok))
        except HfHubHTTPError as e:
            if e.response is not None and e.response.status_code == 409:
                raise RepoExistsError(repo_id) from e
            raise

    def upload_folder(self, folder: Path, repo_id: str, commit_message: str, *,
                      files: list[str] | None = None, large: bool = False) -> str | None:
        self._online()
        allow = [_fnmatch_escape(f) for f in files] if files is not None else None
        if large and hasattr(self.api, "upload_large_folder"):
            self.api.upload_large_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset",
                                         allow_patterns=allow)
            return None
        # huggingface_hub 2.x has no upload_large_folder: with hf_xet installed upload_folder itself
        # commits large folders in batches and resumes on re-run.
        info = self.api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset",
                                      commit_message=commit_message, allow_patterns=allow)
        return getattr(info, "commit_url", None)


def _check_folder(folder: Path) -> list[str]:
    if not folder.exists():
        raise FusekitError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise FusekitError(f"{folder} is not a folder")
    if not (folder / "README.md").is_file():
        raise FusekitError(f"{folder} is not a dataset folder: it has no README.md (the dataset card)")
    return upload_tree(folder)


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise FusekitError(f"repo id {repo_id!r} must look like NAMESPACE/NAME")


def _resolve_token(token: str | None) -> str:
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise FusekitError("no Hugging Face token: set HF_TOKEN or pass --token")
    return token


def _marker_repo(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("repo_id")
    except (OSError, ValueError, AttributeError):
        return None


def _write_marker(folder: Path, repo_id: str) -> None:
    try:
        (folder / MARKER).write_text(json.dumps({"repo_id": repo_id, "state": "incomplete"}) + "\n",
                                     encoding="utf-8")
    except OSError:  # a read-only folder: a re-run then needs --exist-ok
        pass


def _is_network_error(e: BaseException) -> bool:
    if isinstance(e, (OSError, ConnectionError, TimeoutError)):  # HfHubHTTPError is an OSError
        return True
    try:
        import httpx2

        return isinstance(e, httpx2.HTTPError)
    except ImportError:  # pragma: no cover - huggingface_hub depends on it
        return False


def _reason(e: BaseException) -> str:
    text = re.sub(r"\s*For more information check: \S+", "", str(e))
    return " ".join(text.split()) or type(e).__name__


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def push(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
         exist_ok: bool = False, dry_run: bool = False, large: bool = False,
         client: HubClient | None = None, endpoint: str | None = None,
         commit_message: str = DEFAULT_MESSAGE) -> dict:
    """Upload a dataset folder to the dataset repo ``repo_id``; returns what was (or would be) uploaded.

    ``dry_run`` touches no network and needs no token: it returns the file list only.
    ``client`` replaces the ``HfApiClient`` built from ``token`` and ``endpoint``.
    """
    folder = Path(folder).expanduser()
    files = _check_folder(folder)
    _check_repo_id(repo_id)
    result = {"repo_id": repo_id, "files": files, "dry_run": dry_run, "private": private}
    if dry_run:
        return result
    token = _resolve_token(token)
    if client is None:
        client = HfApiClient(token=token, endpoint=endpoint)

    resuming = _marker_repo(folder) == repo_id
    try:
        existed = client.repo_exists(repo_id)
        if existed and not (exist_ok or resuming):
            raise RepoExistsError(repo_id)
        _write_marker(folder, repo_id)
        url = client.create_repo(repo_id, private=private, exist_ok=True)
        commit_url = client.upload_folder(folder, repo_id, commit_message, files=files, large=large)
    except RepoExistsError:
        raise FusekitError(f"dataset repo {repo_id} already exists; pass --exist-ok to update it") from None
    except FusekitError:
        raise
    except Exception as e:
        if not _is_network_error(e):
            raise
        if _status(e) in (401, 403):
            raise FusekitError(f"the Hub refused the token for {repo_id} ({_reason(e)}); "
                               "check HF_TOKEN or --token (it needs write access)") from e
        raise FusekitError(f"upload to {repo_id} failed: {_reason(e)}; "
                           "re-run the same command to complete it") from e
    (folder / MARKER).unlink(missing_ok=True)
    result.update(url=url, commit_url=commit_url, created=not existed, resumed=resuming)
    return result
