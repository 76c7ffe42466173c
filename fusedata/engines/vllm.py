"""vLLM offline generation (``LLM.chat``) in a worker process of its own.

The engine resolves the model to a local folder here and starts ``vllm_worker.py`` under a Python
that has vLLM: ``extra.python`` in the model's recipe block, else ``FUSEKIT_VLLM_PYTHON``, else this
Python. vLLM can then live in its own environment (``make install`` builds ``.venv-vllm``: vLLM's
CPU build pins torch and transformers to other versions than fusekit's), and ``close()`` ends the
process, so the next vLLM model of the recipe gets all of the accelerator's memory back.

Every sample is its own request with its own seed (``sample_seed``), so a resumed run draws exactly
the samples an uninterrupted run would; vLLM's automatic prefix caching (on by default, the CPU build
included) still computes a prompt's prefill once for the requests that share it. Stop strings and
finish reasons are stored as vLLM reports them. Extra recipe keys: ``engine_kwargs`` (passed to
``LLM(...)``), ``env`` (variables for this model's worker: ``CUDA_VISIBLE_DEVICES``, ``VLLM_*``…),
``load_timeout_s`` (default 1800) and ``batch_timeout_s`` (default 3600): a worker that dies, or says
nothing for that long, is a ``FusekitError`` with the tail of its stderr.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .. import models
from ..errors import FusekitError
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed

log = logging.getLogger("fusedata.engines.vllm")

WORKER = Path(__file__).with_name("vllm_worker.py")
PYTHON_ENV = "FUSEKIT_VLLM_PYTHON"
#: vLLM's usage reports stay off unless the environment turns them on: fusekit runs offline.
NO_USAGE_REPORTS = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
#: Defaults for the worker's environment: its engine processes, all on this machine, talk over loopback
#: instead of the address vLLM would look up for multi-node runs.
WORKER_ENV = {**NO_USAGE_REPORTS, "VLLM_HOST_IP": "127.0.0.1"}
STDERR_LINES = 20


def vllm_python(extra: dict[str, Any]) -> str:
    return str(extra.get("python") or os.environ.get(PYTHON_ENV) or sys.executable)


def require_vllm(python: str) -> None:
    """One line when ``python`` cannot import vLLM (checked without importing it here)."""
    if python == sys.executable:
        found = importlib.util.find_spec("vllm") is not None
    else:
        probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 3)"
        try:
            found = subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FusekitError(f"engine 'vllm': cannot run the Python {python} ({type(e).__name__}: {e})") from None
    if not found:
        raise FusekitError(
            f"engine 'vllm' needs vLLM, which {python} cannot import: pip install 'fusekit[vllm]' (CUDA GPUs), "
            f"or point extra.python or {PYTHON_ENV} at a Python that has it (`make install` builds .venv-vllm); "
            "or serve the model with vLLM's OpenAI server and use engine: openai"
        )


def _seconds(config: EngineConfig, key: str, default: float) -> float:
    value = (config.extra or {}).get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise FusekitError(f"model '{config.name}': extra.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _mapping(config: EngineConfig, key: str) -> dict[str, Any]:
    value = (config.extra or {}).get(key) or {}
    if not isinstance(value, dict):
        raise FusekitError(f"model '{config.name}': extra.{key} must be a mapping, got {value!r}")
    return value


class WorkerProcess:
    """The worker and its pipes. A thread reads its replies into a queue and another keeps the last
    lines of its stderr, so every wait is a bounded ``queue.get`` that works from any thread."""

    def __init__(self, python: str, model: str, env: dict[str, str]):
        self.model = model
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.replies: queue.Queue[dict | None] = queue.Queue()
        # A session of its own, so close() can end vLLM's engine processes along with the worker.
        self.proc = subprocess.Popen([python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**WORKER_ENV, **os.environ, **env},
                                     text=True, encoding="utf-8", errors="replace", start_new_session=True)
        self.pid = self.proc.pid
        self.busy = False
        self.readers = [threading.Thread(target=target, args=(stream,), name=f"vllm worker {self.pid}", daemon=True)
                        for target, stream in ((self._read_replies, self.proc.stdout),
                                               (self._read_stderr, self.proc.stderr))]
        for t in self.readers:
            t.start()

    def _read_replies(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self.replies.put(json.loads(line))
            except json.JSONDecodeError:  # not ours: a library that wrote to the pipe before it was moved
                self.stderr.append(line.rstrip())
        self.replies.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr.append(line.rstrip())
            log.debug("vllm worker %d: %s", self.pid, line.rstrip())

    def ask(self, message: dict, timeout: float, doing: str) -> dict:
        """Send one message and wait for the reply; a dead or silent worker is a FusekitError."""
        self.busy = True
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: the reply queue says so below
        try:
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise self.failure(f"gave no answer {doing} within {timeout:.0f} s") from None
        if reply is None:
            raise self.failure(f"exited {doing} (code {self.wait(30)})")
        if "fatal" in reply:
            self.wait(60)
            raise self.failure(f"failed {doing}: {reply['fatal']}")
        self.busy = False
        return reply

    def failure(self, what: str) -> FusekitError:
        if self.proc.poll() is not None:  # its last words may still be in the pipe
            self.readers[1].join(timeout=5)
        tail = "\n  ".join(self.stderr) or "(nothing on stderr)"
        return FusekitError(f"model '{self.model}': the vLLM worker (pid {self.pid}) {what}; "
                            f"its last stderr lines:\n  {tail}")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def close(self) -> int | None:
        """End of input lets vLLM shut down its engine; a worker in the middle of a batch (the run was
        interrupted) is not waited for. Either way its whole process group is gone afterwards."""
        if self.proc.poll() is None:
            if self.busy:
                self.kill()
            else:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
                self.wait(120)
        try:  # vLLM's engine processes, should any outlive the worker
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode


class VLLMEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        extra = config.extra or {}
        python = vllm_python(extra)
        require_vllm(python)
        kwargs, env = _mapping(config, "engine_kwargs"), _mapping(config, "env")
        self.batch_timeout = _seconds(config, "batch_timeout_s", 3600)
        load_timeout = _seconds(config, "load_timeout_s", 1800)
        ref = models.resolve(config.model)
        self.stop = list(config.stop or ref.stop)
        self.worker = WorkerProcess(python, config.name, {k: str(v) for k, v in env.items()})
        self.pid = self.worker.pid
        log.info("vLLM worker pid %d for model '%s' started", self.pid, config.name)
        try:
            ready = self.worker.ask({"model": ref.path, "engine_kwargs": kwargs}, load_timeout, "loading the model")
        except BaseException:
            self.worker.close()
            raise
        self.prefix_caching = ready.get("prefix_caching")
        log.info("vLLM %s worker pid %d for model '%s' ready (prefix caching %s)", ready.get("vllm"), self.pid,
                 config.name, self.prefix_caching)

    def _item(self, req: GenRequest, idx: int, params: SamplingParams) -> dict[str, Any]:
        return {"messages": chat_messages(req.prompt, self.config), "prefill": req.prefill, "params": {
            "n": 1, "temperature": params.temperature, "top_p": params.top_p,
            "repetition_penalty": params.repetition_penalty, "max_tokens": params.max_tokens,
            "seed": sample_seed(params, req.prompt.id, idx), "stop": self.stop or None}}

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        rows = [(req, idx) for req in requests for idx in req.sample_indices]
        if not rows:
            return []
        reply = self.worker.ask({"items": [self._item(req, idx, params) for req, idx in rows]},
                                self.batch_timeout, "generating")
        secs = reply["seconds"] / len(rows)
        return [self._response(req, idx, params, res, secs) for (req, idx), res in zip(rows, reply["results"])]

    def _response(self, req: GenRequest, idx: int, params: SamplingParams, res: dict, secs: float) -> Response:
        key = (req.prompt.id, self.config.name, params.hash(), idx)
        if "error" in res:
            return Response(*key, None, error=res["error"])
        text = res["text"].strip()
        if not text:
            return Response(*key, None, error=f"vLLM returned no text (finish reason {res['finish_reason']})")
        return Response(*key, text, res["finish_reason"], res["n_input_tokens"], res["n_output_tokens"], None, secs)

    def close(self) -> None:
        code = self.worker.close()
        log.info("vLLM worker pid %d for model '%s' exited (code %s)", self.pid, self.config.name, code)
