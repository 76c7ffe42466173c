"""Peak memory and wall time of the score, pairs and inspect stages as the run store grows.

    .venv/bin/python bench/store_scale.py [--sizes 100000,1000000] [--methods fusechat3,wrpo,fuserl] [--quick]

For each size, fills a run store with that many synthetic responses of about 2 KB (4 source models × 4
samples per prompt, and the WRPO target's 4 samples on its preference prompts; domains 50 % instruction,
30 % math, 20 % code; stored model by model, as a build stores them), then runs each stage in a fresh
subprocess and prints the child's peak RSS (``ru_maxrss`` from ``wait4``) and the stage's wall time:

* score: ``pipeline.score_stage`` (what ``fusedata score`` runs) with ``reward: {kind: none}``. The
  reward scores (``rm:synthetic``: a per-prompt level + a per-model offset + noise) and almost all
  verifier scores are written into the store by the fill, so the stage measures the store reads and
  not the models. The real verifiers run only on a fixed part left unscored: 200 maths responses
  (math-verify) and 40 code responses (the sandbox), the same at every size.
* pairs: ``candidates`` → ``build_configs`` → ``write_run_dataset`` (what ``fusedata pairs`` runs
  once the target is sampled), one subprocess per method.
* inspect: ``inspect_run``, ``plot_inspect`` and two ``examples`` (what ``fusedata inspect`` runs).

Goal: the 1 M peak of each stage at most 1.2 × its 100 k peak, and at most 1 GB. ``--fusedata-src``
runs the stages from another source tree (e.g. a ``git archive`` of an older commit) on the same stores.
The default run takes about 10 minutes on a 2-core machine and needs about 3 GB of disk (``--dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import describe  # bench/, the script's own folder
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("src-a", "src-b", "src-c", "src-d")
TARGET = "target"
SAMPLES = 4
SETTINGS = "0123456789abcdef"
REWARD = "rm:synthetic"
MATH_PENDING, CODE_PENDING = 200, 40
BATCH = 20_000  # rows per executemany transaction of the fill


def recipe_raw(method: str = "fusechat3") -> dict:
    return {"name": "store-scale", "domains": {"math": ["embedded:math"]},
            "models": [{"name": m, "model": "embedded:smollm2-135m"} for m in SOURCES],
            "target": {"name": TARGET, "model": "embedded:smollm2-135m"},
            "scoring": {"reward": {"kind": "none"}},
            "pairs": {"method": method, "test_fraction": 0.05}}


# -- fill ----------------------------------------------------------------------------------------

def _prompts(n: int, rng: random.Random) -> list:
    from fusedata.records import Prompt

    out = []
    for i in range(n):
        roll = rng.random()
        dom = "instruction" if roll < 0.5 else "math" if roll < 0.8 else "code"
        msgs = [{"role": "user", "content": f"{dom} task {i}: " + "please explain in detail " * rng.randint(2, 12)}]
        out.append(Prompt.make(dom, f"synthetic-{dom}", msgs, gold=str(i) if dom == "math" else None,
                               tests=f"assert f({i}) == {i}" if dom == "code" else None))
    return out


def fill(folder: Path, n_responses: int, seed: int = 0) -> dict[str, int]:
    """A run store of about ``n_responses`` responses with reward and verifier scores (see the docstring)."""
    from fusedata.pairs import split_wrpo
    from fusedata.store import RunStore

    rng = random.Random(seed)
    per_prompt = len(SOURCES) * SAMPLES + SAMPLES * 2 / 3  # the target samples 2/3 of the prompts
    prompts = _prompts(max(1, round(n_responses / per_prompt)), rng)
    preference = set(split_wrpo([p.id for p in prompts], 0)[1])
    corpus = "".join(rng.choice("etaoin shrdlu cmfwyp vbgkqj xz\n") for _ in range(1 << 20))
    level = {p.id: rng.gauss(0.0, 1.0) for p in prompts}
    skill = {m: 0.1 * k for k, m in enumerate((*SOURCES, TARGET))}
    pending = {"math": MATH_PENDING, "code": CODE_PENDING}
    now = time.time()
    n = {"prompts": len(prompts), "responses": 0, "scores": 0}
    with RunStore(folder) as store:
        store.set_meta("recipe", recipe_raw())
        store.put_prompts(prompts)
        for model in (*SOURCES, TARGET):
            todo = [p for p in prompts if model != TARGET or p.id in preference]
            resp, scores = [], []
            for p in todo:
                for k in range(SAMPLES):
                    text, verdict = _answer(p, model, k, rng, corpus, pending)
                    resp.append((p.id, model, SETTINGS, k, text, "stop", 120, len(text) // 4, None, 1.0, 1, now))
                    key = (p.id, model, SETTINGS, k)
                    reward = level[p.id] + skill[model] + rng.gauss(0.0, 0.08)
                    scores.append((*key, REWARD, reward, None, "{}", None, now))
                    if verdict is not None:
                        scores.append((*key, p.domain, *verdict, None, now))
                if len(resp) >= BATCH:
                    n["responses"] += _insert(store, resp, scores)
                    n["scores"] += len(scores)
                    resp, scores = [], []
            n["responses"] += _insert(store, resp, scores)
            n["scores"] += len(scores)
    return n


def _answer(p, model: str, k: int, rng: random.Random, corpus: str,
            pending: dict[str, int]) -> tuple[str, tuple | None]:
    """(text of ~2 KB, stored verifier score (value, label, detail) or None: left for the real verifier)."""
    size = rng.randint(1500, 2500)
    start = rng.randrange(len(corpus) - size)
    body = f"{model} sample {k}: " + corpus[start:start + size]
    if p.domain == "instruction":
        return body, None
    if pending[p.domain] > 0 and model != TARGET:
        pending[p.domain] -= 1
        if p.domain == "math":
            return body + f"\nSo the answer is \\boxed{{{p.gold if k % 2 else 0}}}.", None
        return f"```python\ndef f(x):\n    return x{' + 1' if k % 2 else ''}\n```\n" + body, None
    ok = rng.random() < 0.45 + 0.1 * SOURCES.index(model) if model in SOURCES else rng.random() < 0.5
    if p.domain == "math":
        return body, (1.0 if ok else 0.0, "correct" if ok else "wrong", json.dumps({"extracted": str(k)}))
    return body, (1.0 if ok else 0.0, "passed" if ok else "failed", json.dumps({"tests_passed": int(ok)}))


def _insert(store, resp: list[tuple], scores: list[tuple]) -> int:
    with store.db:
        store.db.executemany("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", resp)
        store.db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", scores)
    return len(resp)


# -- stages (each in its own subprocess) ---------------------------------------------------------

def stage(name: str, run: Path) -> float:
    """Run one stage on the store in ``run``; its wall time in seconds (imports not counted)."""
    from fusedata import recipe as recipe_mod
    from fusedata.store import RunStore

    quiet = Console(file=open(os.devnull, "w"))
    t0 = time.perf_counter()
    with RunStore(run) as store:
        if name == "score":
            from fusedata.pipeline import score_stage

            score_stage(store, recipe_mod.parse(recipe_raw()).scoring, quiet)
        elif name == "inspect":
            from fusedata.inspect import examples, inspect_run, plot_inspect

            plot_inspect(inspect_run(store), run / "inspect.png")
            examples(store, 2)
        else:
            from fusedata.dataset import build_configs, candidates, write_run_dataset

            r = recipe_mod.parse(recipe_raw(name.split(":", 1)[1]))
            configs, report = build_configs(*candidates(store, r), r.pairs)
            write_run_dataset(store, r, configs, report)
    return time.perf_counter() - t0


def child(args: list[str], src: Path) -> tuple[float, dict]:
    """(peak RSS in MB, its result) of this script run with ``args`` in a fresh interpreter.

    A child's ``ru_maxrss`` starts at its parent's high-water mark (the pages it shared until
    ``exec``), so the parent stays small: the fill runs in a child too, and nothing is imported here.
    """
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    out = Path(path)
    proc = subprocess.Popen([sys.executable, __file__, *args, "--result", str(out)], env=env, cwd=src)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    out.unlink()
    return usage.ru_maxrss / 1024, result  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="responses per store, comma-separated")
    ap.add_argument("--methods", default="fusechat3,wrpo,fuserl", help="pair methods to run")
    ap.add_argument("--quick", action="store_true", help="sizes 2000,8000: a smoke run of a minute")
    ap.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--fusedata-src", type=Path, default=REPO, help="source tree the stages run from")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        args.result.write_text(json.dumps({"seconds": stage(args.stage, args.run)}))
        return
    if args.fill:
        args.result.write_text(json.dumps(fill(args.run, args.fill)))
        return
    sizes = [2000, 8000] if args.quick else [int(s) for s in args.sizes.split(",")]
    names = ["score", *(f"pairs:{m}" for m in args.methods.split(",") if m), "inspect"]
    root = Path(tempfile.mkdtemp(prefix="store-scale-", dir=args.dir))
    results: dict = {"machine": describe(), "date": datetime.now(timezone.utc).isoformat("T", "minutes"),
                     "src": str(args.fusedata_src), "sizes": {}}
    try:
        for size in sizes:
            run = root / f"run-{size}"
            t0 = time.perf_counter()
            _, counts = child(["--fill", str(size), "--run", str(run)], REPO)
            res = results["sizes"][str(size)] = {**counts, "fill_s": round(time.perf_counter() - t0, 1),
                                                 "store_mb": round((run / "run.sqlite").stat().st_size / 2**20)}
            for name in names:
                peak, out = child(["--stage", name, "--run", str(run)], args.fusedata_src.resolve())
                secs = out["seconds"]
                res[name] = {"peak_mb": round(peak), "seconds": round(secs, 1)}
                print(f"{size:>9,} {name:<16} peak {peak:7.0f} MB  {secs:7.1f} s", flush=True)
            shutil.rmtree(run)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results, sizes, names)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict, sizes: list[int], names: list[str]) -> None:
    by = results["sizes"]
    small, large = str(sizes[0]), str(sizes[-1])
    t = Table(title="run-store scale — peak RSS of a fresh process per stage, and its wall time")
    t.add_column("stage")
    for s in sizes:
        t.add_column(f"{s:,} responses: MB", justify="right")
        t.add_column("s", justify="right")
    if len(sizes) > 1:
        t.add_column(f"peak {int(large) // 1000}k/{int(small) // 1000}k", justify="right")
    for name in names:
        cells = [c for s in sizes for c in (str(by[str(s)][name]["peak_mb"]), f"{by[str(s)][name]['seconds']:.1f}")]
        if len(sizes) > 1:
            cells.append(f"{by[large][name]['peak_mb'] / by[small][name]['peak_mb']:.2f}")
        t.add_row(name, *cells)
    console = Console(width=max(140, Console().width))
    console.print(t)
    for s in sizes:
        r = by[str(s)]
        console.print(f"{s:,} responses: {r['prompts']:,} prompts, {r['scores']:,} scores, store {r['store_mb']:,} MB, "
                      f"filled in {r['fill_s']:.0f} s")
    if len(sizes) > 1:
        worst = max(by[large][n]["peak_mb"] / by[small][n]["peak_mb"] for n in names)
        top = max(by[large][n]["peak_mb"] for n in names)
        console.print(f"largest peak ratio {worst:.2f} (goal ≤ 1.2), largest peak {top} MB (goal ≤ 1024)")
    console.print(f"source: {results['src']}")
    console.print(f"machine: {results['machine']}")
    console.print(f"date: {results['date']}")


if __name__ == "__main__":
    main()
