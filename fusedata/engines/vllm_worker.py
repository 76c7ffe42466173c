"""The process that holds vLLM for ``engine: vllm``: run as a script by any Python that has vLLM.

It imports only the standard library and vLLM, never fusedata, so it runs in an environment of
its own (``.venv-vllm``, whose torch and transformers differ from fusekit's). The engine in the
fusedata process talks to it in JSON lines:

- first line in: ``{"model": FOLDER, "engine_kwargs": {...}}``; out: ``{"ready": true, "pid": …,
  "vllm": VERSION, "prefix_caching": BOOL}`` or ``{"fatal": MESSAGE}``;
- then per batch in: ``{"items": [{"messages": [...], "params": {SamplingParams kwargs},
  "prefill": TEXT}]}``; out: ``{"results": [...], "seconds": S}``, one result per item:
  ``{"text", "finish_reason", "stop_reason", "n_input_tokens", "n_output_tokens"}`` or ``{"error"}``;
- end of input: vLLM is shut down and the process exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

# Python puts this file's folder first on sys.path, and fusedata's engine module there is called
# vllm.py too: without this, `import vllm` would find that file instead of vLLM.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def send(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def run_chat(vllm: Any, llm: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``LLM.chat`` call for items that all have a prefill or all have none (vLLM takes the
    continue-the-last-message switch per call, not per conversation)."""
    prefill = bool(items[0].get("prefill"))
    convs = [it["messages"] + ([{"role": "assistant", "content": it["prefill"]}] if prefill else []) for it in items]
    params = [vllm.SamplingParams(**it["params"]) for it in items]
    outs = llm.chat(convs, params, use_tqdm=False, add_generation_prompt=not prefill,
                    continue_final_message=prefill)
    results = []
    for it, out in zip(items, outs):
        comp = out.outputs[0]
        results.append({"text": it.get("prefill", "") + comp.text, "finish_reason": comp.finish_reason,
                        "stop_reason": comp.stop_reason if isinstance(comp.stop_reason, str) else None,
                        "n_input_tokens": len(out.prompt_token_ids or ()), "n_output_tokens": len(comp.token_ids)})
    return results


def is_fatal(e: BaseException) -> bool:
    """An engine that died takes every later request with it: stop instead of failing them one by one."""
    return type(e).__name__ in ("EngineDeadError", "EngineGenerateError") or isinstance(e, MemoryError)


def generate(vllm: Any, llm: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results in item order; a batch that raises is retried item by item, so one bad prompt
    (longer than the model's context, say) fails alone."""
    groups: dict[bool, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(bool(it.get("prefill")), []).append(i)
    results: list[dict[str, Any]] = [{}] * len(items)
    for idx in groups.values():
        try:
            done = run_chat(vllm, llm, [items[i] for i in idx])
        except Exception as e:  # noqa: BLE001 - the batch fails, each item is tried alone
            if is_fatal(e):
                raise
            done = []
            for i in idx:
                try:
                    done += run_chat(vllm, llm, [items[i]])
                except Exception as one:  # noqa: BLE001 - this item's failure record
                    if is_fatal(one):
                        raise
                    done.append({"error": error_text(one)})
        for i, res in zip(idx, done):
            results[i] = res
    return results


def serve(inp: TextIO, out: TextIO) -> int:
    init = json.loads(inp.readline() or "{}")
    try:
        import vllm

        llm = vllm.LLM(model=init["model"], **init.get("engine_kwargs", {}))
    except BaseException as e:  # noqa: BLE001 - reported to the engine, which names the model
        send(out, {"fatal": error_text(e)})
        return 1
    cache = getattr(getattr(llm.llm_engine, "vllm_config", None), "cache_config", None)
    send(out, {"ready": True, "pid": os.getpid(), "vllm": vllm.__version__,
               "prefix_caching": getattr(cache, "enable_prefix_caching", None)})
    for line in inp:
        t0 = time.perf_counter()
        try:
            results = generate(vllm, llm, json.loads(line)["items"])
        except Exception as e:  # noqa: BLE001 - a dead engine ends this process
            send(out, {"fatal": error_text(e)})
            return 1
        send(out, {"results": results, "seconds": time.perf_counter() - t0})
    return 0


def main() -> int:
    # vLLM and the libraries under it print to stdout; the protocol gets a private copy of it and
    # everything else printed goes to stderr, which the engine keeps the tail of for its errors.
    # os.dup's copy is not inherited, so vLLM's own child processes never hold the protocol pipe.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        return serve(sys.stdin, proto)
    except BrokenPipeError:  # the fusedata process is gone: nobody is waiting for the results
        return 1


# vLLM starts its engine processes with spawn, which re-imports this file as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
