"""``fusedata.push`` against a loopback fake hub (tests/hub_server.py), through the real ``HfApi``.

The client is pointed at the fake with ``endpoint=``; conftest sets ``HF_HUB_OFFLINE=1`` for
the whole session, so these tests switch huggingface_hub's offline flag off for themselves.
hf_xet is installed, so ``upload_folder`` takes its streamed pipeline; the fake answers
"regular" to every preupload, so contents travel inline in the commit and no Xet call is made.
"""

from __future__ import annotations

import pytest

from fusedata.errors import FusekitError
from fusedata.publish import upload_tree
from fusedata.push import MARKER, push
from tests.hub_server import FakeHub

TOKEN = "hf_fusekit_test_token"
REPO = "fusekit-test/mix"
FILES = {
    "README.md": b"---\nlicense: other\nconfigs:\n- config_name: sft\n  data_files:\n  - split: train\n"
                 b"    path: data/sft/train-*\n- config_name: dpo\n  data_files:\n  - split: train\n"
                 b"    path: data/dpo/train-*\n---\n# mix\n",
    "data/sft/train-00000-of-00001.parquet": b"PAR1" + bytes(range(256)) * 3 + b"PAR1",
    "data/dpo/train-00000-of-00001.parquet": b"PAR1" + bytes(range(255, -1, -1)) * 2 + b"\x00PAR1",
}


@pytest.fixture
def online(monkeypatch, tmp_path):
    """huggingface_hub allowed to make requests (to the fake only); no ambient token or endpoint."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def hub(online):
    with FakeHub(token=TOKEN) as h:
        yield h
    assert h.unhandled == []  # the client only used endpoints the fake speaks


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "mix"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    # not part of the dataset: hidden files/dirs and temporaries
    (root / ".hidden").write_text("x")
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "state").write_text("x")
    (root / "data" / "sft" / "train-00001.parquet.tmp123").write_bytes(b"partial")
    return root


def _push(folder, hub, **kw):
    kw.setdefault("token", TOKEN)
    return push(folder, REPO, endpoint=hub.url, **kw)


def test_push_uploads_exactly_the_dataset_files(folder, hub):
    out = _push(folder, hub)
    assert hub.files(REPO) == FILES
    assert out["files"] == sorted(FILES) and out["created"] and not out["resumed"]
    assert out["commit_url"].startswith(f"{hub.url}/datasets/{REPO}/commit/")
    assert not (folder / MARKER).exists()
    assert len(hub.commits(REPO)) == 1
    called = {(m, p) for m, p in hub.requests}
    assert ("POST", "/api/repos/create") in called
    assert ("POST", f"/api/datasets/{REPO}/preupload/main") in called
    assert ("POST", f"/api/datasets/{REPO}/commit/main") in called


def test_token_from_environment(folder, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push(folder, REPO, endpoint=hub.url)
    assert hub.files(REPO) == FILES


def test_dry_run_lists_the_tree_without_network(folder, hub):
    out = _push(folder, hub, dry_run=True, token=None)
    assert out["files"] == sorted(FILES) == upload_tree(folder)
    assert out["dry_run"] is True
    assert hub.requests == []


def test_no_token_is_a_clear_error(folder, hub):
    with pytest.raises(FusekitError, match="set HF_TOKEN or pass --token"):
        _push(folder, hub, token=None)
    assert hub.requests == []


def test_rejected_token_is_a_clear_error(folder, hub):
    with pytest.raises(FusekitError, match="refused the token.*write access"):
        _push(folder, hub, token="hf_wrong")
    assert hub.files(REPO) == {}


@pytest.mark.parametrize("make", ["missing", "no-readme", "file"])
def test_not_a_dataset_folder(tmp_path, make):
    target = tmp_path / "x"
    if make == "no-readme":
        (target / "data").mkdir(parents=True)
    elif make == "file":
        target.write_text("x")
    with pytest.raises(FusekitError, match="does not exist|no README.md|not a folder"):
        push(target, REPO, token=TOKEN, dry_run=True)


def test_existing_repo_needs_exist_ok_then_updates(folder, hub):
    _push(folder, hub)
    (folder / "README.md").write_bytes(FILES["README.md"] + b"\nv2\n")
    with pytest.raises(FusekitError, match=f"{REPO} already exists; pass --exist-ok to update it"):
        _push(folder, hub)
    assert hub.files(REPO) == FILES
    out = _push(folder, hub, exist_ok=True)
    assert not out["created"]
    assert hub.files(REPO) == {**FILES, "README.md": FILES["README.md"] + b"\nv2\n"}
    # only the changed file went into the second commit (the others' oids matched)
    assert [c["paths"] for c in hub.commits(REPO)] == [sorted(FILES), ["README.md"]]


def test_offline_mode_is_a_clear_error(folder, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FusekitError, match="HF_HUB_OFFLINE"):
        _push(folder, hub)
    assert hub.requests == []


def test_transient_commit_error_is_retried_by_the_client(folder, hub):
    hub.fail_commits(1, "500")
    _push(folder, hub)
    assert hub.failed_commits == 1
    assert hub.files(REPO) == FILES


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_failure_mid_upload_then_rerun_completes(folder, hub, mode, monkeypatch):
    if mode == "drop":
        # huggingface_hub retries a failed commit 5 times with 1-8 s backoff (~23 s) on its
        # default (hf_xet) path; a dropped connection has no Retry-After to shorten that. Take
        # the single-commit path instead, which does not retry: HF_HUB_DISABLE_XET, as
        # huggingface_hub.constants reads it at import time.
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    hub.fail_commits(100, mode)  # the Hub is unreachable for commits during the first run
    with pytest.raises(FusekitError) as err:
        _push(folder, hub)
    msg = str(err.value)
    assert msg.startswith(f"upload to {REPO} failed: ") and msg.endswith("re-run the same command to complete it")
    assert hub.files(REPO) == {} and hub.failed_commits >= 1
    assert (folder / MARKER).exists()  # the repo this command created is remembered

    hub.fail_commits(0)
    out = _push(folder, hub)  # the same command, no --exist-ok
    assert out["resumed"] and not out["created"]
    assert hub.files(REPO) == FILES
    assert not (folder / MARKER).exists()


def test_large_uses_the_resumable_path(folder, hub):
    # huggingface_hub 2.4 has no upload_large_folder; its upload_folder is the resumable one
    _push(folder, hub, large=True)
    assert hub.files(REPO) == FILES
