"""Endpoint throughput: `fusedata build` against busy OpenAI-compatible servers, as a share of what
the servers could have answered in the same time, next to a plain asyncio client on the same work.

    .venv/bin/python bench/endpoint_throughput.py [--prompts 512] [--samples 2] [--concurrency 32]
        [--median 0.5] [--sigma 1.0] [--quick] [--fusedata-src DIR]

The servers are ``tests.servers.SyntheticOpenAI`` on 127.0.0.1, standing in for busy vLLM servers:
every choice takes a lognormal time (median 0.5 s, sigma 1 by default: a heavy tail, a few
requests take ten times the median) drawn from the request itself, so every run replays the same
latencies. Three sources on two servers: ``a`` and ``b`` share server 1, ``c`` has server 2 to
itself. Each source asks ``--samples`` samples of ``--prompts`` math prompts (additions, written to
a prompt file) with ``concurrency: --concurrency``; scoring is the math verifier only and no
dataset is built (``--no-pairs``), so the run is generation plus a few seconds.

- fusedata: the real CLI (``fusedata build RECIPE --out DIR --no-pairs``); its time is the
  generation wall time that ``summary.json`` reports (``wall_s``: from the build's start to the
  end of generation, so prompt loading and endpoint probes count, scoring does not).
- peer: the strongest fair plain client, one ``openai.AsyncOpenAI`` per server and a semaphore of
  ``--concurrency`` per server, every request sent at once; its time is from the first request to
  the last answer. Fresh servers, so it meets the same latencies.
- capacity: each server generates at most ``--concurrency`` choices at once (its ``slots``, like
  vLLM's ``max_num_seqs``; requests beyond that wait in its queue). Per server, the seconds of
  latency it actually slept divided by ``--concurrency`` is the time it needs with every slot
  busy all the time; the run's capacity is the largest over the servers, which work at the same
  time. Share of capacity = capacity / wall time (1.0 is the ideal, and a bound). ``max in
  flight`` above ``--concurrency`` (flagged) means the client sent more than the server serves at
  once; the excess only waited. A build that asks for n samples in one request has each choice
  drawn and slotted on its own, so it meets the same work as the peer.
- fusedata / peer: the peer's wall time over fusedata's, on the same work (1.0: as fast).

Why 512 prompts x 2 samples: server 1 then serves 2048 requests, whose latencies add up to
about 53 s at 32 slots. Even a perfect scheduler ends with the last few slow requests running on
a mostly idle server (a tail of up to ~12 s at sigma 1); simulated, 2048 requests keep that tail
to about a tenth of the run (a greedy scheduler that never idles a slot reaches ~0.9 of capacity
on average), where the 512 requests of a 256 x 2 run on one server leave it ~0.7. Larger runs
would be fairer still but take longer: the whole bench takes about 2 minutes when the build is as
fast as the peer, ~4.5 with the build of commit 4b06551 (0.29 of capacity).

Goal for fusedata: >= 0.9 of capacity. Results also go to bench/out/endpoint_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.servers

from machine import describe  # noqa: E402 - bench/, the script's own folder

from fusedata.engines import sample_seed  # noqa: E402
from fusedata.records import SamplingParams, prompt_id_for  # noqa: E402
from fusedata.sources.hub import math_prompt  # noqa: E402
from tests.servers import SyntheticOpenAI  # noqa: E402

SOURCES = {"a": 0, "b": 0, "c": 1}  # source -> server index
MAX_TOKENS, TEMPERATURE, TOP_P = 64, 0.8, 0.95


@dataclass
class Run:
    name: str
    wall_s: float
    servers: list[SyntheticOpenAI]
    concurrency: int

    @property
    def capacity_s(self) -> float:
        return max(s.busy_seconds for s in self.servers) / self.concurrency

    @property
    def share(self) -> float:
        return self.capacity_s / self.wall_s

    @property
    def queued(self) -> bool:
        return any(s.max_in_flight > self.concurrency for s in self.servers)


def write_prompts(path: Path, n: int) -> list[dict]:
    """n addition questions: the synthetic servers answer about half of them right."""
    rows = [{"id": f"add-{i:05d}", "question": f"What is {17 + i * 7 % 89} + {3 + i * 13 % 97}?",
             "answer": str(17 + i * 7 % 89 + 3 + i * 13 % 97)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def servers(args: argparse.Namespace) -> list[SyntheticOpenAI]:
    names = [[m for m, i in SOURCES.items() if i == k] for k in range(2)]
    return [SyntheticOpenAI(ms, median=args.median, sigma=args.sigma, seed=k, slots=args.concurrency)
            for k, ms in enumerate(names)]


def recipe(args: argparse.Namespace, prompts: Path, urls: list[str]) -> dict:
    return {
        "name": "endpoint-throughput",
        "domains": {"math": {"sources": [{"name": "embedded:math", "data_files": str(prompts)}],
                             "limit": args.prompts}},
        "models": [{"name": m, "model": m, "engine": "openai", "base_url": urls[k], "concurrency": args.concurrency,
                    "sampling": {"max_tokens": MAX_TOKENS, "temperature": TEMPERATURE, "top_p": TOP_P,
                                 "n": args.samples, "seed": 0}}
                   for m, k in SOURCES.items()],
        "scoring": {"domains": {"math": ["math"]}, "reward": {"kind": "none"}},
    }


def run_fusedata(args: argparse.Namespace, work: Path, prompts: Path, limit_s: float) -> Run:
    srv = servers(args)
    for s in srv:
        s.__enter__()
    try:
        path = work / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe(args, prompts, [s.url for s in srv])))
        env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
        if args.fusedata_src:
            env["PYTHONPATH"] = str(Path(args.fusedata_src).resolve())
        cli = Path(sys.executable).with_name("fusedata")
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "fusedata"]
        res = subprocess.run([*cmd, "build", str(path), "--out", str(work / "run"), "--no-pairs"],
                             capture_output=True, text=True, env=env, timeout=limit_s,
                             cwd=args.fusedata_src or REPO)
        if res.returncode != 0:
            raise SystemExit(f"fusedata build failed ({res.returncode}):\n{res.stderr[-3000:]}")
        summary = json.loads((work / "run" / "summary.json").read_text())
        failures = sum(m.get("failures", 0) for m in summary["models"].values())
        if failures:
            raise SystemExit(f"fusedata build stored {failures} failed requests; the servers make none")
        return Run("fusedata build", float(summary["wall_s"]), srv, args.concurrency)
    finally:
        for s in srv:
            s.__exit__()


async def peer_requests(args: argparse.Namespace, rows: list[dict], urls: list[str]) -> float:
    import openai

    clients = [openai.AsyncOpenAI(base_url=u, api_key="EMPTY", timeout=300.0) for u in urls]
    slots = [asyncio.Semaphore(args.concurrency) for _ in urls]

    async def one(model: str, k: int, messages: list[dict], seed: int) -> None:
        async with slots[k]:
            await clients[k].chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS,
                                                     temperature=TEMPERATURE, top_p=TOP_P, seed=seed)

    # The requests today's build sends, seeds included, so the servers draw the same latencies.
    params = SamplingParams(temperature=TEMPERATURE, top_p=TOP_P, max_tokens=MAX_TOKENS, n=args.samples, seed=0)
    prompts = [math_prompt(r["question"]) for r in rows]
    jobs = [one(m, k, msgs, sample_seed(params, prompt_id_for(msgs), j))
            for m, k in SOURCES.items() for msgs in prompts for j in range(args.samples)]
    t0 = time.perf_counter()
    await asyncio.gather(*jobs)
    wall = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return wall


def run_peer(args: argparse.Namespace, rows: list[dict], limit_s: float) -> Run:
    srv = servers(args)
    for s in srv:
        s.__enter__()
    try:
        wall = asyncio.run(asyncio.wait_for(peer_requests(args, rows, [s.url for s in srv]), limit_s))
        return Run("peer: AsyncOpenAI + semaphore", wall, srv, args.concurrency)
    finally:
        for s in srv:
            s.__exit__()


def report(args: argparse.Namespace, runs: list[Run]) -> dict:
    t = Table(title=f"endpoint throughput — 3 sources on 2 servers, {args.prompts} prompts × {args.samples} samples, "
                    f"concurrency {args.concurrency}, latency lognormal median {args.median} s σ {args.sigma}")
    for c in ("run", "server", "requests", "mean latency s", "max in flight", "capacity s", "wall s", "share"):
        t.add_column(c, justify="left" if c in ("run", "server") else "right")
    now = datetime.now(timezone.utc).isoformat("T", "minutes")
    out: dict = {"args": vars(args), "machine": describe(), "date": now}
    for run in runs:
        for k, s in enumerate(run.servers):
            mean = s.busy_seconds / max(1, len(s.latencies))
            flag = " (q)" if s.max_in_flight > run.concurrency else ""
            t.add_row(run.name if k == 0 else "", f"{k + 1}: {', '.join(s.models)}", str(s.calls), f"{mean:.3f}",
                      f"{s.max_in_flight}{flag}", f"{s.busy_seconds / run.concurrency:.1f}",
                      f"{run.wall_s:.1f}" if k == 0 else "", f"{run.share:.2f}" if k == 0 else "")
        out[run.name] = {"wall_s": round(run.wall_s, 2), "capacity_s": round(run.capacity_s, 2),
                         "share": round(run.share, 3), "queued": run.queued,
                         "servers": [{"requests": s.calls, "busy_s": round(s.busy_seconds, 2),
                                      "max_in_flight": s.max_in_flight} for s in run.servers]}
    fused, peer = runs
    out["fusedata_over_peer"] = round(peer.wall_s / fused.wall_s, 3)
    console = Console(width=max(160, Console().width))
    console.print(t)
    console.print(f"fusedata build: {fused.wall_s:.1f} s of generation (summary.json wall_s) for "
                  f"{fused.capacity_s:.1f} s of capacity → [bold]{fused.share:.2f}[/] of capacity (goal ≥ 0.9)")
    console.print(f"peer: {peer.wall_s:.1f} s for {peer.capacity_s:.1f} s → {peer.share:.2f} of capacity; "
                  f"fusedata / peer speed (peer wall / fusedata wall): [bold]{out['fusedata_over_peer']:.2f}[/]")
    if fused.queued or peer.queued:
        console.print("(q) more than --concurrency requests in flight on a server: the excess waited in its queue")
    console.print(f"machine: {out['machine']}")
    console.print(f"date: {out['date']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--median", type=float, default=0.5, help="median latency, seconds")
    ap.add_argument("--sigma", type=float, default=1.0, help="lognormal shape: 0 is a constant latency")
    ap.add_argument("--quick", action="store_true", help="48 prompts at median 0.05 s: a smoke run of seconds")
    ap.add_argument("--fusedata-src", help="run fusedata from this source tree (e.g. a `git archive` of a commit)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.median = 48, 0.05
    if min(args.prompts, args.samples, args.concurrency) < 1 or args.median <= 0 or args.sigma < 0:
        ap.error("need --prompts, --samples, --concurrency >= 1, --median > 0, --sigma >= 0")
    # Bounded: ten times what one source's work needs at full speed, plus start-up.
    expected = args.prompts * args.samples * 2 * args.median * math.exp(args.sigma**2 / 2) / args.concurrency
    limit_s = 120 + 10 * len(SOURCES) * expected
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        rows = write_prompts(work / "prompts.jsonl", args.prompts)
        runs = [run_fusedata(args, work, work / "prompts.jsonl", limit_s), run_peer(args, rows, limit_s)]
    result = report(args, runs)
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "endpoint_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
