"""Generation stage of ``fusedata build``: prompts → responses, written to the run store as they arrive.

Resumable by construction: the work list is "every (prompt, sample index) this model
has not answered successfully with these sampling params", recomputed from the store
on every run. Failures stay in the store with their error and are retried next run.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .cluster import Executor, LocalExecutor, RayExecutor, Resources, vllm_on_ray
from .engines import Engine, GenRequest, make_engine
from .recipe import ModelSpec, Recipe
from .records import Prompt
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


def progress_bar(console: Console) -> Progress:
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

    def __init__(self, spec: ModelSpec, engine_factory=make_engine):
        self.spec = spec
        self.engine: Engine = engine_factory(spec.engine)

    def __call__(self, batch: list[GenRequest]) -> list:
        return self.engine.generate(batch, self.spec.sampling)

    def close(self) -> None:
        self.engine.close()


def generate_for(specs: tuple[ModelSpec, ...] | list[ModelSpec], prompts: list[Prompt], store: RunStore,
                 console: Console, *, engine_factory=make_engine, executor: Executor | None = None) -> GenerationReport:
    """Generate the missing samples of ``prompts`` from each model (also used for the WRPO target)."""
    executor = executor or LocalExecutor()
    rep = GenerationReport(prompts=Counter(p.domain for p in prompts))
    work = {m.name: work_for(m, prompts, store) for m in specs}
    with progress_bar(console) as bar:
        tasks = {
            m.name: bar.add_task(m.name, total=sum(len(r.sample_indices) for r in work[m.name]), tokens=0, failed=0,
                                 start=False)
            for m in specs
        }
        for m in specs:
            if not work[m.name]:
                continue
            t0 = time.perf_counter()
            bar.start_task(tasks[m.name])
            chunks = batches(work[m.name], m.engine.chunk_size)
            if isinstance(executor, RayExecutor) and m.engine.engine == "vllm":
                stream = vllm_on_ray(m, chunks)
            else:
                stream = executor.map(functools.partial(EngineWorker, m, engine_factory), chunks,
                                      Resources.from_extra(m.engine.extra))
            try:
                for results in stream:
                    store.put_responses(results)
                    ok = [r for r in results if r.ok]
                    rep.new_responses[m.name] += len(ok)
                    rep.new_failures[m.name] += len(results) - len(ok)
                    t = bar.tasks[tasks[m.name]]
                    bar.update(tasks[m.name], advance=len(results),
                               tokens=t.fields["tokens"] + sum(r.n_output_tokens for r in ok),
                               failed=t.fields["failed"] + len(results) - len(ok))
            finally:
                stream.close()  # releases the engine (local) even when the loop stopped early
                bar.stop_task(tasks[m.name])
                rep.wall_s[m.name] = time.perf_counter() - t0
    return rep


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
