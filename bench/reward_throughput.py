"""Reward-model throughput: length-sorted batches vs one pair at a time, same items.

    .venv/bin/python bench/reward_throughput.py [--items 48] [--batch-size 8] [--repeats 2] [--json PATH]

The reward model is the embedded SmolLM2-135M backbone under a fresh one-label
sequence-classification head (random, seeded: the values mean nothing, the cost is that of
a real 135M RM). Both paths go through ``SeqClsReward.score_many``; the one-by-one path calls
it with a single pair each time. Best of ``--repeats`` interleaved runs, after a warm-up.
The largest |batched − one-by-one| difference is printed as a correctness check.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusedata import models
from fusedata.engines.hf import default_device
from fusedata.rewards import SeqclsRewardConfig
from fusedata.rewards.seqcls import SeqClsReward

DATA = Path(__file__).resolve().parent.parent / "fusedata" / "data"
SENTENCES = [
    "Here is a careful answer that explains each step. ",
    "First, restate the question in plain words; then work it out. ",
    "def solve(x):\n    return sum(v * v for v in x)\n",
    "In short: keep it simple, check the result, and say why it holds. ",
]


def make_items(n: int) -> list[tuple[list[dict], str]]:
    """n (prompt, response) pairs from the shipped prompt files, responses 1–16 sentences long."""
    prompts: list[str] = []
    for name, key in (("instruction.jsonl", "prompt"), ("math.jsonl", "question"), ("code.jsonl", "task")):
        with open(DATA / name, encoding="utf-8") as fh:
            prompts += [json.loads(line)[key] for line in fh if line.strip()]
    items = []
    for k in range(n):
        reps = 1 + (k * 7) % 16  # 1..16, spread so batches really mix lengths
        items.append(([{"role": "user", "content": prompts[k % len(prompts)]}], SENTENCES[k % len(SENTENCES)] * reps))
    return items


def timed(fn) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu, cuda…; default: cuda when available (bf16 there)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification

    ref = models.resolve("embedded:smollm2-135m")
    torch.manual_seed(0)
    device = args.device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(ref.path, num_labels=1, dtype=dtype).to(device)
    tok = models.load_tokenizer(ref)
    cfg = SeqclsRewardConfig(model="embedded:smollm2-135m", batch_size=args.batch_size,
                             name="rm:smollm2-135m-random-head")
    rm = SeqClsReward(cfg, model=model, tokenizer=tok)

    items = make_items(args.items)
    lengths = sorted((len(rm.encode(p, r)[0]) for p, r in items), reverse=True)  # the order score_many batches in
    padded = sum(chunk[0] * len(chunk) for chunk in
                 (lengths[i:i + args.batch_size] for i in range(0, len(lengths), args.batch_size)))
    n_tokens = sum(lengths)

    rm.score_many(items[: args.batch_size])  # warm-up
    best_b = best_s = float("inf")
    batched = single = []
    for _ in range(args.repeats):
        batched, secs = timed(lambda: rm.score_many(items))
        best_b = min(best_b, secs)
        single, secs = timed(lambda: [rm.score_many([it])[0] for it in items])
        best_s = min(best_s, secs)
    max_diff = max(abs(a - b) for a, b in zip(batched, single))

    n = len(items)
    rows = [
        ("one-by-one", 1, best_s, n / best_s, n_tokens / best_s, 1.0),
        (f"batched (length-sorted, {args.batch_size})", args.batch_size, best_b, n / best_b, n_tokens / best_b,
         best_s / best_b),
    ]
    console = Console()
    table = Table(title=f"seqcls reward throughput — SmolLM2-135M backbone, {n} items, "
                        f"{lengths[-1]}–{lengths[0]} tokens (total {n_tokens}), {device}, "
                        f"torch threads {torch.get_num_threads()}")
    for col in ("mode", "batch", "seconds", "items/s", "tokens/s", "speed-up"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, bs, secs, ips, tps, ratio in rows:
        table.add_row(mode, str(bs), f"{secs:.2f}", f"{ips:.1f}", f"{tps:.0f}", f"{ratio:.2f}×")
    console.print(table)
    console.print(f"padding efficiency of the batched run: {n_tokens / padded:.1%} real tokens; "
                  f"max |batched − one-by-one| = {max_diff:.2e}")
    print(f"items/s one-by-one {n / best_s:.2f}  batched {n / best_b:.2f}  ratio {best_s / best_b:.2f}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "items": n, "batch_size": args.batch_size, "tokens": n_tokens, "device": device,
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "one_by_one_s": best_s, "batched_s": best_b, "ratio": best_s / best_b, "max_abs_diff": max_diff,
        }, indent=2))


if __name__ == "__main__":
    main()
