"""Generation stage of ``fusedata build``: prompts → responses, written to the run store as they arrive.

Resumable by construction: the work list is "every (prompt, sample index) this model
has not answered successfully with these sampling params", recomputed from the store
on every run. Failures stay in the store with their error and are retried next run.
Served models write each reply as it lands, so a killed run loses at most the requests in flight.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .cluster import Executor, LocalExecutor, RayExecutor, Resources, vllm_on_ray
from .engines import Engine, GenRequest, make_engine
from .recipe import ModelSpec, Recipe
from .records import Prompt, Response
from .sources import load_source
from .store import RunStore


def collect_prompts(recipe: Recipe) -> list[Prompt]:
    """Load every domain's prompt sources; dedup across sources by prompt id; apply limits."""
    out: list[Prompt] = []
    seen: set[str] = set()
    for domain, spec in recipe.domains.items():
        kept: list[Prompt] = []
        for src in spec.sources:
            # The recipe checked that each source gives its domain's prompts.
            for p in load_source(src.name, limit=src.limit, data_files=src.data_files, split=src.split):
                if p.id not in seen:
                    seen.add(p.id)
                    kept.append(p)
        out.extend(kept[: spec.limit] if spec.limit is not None else kept)
    return out


def work_for(model: ModelSpec, prompts: list[Prompt], store: RunStore) -> list[GenRequest]:
    """The (prompt, missing sample indices) this model still owes, in prompt order."""
    done = store.done_keys(model.name, model.sampling.hash())
    reqs = []
    for p in prompts:
        if not model.serves(p.domain):
            continue
        missing = tuple(i for i in range(model.n_for(p.domain)) if (p.id, i) not in done)
        if missing:
            reqs.append(GenRequest(p, missing))
    return reqs


def batches(reqs: list[GenRequest], size: int) -> list[list[GenRequest]]:
    """Split into batches of at most ``size`` samples (a prompt's samples may span batches)."""
    out: list[list[GenRequest]] = []
    cur: list[GenRequest] = []
    room = size
    for r in reqs:
        idx = list(r.sample_indices)
        while idx:
            take, idx = idx[:room], idx[room:]
            cur.append(GenRequest(r.prompt, tuple(take)))
            room -= len(take)
            if room == 0:
                out.append(cur)
                cur, room = [], size
    if cur:
        out.append(cur)
    return out


class TokensPerSecond(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[override]
        toks, secs = task.fields.get("tokens", 0), task.elapsed or 0.0
        return Text(f"{toks / secs:6.1f} tok/s" if secs > 0 and toks else "    – tok/s", style="cyan")


#: seconds between plain progress lines when stdout is not a terminal (SLURM, nohup, CI)
PROGRESS_EVERY = float(os.environ.get("FUSEKIT_PROGRESS_EVERY", "30"))


class PlainLines(Progress):
    """Progress for logs nobody watches live: every ``every`` seconds, one plain line per running task
    (done/total, tok/s, failures, ETA), and a last line per task when it stops. Rich's live display
    would print nothing to a file until the very end."""

    def __init__(self, console: Console, every: float = PROGRESS_EVERY):
        super().__init__(console=console, disable=True)
        self.every, self._quit = every, threading.Event()
        self._printer = threading.Thread(target=self._print_periodically, name="progress lines", daemon=True)

    def start(self) -> None:
        super().start()
        self._printer.start()

    def stop(self) -> None:
        if self._printer.is_alive():
            self._quit.set()
            self._printer.join()
            for task in self.tasks:  # the last word on tasks nobody stopped
                if task.started and task.stop_time is None:
                    self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)
        super().stop()

    def _print_periodically(self) -> None:
        while not self._quit.wait(self.every):
            for task in self.tasks:
                if task.started and not task.finished and task.stop_time is None:
                    self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)

    def stop_task(self, task_id: TaskID) -> None:
        super().stop_task(task_id)
        with self._lock:
            task = self._tasks[task_id]
        self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)

    @staticmethod
    def line(task: Task) -> str:
        done, total, secs = int(task.completed), task.total, task.elapsed or 0.0
        parts = [f"{Text.from_markup(task.description).plain}: {done}/{int(total) if total is not None else '?'}"]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        toks = task.fields.get("tokens", 0)
        if toks and secs > 0:
            parts.append(f"{toks / secs:.1f} tok/s")
        parts.append(f"{task.fields.get('failed', 0)} failed")
        eta = task.time_remaining
        if task.stop_time is not None or (total is not None and done >= total):
            parts.append(f"done in {_clock(secs)}")
        elif eta is not None:
            parts.append(f"ETA {_clock(eta)}")
        return ", ".join(parts)


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_bar(console: Console) -> Progress:
    """Live bars on a terminal; plain periodic lines otherwise."""
    if not console.is_terminal:
        return PlainLines(console)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TokensPerSecond(),
        TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), console=console,
    )


@dataclass
class GenerationReport:
    prompts: Counter = field(default_factory=Counter)
    new_responses: Counter = field(default_factory=Counter)
    new_failures: Counter = field(default_factory=Counter)
    wall_s: dict[str, float] = field(default_factory=dict)


class EngineWorker:
    """One replica of a source model: its engine, loaded where the worker runs."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.engine: Engine = make_engine(spec.engine)

    def __call__(self, batch: list[GenRequest]) -> list:
        return self.engine.generate(batch, self.spec.sampling)

    def close(self) -> None:
        self.engine.close()


class _Tally:
    """What landed, per model, for the report and the bars; each model is counted by one thread only."""

    def __init__(self, bar: Progress, specs: list[ModelSpec], work: dict[str, list[GenRequest]],
                 rep: GenerationReport):
        self.bar, self.rep = bar, rep
        self.tasks = {m.name: bar.add_task(m.name, total=sum(len(r.sample_indices) for r in work[m.name]),
                                           tokens=0, failed=0, start=False) for m in specs}
        self.t0: dict[str, float] = {}

    def start(self, model: str) -> None:
        self.t0[model] = time.perf_counter()
        self.bar.start_task(self.tasks[model])

    def add(self, model: str, results: list[Response]) -> None:
        ok = sum(r.ok for r in results)
        self.rep.new_responses[model] += ok
        self.rep.new_failures[model] += len(results) - ok
        t = self.bar.tasks[self.tasks[model]]
        self.bar.update(self.tasks[model], advance=len(results),
                        tokens=t.fields["tokens"] + sum(r.n_output_tokens for r in results if r.ok),
                        failed=t.fields["failed"] + len(results) - ok)

    def stop(self, model: str) -> None:
        self.bar.stop_task(self.tasks[model])
        self.rep.wall_s[model] = time.perf_counter() - self.t0[model]


def generate_for(specs: tuple[ModelSpec, ...] | list[ModelSpec], prompts: list[Prompt], store: RunStore,
                 console: Console, *, executor: Executor | None = None) -> GenerationReport:
    """Generate the missing samples of ``prompts`` from each model (also used for the WRPO target).

    Served models (``engine: openai``) all run at once, each through its own endpoint's sliding window
    in a thread of its own that writes every reply the moment it lands; in-process models run one after
    another in this thread meanwhile, since they share this machine's devices. Every endpoint is probed
    before any prompt is sent, so an unreachable one stops the run before it starts.
    """
    executor = executor or LocalExecutor()
    rep = GenerationReport(prompts=Counter(p.domain for p in prompts))
    work = {m.name: work_for(m, prompts, store) for m in specs}
    todo = [m for m in specs if work[m.name]]
    served = [m for m in todo if m.engine.endpoint is not None]
    with progress_bar(console) as bar, _Endpoints(served) as engines:
        tally = _Tally(bar, list(specs), work, rep)
        threads = [_ServedSource(m, engines[m.name], work[m.name], store.folder, tally) for m in served]
        try:
            for t in threads:
                t.start()
            for m in todo:
                if m not in served:
                    _run_local(m, work[m.name], store, executor, tally)
        except BaseException:  # Ctrl-C or a failed local model: the served ones stop at their next write
            for t in threads:
                t.stop.set()
            raise
        finally:
            for t in threads:
                t.join()
        for t in threads:
            if t.error is not None:
                raise t.error
    return rep


class _Endpoints(dict):
    """The served models' engines, each probed on creation, all closed on exit."""

    def __init__(self, specs: list[ModelSpec]):
        super().__init__()
        try:
            for m in specs:
                self[m.name] = make_engine(m.engine)
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self) -> "_Endpoints":
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self.values():
            engine.close()


class _ServedSource(threading.Thread):
    """One served model's generation: its requests streamed through the endpoint's window, each batch of
    replies written by this thread's own store connection (SQLite serialises the writers)."""

    def __init__(self, spec: ModelSpec, engine: Engine, reqs: list[GenRequest], folder: Path, tally: _Tally):
        super().__init__(name=f"generate {spec.name}")
        self.spec, self.engine, self.reqs, self.folder, self.tally = spec, engine, reqs, folder, tally
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.tally.start(self.spec.name)
            with RunStore(self.folder) as store, closing(self.engine.stream(self.reqs, self.spec.sampling)) as replies:
                for results in replies:
                    store.put_responses(results)
                    self.tally.add(self.spec.name, results)
                    if self.stop.is_set():
                        break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            self.error = e
        finally:
            self.tally.stop(self.spec.name)


def _run_local(m: ModelSpec, reqs: list[GenRequest], store: RunStore, executor: Executor, tally: _Tally) -> None:
    tally.start(m.name)
    chunks = batches(reqs, m.engine.chunk_size)
    if isinstance(executor, RayExecutor) and m.engine.engine == "vllm":
        stream = vllm_on_ray(m, chunks)
    else:
        stream = executor.map(functools.partial(EngineWorker, m), chunks, Resources.from_extra(m.engine.extra))
    try:
        for results in stream:
            store.put_responses(results)
            tally.add(m.name, results)
    finally:
        stream.close()  # releases the engine (local) even when the loop stopped early
        tally.stop(m.name)


def summary_table(store: RunStore, rep: GenerationReport) -> Table:
    """Per model: what the store now holds, plus what this run added."""
    t = Table(title="fusedata build — generation")
    for col in ("model", "prompts", "responses", "new", "failures", "input tok", "output tok", "wall s"):
        t.add_column(col, justify="left" if col == "model" else "right")
    stats = store.response_stats()
    n_prompts = {}
    for model, n in store.db.execute("SELECT model, COUNT(DISTINCT prompt_id) FROM responses GROUP BY model"):
        n_prompts[model] = n
    for model, s in stats.items():
        t.add_row(model, str(n_prompts.get(model, 0)), str(int(s["responses"])), str(rep.new_responses.get(model, 0)),
                  f"[red]{int(s['failures'])}[/]" if s["failures"] else "0", f"{int(s['input_tokens']):,}",
                  f"{int(s['output_tokens']):,}", f"{rep.wall_s.get(model, 0.0):.1f}")
    return t
