"""Preference-training throughput and memory: fusekit's trainer vs TRL's DPOTrainer, same DPO work.

    .venv/bin/python bench/train_throughput.py [--steps 4] [--warmup 1] [--batch-size 2] [--max-length 512]

Both trainers train the embedded SmolLM2-135M (fp32, CPU, no gradient checkpointing) on the
same preference rows (TRL conversational explicit-prompt format), in the same order, with
the same batch size, max_length, lr, beta and sigmoid loss. TRL gets a sequential sampler
over rows pre-ordered to our trainer's seeded permutation, so step k of both runs sees the
same examples and the same padded width.

tokens/s = non-pad tokens the forward processes (prompt + chosen and prompt + rejected per
pair, counted once here from our tokenization and used for both sides) over the wall time
of the measured steps (after ``--warmup`` steps). Our reference pass is one-time work before
step 1, so it is reported twice: excluded (the headline, like TRL's precompute variant) and
added back pro rata to the rows the measured steps cover.

Every trainer runs in its own subprocess so peak RSS (``VmHWM``) does not mix; the peak is
read right after the last optimizer step, before any model saving. Also measured: a WRPO
step (3 responses) against a DPO step (2), and our packed vs padded collator. Ratios are
against the peer measured in the same run; nothing asserts absolute times. Results also go to
bench/out/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
MODEL = "embedded:smollm2-135m"

# Plain English words so the tokenizer sees ordinary text (about one token per word).
WORDS = (
    "the a an of to and in that is for it as with was on be by this are from or at have not but which one all "
    "can we more their if will there when so what about would them some into than time only other people could "
    "first also after use two way most new make work well like just over because any these give day water "
    "number sound find long down part side little between light plant energy sugar answer question step check "
    "result value small large simple careful method reason example first second third final total equal count "
    "model train data test write read list show keep start end each every many few same different good better "
    "best problem solve explain describe compare measure build return function string number array loop"
).split()


def _sentences(rng: random.Random, n_words: int) -> str:
    out, k = [], 0
    while k < n_words:
        n = min(rng.randint(6, 16), n_words - k)
        words = [rng.choice(WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        if n > 8 and rng.random() < 0.4:
            words[n // 2] += ","
        out.append(" ".join(words) + ".")
        k += n
    return " ".join(out)


def _text(rng: random.Random, tok: Any, n_tokens: int) -> str:
    """About ``n_tokens`` tokens of text (cut at a token boundary, so a re-encode may differ by one)."""
    ids = tok(_sentences(rng, n_tokens + 8), add_special_tokens=False)["input_ids"]
    return tok.decode(ids[:n_tokens]).strip()


def make_rows(n: int, seed: int, tok: Any, prompt_len: tuple[int, int], resp_len: tuple[int, int]
              ) -> tuple[list[dict], list[dict]]:
    """(DPO rows, WRPO rows): the WRPO rows add one more response of the same length distribution."""
    rng = random.Random(seed)
    dpo, wrpo = [], []
    for i in range(n):
        prompt = [{"role": "user", "content": _text(rng, tok, rng.randint(*prompt_len))}]
        chosen, rejected, source = ([{"role": "assistant", "content": _text(rng, tok, rng.randint(*resp_len))}]
                                    for _ in range(3))
        dpo.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        wrpo.append({"prompt": prompt, "chosen_source": source, "chosen_target": chosen, "rejected": rejected})
    return dpo, wrpo


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rss_mb(key: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak so far) of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- #
# children: one trainer per process
# --------------------------------------------------------------------------- #


def child_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(spec["threads"])
    transformers.logging.set_verbosity_error()
    rows = [json.loads(line) for line in Path(spec["rows"]).read_text().splitlines()]
    clock: dict[str, Any] = {"step_end": [], "logs": []}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock["rss_loaded"] = rss_mb()
            clock["train_begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            clock["step_end"].append(time.perf_counter())
            clock["hwm_after_steps"] = rss_mb("VmHWM")

        def on_log(self, args, state, control, logs=None, **kw):
            clock["logs"].append(dict(logs or {}))

    class Timed(DPOTrainer):
        # TRL runs the reference pass inside __init__; time it on its own.
        def _precompute_ref_logps(self, dataset, name, batch_size):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            clock["precompute_s"] = clock.get("precompute_s", 0.0) + time.perf_counter() - t0
            return out

    tok = AutoTokenizer.from_pretrained(spec["model_path"])
    args = DPOConfig(
        output_dir=spec["out"], per_device_train_batch_size=spec["batch_size"], gradient_accumulation_steps=1,
        max_steps=spec["steps"], learning_rate=spec["lr"], beta=spec["beta"], loss_type=["sigmoid"],
        max_length=spec["max_length"], report_to="none", logging_steps=1, save_strategy="no", use_cpu=True,
        # TRL's defaults differ from the workload: bf16 autocast and gradient checkpointing are on.
        bf16=False, gradient_checkpointing=False,
        # The rows arrive in our trainer's step order; keep it.
        train_sampling_strategy="sequential", dataloader_num_workers=0, seed=spec["seed"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        precompute_ref_log_probs=spec["precompute"], disable_tqdm=True,
    )
    t0 = time.perf_counter()
    trainer = Timed(model=spec["model_path"], args=args, train_dataset=Dataset.from_list(rows),
                    processing_class=tok, callbacks=[Clock()])
    init_s = time.perf_counter() - t0
    trainer.train()
    ends = [clock["train_begin"]] + clock["step_end"]
    step_s = [b - a for a, b in zip(ends, ends[1:])]
    tokens_seen = [lg["num_tokens"] for lg in clock["logs"] if "num_tokens" in lg]
    return {"step_seconds": step_s, "precompute_s": clock.get("precompute_s", 0.0), "init_s": init_s,
            "rss_loaded_mb": clock["rss_loaded"], "peak_rss_mb": clock["hwm_after_steps"],
            "peak_rss_end_mb": rss_mb("VmHWM"), "trl_tokens_per_step": [b - a for a, b in
                                                                     zip([0.0] + tokens_seen, tokens_seen)],
            "optimizer": str(args.optim)}


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    import trainer.loop as loop
    import trainer.reference as refcache
    from trainer.config import parse

    probe: dict[str, Any] = {"hwm_steps": []}
    real_load, real_ref, real_write = loop.load_policy, refcache.load_or_compute, loop.MetricsLog.write

    def load_policy(*a, **kw):
        out = real_load(*a, **kw)
        probe["rss_loaded"] = rss_mb()
        return out

    def load_or_compute(*a, **kw):
        t0 = time.perf_counter()
        out = real_ref(*a, **kw)
        probe["precompute_s"] = time.perf_counter() - t0
        return out

    def write(self, row):
        real_write(self, row)
        probe["hwm_steps"].append(rss_mb("VmHWM"))  # after the step's optimizer update, before any save

    # Wrapped (not edited) to read memory after model load, time the reference pass and read the peak per step.
    loop.load_policy, refcache.load_or_compute, loop.MetricsLog.write = load_policy, load_or_compute, write
    cfg = parse({
        "method": spec["method"],
        "model": {"name": MODEL, "precision": "fp32"},
        "data": {"path": spec["rows"], "max_length": spec["max_length"], "max_prompt_length": spec["max_length"] // 2},
        "loss": {"beta": spec["beta"]},
        "train": {"max_steps": spec["steps"], "batch_size": spec["batch_size"], "grad_accum": 1, "lr": spec["lr"],
                  "scheduler": "constant", "warmup_ratio": 0.0, "seed": spec["seed"], "packing": spec["packing"]},
        # No reporting on either side (TRL: report_to="none").
        "output": {"dir": spec["out"], "tensorboard": False},
    })
    summary = loop.train(cfg, console=Console(file=open(os.devnull, "w")))
    rows = [json.loads(line) for line in (Path(spec["out"]) / "metrics.jsonl").read_text().splitlines()]
    return {"step_seconds": [r["tokens"] / r["tokens_per_s"] for r in rows],
            "tokens_per_step": [r["tokens"] for r in rows],
            "precompute_s": probe.get("precompute_s", 0.0), "reference_cached": summary["reference_cached"],
            "rss_loaded_mb": probe["rss_loaded"], "peak_rss_mb": probe["hwm_steps"][-1],
            "peak_rss_end_mb": rss_mb("VmHWM"), "wall_s": summary["wall_seconds"]}


def _cpu_busy_s() -> float:
    """CPU-seconds all processes on this machine have used since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_idle(max_wait_s: float, console: Console, threshold: float = 0.15) -> float:
    """Wait until other processes use under ``threshold`` of the CPUs (this machine is shared); seconds waited."""
    t0 = time.perf_counter()
    while True:
        b0 = _cpu_busy_s()
        time.sleep(2.0)
        share = (_cpu_busy_s() - b0) / (2.0 * (os.cpu_count() or 1))
        waited = time.perf_counter() - t0
        if share < threshold or waited >= max_wait_s:
            if share >= threshold:
                console.print(f"[yellow]machine still {share:.0%} busy after {waited:.0f} s; measuring anyway[/]")
            return waited
        console.print(f"[dim]other processes use {share:.0%} of the CPUs; waiting …[/]")
        time.sleep(8.0)


def run_child(kind: str, spec: dict[str, Any], env: dict[str, str], log: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        spec = {**spec, "out": str(Path(d) / "run"), "result": str(Path(d) / "result.json")}
        spec_path = Path(d) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        with log.open("a") as fh:
            fh.write(f"\n===== {kind} {json.dumps(spec)}\n")
            fh.flush()
            t0, busy0, mine0 = time.perf_counter(), _cpu_busy_s(), _children_cpu_s()
            proc = subprocess.run([sys.executable, __file__, "--child", kind, str(spec_path)], cwd=ROOT, env=env,
                                  stdout=fh, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - t0
            other = (_cpu_busy_s() - busy0) - (_children_cpu_s() - mine0)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} child failed (exit {proc.returncode}); see {log}")
        result = json.loads(Path(spec["result"]).read_text())
        result["process_s"] = wall
        # CPU time other processes took while this child ran, as a share of all CPUs: contention skews ratios.
        result["other_cpu_share"] = max(0.0, other) / (wall * (os.cpu_count() or 1))
        return result


# --------------------------------------------------------------------------- #
# parent
# --------------------------------------------------------------------------- #


def measured(result: dict[str, Any], tokens: list[int], warmup: int, rows_per_step: int, n_rows: int
             ) -> dict[str, Any]:
    secs = sum(result["step_seconds"][warmup:])
    toks = sum(tokens[warmup:])
    share = rows_per_step * (len(tokens) - warmup) / n_rows  # the part of the reference pass these steps use
    pre = result.get("precompute_s", 0.0) * share
    return {**result, "measured_tokens": toks, "measured_seconds": round(secs, 3), "tokens_per_s": toks / secs,
            "tokens_per_s_with_precompute": toks / (secs + pre), "precompute_share_s": round(pre, 3),
            "step_s_mean": secs / (len(tokens) - warmup),
            "transient_mb": result["peak_rss_mb"] - result["rss_loaded_mb"]}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4, help="measured optimizer steps")
    ap.add_argument("--warmup", type=int, default=1, help="steps run first and not measured")
    ap.add_argument("--batch-size", type=int, default=2, help="preference pairs per step (grad accumulation 1)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--rows", type=int, default=None, help="default: exactly (warmup + steps) × batch size")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in every child")
    ap.add_argument("--lr", type=float, default=5e-7)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-wait", type=float, default=120,
                    help="seconds to wait, before each run, for other processes to leave the CPUs")
    ap.add_argument("--skip", default="", help="comma list of runs to skip: trl_precompute,wrpo,packing")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    return ap.parse_args()


@dataclass
class Workload:
    """The rows both trainers see, and the tokens each step covers in our trainer's order."""

    n_rows: int
    model_path: str
    dpo_rows: list[dict]
    wrpo_rows: list[dict]
    order: list[list[int]]  # example indices of each step
    dpo_tokens: list[int]
    wrpo_tokens: list[int]
    prompt_lengths: list[int]
    response_lengths: list[int]


def build_workload(args: argparse.Namespace) -> Workload:
    from fusedata import models
    from trainer.data import to_groups, tokenize
    from trainer.loop import step_indices

    total = args.warmup + args.steps
    n_rows = args.rows or total * args.batch_size
    ref = models.resolve(MODEL)
    tok = models.load_tokenizer(ref)
    dpo_rows, wrpo_rows = make_rows(n_rows, args.seed, tok, (40, 100), (100, 250))
    # Token counts from our tokenization, per step in our trainer's order (TRL gets the same order).
    examples, _ = tokenize(to_groups(dpo_rows, "dpo"), tok, args.max_length, args.max_length // 2)
    w_examples, _ = tokenize(to_groups(wrpo_rows, "wrpo"), tok, args.max_length, args.max_length // 2)
    order = [step_indices(s, n_rows, args.batch_size, args.seed) for s in range(total)]
    longest = max(len(ex.prompt_ids) + max(map(len, ex.responses)) for ex in w_examples)
    if longest > args.max_length or any(ex.truncated for ex in examples + w_examples):
        raise SystemExit(f"a sequence of {longest} tokens exceeds --max-length {args.max_length}; the trainers "
                         "truncate differently, so raise it")
    return Workload(n_rows, ref.path, dpo_rows, wrpo_rows, order,
                    [sum(examples[i].n_tokens for i in idx) for idx in order],
                    [sum(w_examples[i].n_tokens for i in idx) for idx in order],
                    [len(ex.prompt_ids) for ex in examples], [len(r) for ex in examples for r in ex.responses])


def run_all(args: argparse.Namespace, w: Workload, log: Path, console: Console) -> dict[str, dict[str, Any]]:
    """Every run of the plan not in ``--skip``, one subprocess each, measured over the same steps."""
    skip = set(filter(None, args.skip.split(",")))
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        dpo_path = write_jsonl(w.dpo_rows, tmp / "dpo.jsonl")
        wrpo_path = write_jsonl(w.wrpo_rows, tmp / "wrpo.jsonl")
        trl_path = write_jsonl([w.dpo_rows[i] for idx in w.order for i in idx], tmp / "dpo_trl_order.jsonl")
        # A fresh cache whose models/ is the real one: the reference pass runs cold, the converted model is reused.
        cache = tmp / "cache"
        cache.mkdir()
        (cache / "models").symlink_to(Path(w.model_path).parent, target_is_directory=True)
        env = {**os.environ, "FUSEKIT_CACHE": str(cache), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
        common = {"batch_size": args.batch_size, "steps": args.warmup + args.steps, "lr": args.lr, "beta": args.beta,
                  "seed": args.seed, "max_length": args.max_length, "threads": args.threads,
                  "model_path": w.model_path}

        def ours(method: str, rows: Path, packing: bool = False) -> dict[str, Any]:
            for f in (cache / "reference_logps").glob("*"):  # each run pays its own reference pass
                f.unlink()
            return run_child(f"ours_{method}", {**common, "method": method, "rows": str(rows), "packing": packing},
                             env, log)

        def trl(kind: str, precompute: bool) -> dict[str, Any]:
            return run_child(kind, {**common, "rows": str(trl_path), "precompute": precompute}, env, log)

        plan = [("trl", lambda: trl("trl", False), w.dpo_tokens),
                ("ours_dpo", lambda: ours("dpo", dpo_path), w.dpo_tokens),
                ("trl_precompute", lambda: trl("trl_precompute", True), w.dpo_tokens),
                ("wrpo", lambda: ours("wrpo", wrpo_path), w.wrpo_tokens),
                ("packing", lambda: ours("dpo", dpo_path, packing=True), w.dpo_tokens)]
        for name, fn, tokens in plan:
            if name in skip:
                continue
            wait_idle(args.max_wait, console)
            console.print(f"[dim]running {name} …[/]")
            r = runs[name] = measured(fn(), tokens, args.warmup, args.batch_size, w.n_rows)
            console.print(f"[dim]  {name}: {r['tokens_per_s']:.0f} tok/s, peak {r['peak_rss_mb']:.0f} MB, "
                          f"process {r['process_s']:.0f} s, other processes {r['other_cpu_share']:.0%} of the CPUs[/]")
            if r["other_cpu_share"] > 0.05:
                console.print(f"[yellow]  {name} shared the machine with other work; its timings are inflated[/]")
    return runs


def ratios_of(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Ours against each peer measured in the same run."""
    ours, trl = runs["ours_dpo"], runs["trl"]
    ratios = {
        "tokens_per_s_ours_over_trl": ours["tokens_per_s"] / trl["tokens_per_s"],
        "tokens_per_s_ours_with_precompute_over_trl": ours["tokens_per_s_with_precompute"] / trl["tokens_per_s"],
        "peak_rss_ours_over_trl": ours["peak_rss_mb"] / trl["peak_rss_mb"],
    }
    if "trl_precompute" in runs:
        ratios["tokens_per_s_ours_over_trl_precompute"] = ours["tokens_per_s"] / runs["trl_precompute"]["tokens_per_s"]
        ratios["peak_rss_ours_over_trl_precompute"] = ours["peak_rss_mb"] / runs["trl_precompute"]["peak_rss_mb"]
    if "wrpo" in runs:
        ratios["wrpo_over_dpo_step_time"] = runs["wrpo"]["step_s_mean"] / ours["step_s_mean"]
    if "packing" in runs:
        ratios["packed_over_padded_tokens_per_s"] = runs["packing"]["tokens_per_s"] / ours["tokens_per_s"]
    return ratios


def print_tables(args: argparse.Namespace, w: Workload, runs: dict[str, dict[str, Any]], ratios: dict[str, float],
                 console: Console) -> None:
    t = Table(title="DPO training throughput, SmolLM2-135M fp32 CPU")
    t.caption = (f"{args.threads} torch threads · batch {args.batch_size} pairs · {args.steps} measured steps after "
                 f"{args.warmup} warm-up · max_length {args.max_length} · prompts {min(w.prompt_lengths)}–"
                 f"{max(w.prompt_lengths)} tokens, responses {min(w.response_lengths)}–{max(w.response_lengths)} · "
                 "'ref' adds the reference pass pro rata")
    for c in ("run", "tok/s", "tok/s +ref", "s/step", "peak MB", "loaded MB", "busy"):
        t.add_column(c, justify="left" if c == "run" else "right")
    names = {"ours_dpo": "fusekit dpo", "trl": "TRL live ref", "trl_precompute": "TRL precompute",
             "wrpo": "fusekit wrpo", "packing": "fusekit packed"}
    for key, label in names.items():
        if key in runs:
            r = runs[key]
            t.add_row(label, f"{r['tokens_per_s']:.0f}", f"{r['tokens_per_s_with_precompute']:.0f}",
                      f"{r['step_s_mean']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['rss_loaded_mb']:.0f}",
                      f"{r['other_cpu_share']:.0%}")
    console.print(t)
    g = Table(title="ratios (same run)")
    for c in ("ratio", "value", "goal"):
        g.add_column(c, justify="left" if c == "ratio" else "right")
    goals = {"tokens_per_s_ours_over_trl": ("≥ 1.5", lambda v: v >= 1.5),
             "peak_rss_ours_over_trl": ("≤ 0.8", lambda v: v <= 0.8),
             "wrpo_over_dpo_step_time": ("≤ 1.6", lambda v: v <= 1.6)}
    for k, v in ratios.items():
        goal, ok = goals.get(k, ("", None))
        style = "" if ok is None else ("green" if ok(v) else "red")
        g.add_row(k, f"[{style}]{v:.3f}[/]" if style else f"{v:.3f}", goal)
    console.print(g)


def main() -> None:
    args = parse_args()
    if args.child:
        kind, spec_path = args.child
        spec = json.loads(Path(spec_path).read_text())
        result = child_trl(spec) if kind.startswith("trl") else child_ours(spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return

    import torch

    w = build_workload(args)
    out_dir = Path(__file__).parent / "out"
    out_dir.mkdir(exist_ok=True)
    log = out_dir / "train_throughput.log"
    log.write_text("")
    console = Console()
    runs = run_all(args, w, log, console)
    if runs["ours_dpo"]["tokens_per_step"] != w.dpo_tokens:
        console.print(f"[yellow]our trainer counted {runs['ours_dpo']['tokens_per_step']} tokens per step, this "
                      f"script {w.dpo_tokens}[/]")
    ratios = ratios_of(runs)
    print_tables(args, w, runs, ratios, console)
    result = {
        "config": {**vars(args), "rows": w.n_rows, "torch": torch.__version__, "cpu_count": os.cpu_count(),
                   "tokens_per_step_dpo": w.dpo_tokens, "tokens_per_step_wrpo": w.wrpo_tokens,
                   "prompt_tokens": [min(w.prompt_lengths), max(w.prompt_lengths)],
                   "response_tokens": [min(w.response_lengths), max(w.response_lengths)]},
        "runs": runs, "ratios": {k: round(v, 4) for k, v in ratios.items()},
    }
    (out_dir / "train_throughput.json").write_text(json.dumps(result, indent=2, default=str))
    console.print(f"wrote {out_dir / 'train_throughput.json'} (child logs: {log})")


if __name__ == "__main__":
    main()
