"""Where the batches of a build run: in this process, or as Ray Data pipelines across a cluster.

Every expensive stage of ``fusedata build`` (generation per source model, the math and code
verifiers, the reward model) is the same shape: a list of chunks, one stateful worker per
replica (an engine, a reward model, a verifier pool), and each chunk's results written to the
run store as they arrive. An executor runs that shape:

- ``LocalExecutor``: one worker in this process, chunk after chunk.
- ``RayExecutor``: the chunks become a Ray Data dataset (one row per chunk) mapped by an actor
  pool (``map_batches`` with ``concurrency=replicas`` and the worker's CPUs/GPUs). The driver
  streams the results with ``iter_rows`` and writes them to the run store itself, so each result
  reaches the store exactly once (the store's keys make a repeated write a no-op), a killed actor
  loses only the chunk it held (Ray Data re-runs it on another replica; if the whole job dies,
  the next run recomputes the missing work from the store). vLLM sources on GPUs go through
  ``ray.data.llm`` instead, one processor per source model.

Both executors are given the same chunks, so the same work gives the same records: the
transformers engine seeds each chunk from its first (prompt, sample) and CPU workers get one
thread each in both cases (``OMP_NUM_THREADS=1`` here is what ``make test`` sets).
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import FusekitError
from .records import Response


class Worker(Protocol):
    def __call__(self, chunk: list) -> list: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Resources:
    """What one replica of a worker needs, and how many replicas to run (Ray only)."""

    replicas: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None, default_gpus: float = 0.0) -> "Resources":
        """A recipe block's ``extra.ray: {replicas, num_cpus, num_gpus}``."""
        spec = dict((extra or {}).get("ray") or {})
        unknown = set(spec) - {"replicas", "num_cpus", "num_gpus"}
        if unknown:
            raise FusekitError(f"recipe: extra.ray: unknown key(s) {', '.join(sorted(unknown))}; "
                               "allowed: replicas, num_cpus, num_gpus")
        try:
            res = cls(int(spec.get("replicas", 1)), float(spec.get("num_cpus", 1.0)),
                      float(spec.get("num_gpus", default_gpus)))
        except (TypeError, ValueError):
            raise FusekitError(f"recipe: extra.ray: numbers expected, got {spec}") from None
        if res.replicas < 1 or res.num_cpus <= 0 or res.num_gpus < 0:
            raise FusekitError(f"recipe: extra.ray: need replicas ≥ 1, num_cpus > 0, num_gpus ≥ 0; got {spec}")
        return res


class LocalExecutor:
    name = "local"

    def map(self, make_worker: Callable[[], Worker], chunks: list[list], resources: Resources = Resources()
            ) -> Iterator[list]:
        if not chunks:
            return
        worker = make_worker()
        try:
            for chunk in chunks:
                yield worker(chunk)
        finally:
            worker.close()

    def close(self) -> None:
        pass


class _Replica:
    """A Ray Data actor holding one worker; chunks travel pickled so records keep their types."""

    def __init__(self, make_worker: Callable[[], Worker]):
        self.worker = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = [pickle.dumps(self.worker(pickle.loads(blob))) for blob in batch["chunk"]]
        return {"index": batch["index"], "result": out}


class RayExecutor:
    """Connects to ``address`` (``auto``, ``ray://host:10001``…), or starts a local instance for
    ``local`` with ``num_cpus`` CPUs."""

    name = "ray"

    def __init__(self, address: str = "local", num_cpus: int | None = None):
        try:
            import ray
            import ray.data
        except ImportError:
            raise FusekitError("--ray needs Ray Data: pip install 'fusekit[ray]' (ray[data])") from None
        self._ray = ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            try:
                if address == "local":
                    ray.init(num_cpus=num_cpus or os.cpu_count(), **kw)
                else:
                    ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise FusekitError(f"cannot reach the Ray cluster at {address!r}: {e}") from None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # fusedata's own bars count the results as they land
        ctx.verbose_progress = False

    def map(self, make_worker: Callable[[], Worker], chunks: list[list], resources: Resources = Resources()
            ) -> Iterator[list]:
        if not chunks:
            return
        ray = self._ray
        rows = [{"index": i, "chunk": pickle.dumps(c)} for i, c in enumerate(chunks)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(_Replica, fn_constructor_args=(make_worker,), batch_size=1,
                            concurrency=min(resources.replicas, len(chunks)), num_cpus=resources.num_cpus,
                            num_gpus=resources.num_gpus or None)
        for row in ds.iter_rows():
            yield pickle.loads(row["result"])

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(ray_address: str | None, num_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    return RayExecutor(ray_address, num_cpus) if ray_address else LocalExecutor()


Executor = LocalExecutor | RayExecutor


def vllm_on_ray(spec: Any, chunks: list[list]) -> Iterator[list]:
    """A vLLM source through ``ray.data.llm``: one processor per source model, its replicas from
    ``extra.ray.replicas`` and vLLM's engine arguments (``tensor_parallel_size``…) from
    ``extra.engine_kwargs``. One row per (prompt, sample) with the same per-sample seed as the other
    engines; the driver writes each returned batch to the store.

    The engine actors run under the vLLM engine's Python (``extra.python``, ``FUSEKIT_VLLM_PYTHON``),
    which needs the driver's Ray version too. ``extra.ray.num_gpus: 0`` runs them on CPUs (vLLM's CPU
    build), which is how the tests run this path."""
    import json

    from . import models
    from .engines import chat_messages, sample_seed

    ray, build_processor, config_cls = _ray_llm_api()
    res = Resources.from_extra(spec.engine.extra, default_gpus=1)
    sp = spec.sampling
    rows = [{"prompt_id": req.prompt.id, "sample_idx": i, "seed": sample_seed(sp, req.prompt.id, i),
             "messages": json.dumps(chat_messages(req.prompt, spec.engine))}
            for chunk in chunks for req in chunk for i in req.sample_indices]
    ref = models.resolve(spec.engine.model)
    engine_kwargs = dict(spec.engine.extra.get("engine_kwargs") or {})
    config = config_cls(model_source=ref.path, engine_kwargs=engine_kwargs, concurrency=res.replicas,
                        batch_size=spec.engine.batch_size, **_ray_llm_placement(spec.engine.extra, res))
    stop = list(spec.engine.stop or ref.stop) or None

    def pre(row: dict) -> dict:
        return {**row, "messages": json.loads(row["messages"]), "sampling_params": {
            "temperature": sp.temperature, "top_p": sp.top_p, "repetition_penalty": sp.repetition_penalty,
            "max_tokens": sp.max_tokens, "seed": int(row["seed"]), "stop": stop}}

    def post(row: dict) -> dict:
        # A failed row skips postprocess and arrives whole, so both kinds keep vLLM's column names.
        return {k: row.get(k) for k in _LLM_ROW_FIELDS}

    ds = build_processor(config, preprocess=pre, postprocess=post)(ray.data.from_items(rows))
    limits = (sp.max_tokens, engine_kwargs.get("max_model_len"))
    for batch in ds.iter_batches(batch_size=spec.engine.batch_size, batch_format="pandas"):
        yield [response_from_llm_row(r, spec.name, sp.hash(), *limits) for r in batch.to_dict("records")]


def _ray_llm_api() -> tuple[Any, Callable, Any]:
    try:
        import ray
        import ray.data.llm as llm
    except ImportError as e:  # ray.data.llm imports aiohttp, which ray[data] does not bring
        raise FusekitError(f"vLLM on Ray needs Ray Data's LLM API: pip install 'ray[data]' aiohttp ({e})") from None
    # Ray 2.5x renamed build_llm_processor to build_processor.
    return ray, getattr(llm, "build_processor", None) or llm.build_llm_processor, llm.vLLMEngineProcessorConfig


def _ray_llm_placement(extra: dict[str, Any], res: Resources) -> dict[str, Any]:
    """Where the vLLM stage's actors run: under the vLLM Python, with usage reports off and the model's
    ``extra.env``, and on CPUs when no GPU is asked for (Ray Data's own default is one GPU per engine)."""
    import sys

    from .engines.vllm import NO_USAGE_REPORTS, vllm_python

    env = {**{k: v for k, v in NO_USAGE_REPORTS.items() if k not in os.environ},
           **{k: str(v) for k, v in (extra.get("env") or {}).items()}}
    python = vllm_python(extra)
    runtime_env: dict[str, Any] = {"env_vars": env}
    if python != sys.executable:
        runtime_env["py_executable"] = python
    # vLLM's Ray metrics need ray[serve] and fusedata reads none of them.
    kwargs: dict[str, Any] = {"runtime_env": runtime_env, "should_continue_on_error": True,
                              "log_engine_metrics": False}
    if res.num_gpus == 0:
        kwargs["placement_group_config"] = {"bundles": [{"CPU": res.num_cpus}]}
    return kwargs


_LLM_ROW_FIELDS = ("prompt_id", "sample_idx", "generated_text", "num_input_tokens", "num_generated_tokens",
                   "__inference_error__")


def _count(value: Any) -> int:
    """A token count from a ray.data.llm row; a column missing from a failed row arrives as None or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) else 0


def response_from_llm_row(row: dict[str, Any], model: str, settings_hash: str, max_tokens: int,
                          max_model_len: int | None = None) -> Response:
    """One ray.data.llm output row as a stored response, with the finish reason vLLM would have given.

    ray.data.llm keeps the token counts but not vLLM's ``finish_reason``. vLLM finishes with "length"
    exactly when the output reaches ``max_tokens`` or prompt plus output reach ``max_model_len``, so the
    counts give it back. The one case read the other way is an end-of-sequence token landing exactly on
    the last allowed position: it reads as "length", which the truncation filter then drops, never the
    reverse.
    """
    error = row.get("__inference_error__")
    text = row.get("generated_text")
    text = text.strip() if isinstance(text, str) else ""
    key = (str(row["prompt_id"]), model, settings_hash, _count(row["sample_idx"]))
    if isinstance(error, str) and error:
        return Response(*key, None, error=f"vLLM on Ray: {error}")
    if not text:
        return Response(*key, None, error="vLLM on Ray returned no text")
    n_in, n_out = _count(row.get("num_input_tokens")), _count(row.get("num_generated_tokens"))
    truncated = n_out >= max_tokens or (max_model_len is not None and n_in + n_out >= max_model_len)
    return Response(*key, text, "length" if truncated else "stop", n_in, n_out)
