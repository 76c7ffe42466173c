"""Shared fixtures: tiny offline models, the embedded SmolLM2, real llama.cpp and vLLM servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# An API key or base URL in the developer's shell would send `evals` judges to that API: the tests
# stay offline, and the ones about routing set these themselves.
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)
# vLLM's CPU build: a 1 GiB KV cache (its default is 4 GiB) so a server and an offline engine fit in
# memory together, and no pinning of its threads to cores, which would put both on the same core.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

REPO = Path(__file__).resolve().parent.parent
VLLM_VENV = REPO / ".venv-vllm"
#: What the vLLM tests load: fp32 as the converted folder is, and no torch.compile warm-up (70 s here).
VLLM_ENGINE_KWARGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 4096}


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from tests.fixtures.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory) -> Path:
    from tests.fixtures.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-rm"), seq_cls=True)


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The embedded model's converted fp32 folder (converted once into the user cache)."""
    from fusedata import models

    return models.resolve("embedded:smollm2-135m").path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready after {timeout} s")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server with the embedded GGUF, on 127.0.0.1 only."""
    from fusedata.models import embedded_gguf

    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf("smollm2-135m")),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
             "--model_alias", "smollm2-135m"],
            stdout=fh, stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The Python of the vLLM venv that `make install` builds; the tests that need it skip without it."""
    if not list(VLLM_VENV.glob(".installed-*")):
        pytest.skip(".venv-vllm is not built (`make install` builds vLLM's own venv; CI has it)")
    return str(VLLM_VENV / "bin" / "python")


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End a process started with start_new_session and every process it started."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived the server
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, vllm_python, smollm2):
    """vLLM's OpenAI-compatible server with the embedded SmolLM2 folder, on 127.0.0.1 only, from .venv-vllm
    (its `vllm` console script looks up package metadata the CPU build does not have, hence -m)."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", smollm2,
           "--served-model-name", "smollm2-135m", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", str(VLLM_ENGINE_KWARGS["max_model_len"]), "--enforce-eager"]
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_HOST_IP": "127.0.0.1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=300)
        except RuntimeError as e:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"{e}; the server's last lines:\n" + "\n".join(tail)) from None
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_group(proc)
