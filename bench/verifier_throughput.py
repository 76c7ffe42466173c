"""Throughput of the verifiers: maths verifications/s and sandboxed code runs/s.

    .venv/bin/python bench/verifier_throughput.py [--math N] [--code N] [--workers W]

Goals on a 2-core machine: >= 200 maths verifications/s on a realistic mix, >= 20
sandboxed small programs/s. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from fusedata.verifiers import math as vm
from fusedata.verifiers import sandbox
from fusedata.verifiers.code import verify_code_batch


def math_items(n: int, seed: int = 0) -> list[tuple[str, str | None]]:
    """A mix that looks like sampled MATH/GSM8K responses: mostly plain numbers, some LaTeX."""
    rng = random.Random(seed)
    def latex() -> tuple[str, str]:
        """A (response answer, gold) pair that needs sympy, with fresh numbers each time."""
        a, b, c = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7]), rng.randint(1, 9)
        right = rng.random() < 0.7
        k = 0 if right else 1
        return rng.choice([
            (f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b + k}}}"),
            (f"x^2+{2 * c}x+{c * c + k}", f"(x+{c})^2"),
            (f"(x+{a})(x-{c})", f"x^2+{a - c + k}x-{a * c}"),
            (f"[{a}, \\infty)", f"[{a + k},\\infty)"),
            (f"(-\\infty, {a}) \\cup ({a + c}, \\infty)", f"(-\\infty,{a})\\cup({a + c + k},\\infty)"),
            (f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a + k}}}{{{b}}}\\pi"),
            (f"\\frac{{{a}}}{{\\sqrt{{{b}}}}}", f"\\frac{{{a + k}\\sqrt{{{b}}}}}{{{b}}}"),
            (f"{a * b + k}\\text{{ cm}}^2", f"{a * b}"),
            (f"\\begin{{pmatrix}} {a} \\\\ {c + k} \\end{{pmatrix}}", f"\\begin{{pmatrix}}{a}\\\\{c}\\end{{pmatrix}}"),
        ])  # fmt: skip

    items: list[tuple[str, str | None]] = []
    for i in range(n):
        kind = rng.random()
        gold_int = rng.randint(1, 5000)
        if kind < 0.35:  # GSM8K style, mostly right
            ans = gold_int if rng.random() < 0.7 else gold_int + rng.randint(1, 9)
            text = f"She has {rng.randint(2, 9)} boxes of {rng.randint(2, 30)} pens ... so {ans} in total.\n#### {ans}"
            items.append((text, str(gold_int)))
        elif kind < 0.6:  # MATH style boxed integer / fraction / decimal
            p, q = rng.randint(1, 9), rng.randint(2, 12)
            choice = rng.choice([(f"\\frac{{{p}}}{{{q}}}", f"{p}/{q}"), (f"{p / q:.6f}", f"\\frac{{{p}}}{{{q}}}"),
                                 (f"{gold_int:,}", str(gold_int)), (str(gold_int), str(gold_int + 1)),
                                 (f"{p * 10}\\%", f"{p / 10}")])  # fmt: skip
            text = f"Let us compute step by step.\n... Therefore the answer is $\\boxed{{{choice[0]}}}$."
            items.append((text, choice[1]))
        elif kind < 0.85:  # needs sympy
            a, g = latex()
            items.append((f"Simplifying, we find the result \\boxed{{{a}}}.", g))
        elif kind < 0.92:
            items.append(("The final answer is: \\text{(C)}", "C"))
        elif kind < 0.96:
            items.append(("I think it is \\boxed{4}, or possibly \\boxed{5}.", "4"))
        else:
            items.append(("I am not sure how to solve this.", str(gold_int)))
    return items


def code_items(n: int) -> list[tuple[str, str]]:
    items = []
    for i in range(n):
        body = f"def solve(xs):\n    return sorted(xs)[:{i % 5 + 1}]\n"
        want = [list(range(1, min(i % 5 + 1, k + 8) + 1)) for k in range(3)]
        tests = "\n".join(f"assert solve({list(range(k + 8, 0, -1))}) == {want[k]}" for k in range(3))
        if i % 7 == 0:
            body = body.replace("sorted(xs)", "xs")  # some fail
        items.append((f"Here is my solution:\n```python\n{body}```\n", tests))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--math", type=int, default=400, help="maths items")
    ap.add_argument("--code", type=int, default=100, help="code programs per layer")
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    args = ap.parse_args()
    workers = args.workers or len(os.sched_getaffinity(0))
    rows: list[tuple[str, str, str]] = []

    items = math_items(args.math)
    fast = sum(vm._precheck(t, g)[0] is not None for t, g in items)
    vm.close_math_pool()
    t = time.perf_counter()
    rs = vm.verify_math_batch(items, workers=workers)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    vm.verify_math_batch(items, workers=workers)
    warm = time.perf_counter() - t
    labels: dict[str, int] = {}
    for r in rs:
        labels[r.label] = labels.get(r.label, 0) + 1
    n = len(items)
    rows.append(("math verifications/s, cold pool", f"{n / cold:,.0f}",
                 f"{n} items in {cold:.2f}s (incl. worker start)"))
    rows.append(("math verifications/s, warm pool", f"{n / warm:,.0f}", f"{n} items in {warm:.2f}s; goal >= 200"))
    rows.append(("math: decided by fast path", f"{fast}/{n}", " ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    slow = [(t_, g) for t_, g in math_items(args.math, seed=1) if vm._precheck(t_, g)[0] is None]
    t = time.perf_counter()
    vm.verify_math_batch(slow, workers=workers)
    dt = time.perf_counter() - t
    rows.append(("math verifications/s, sympy path only", f"{len(slow) / dt:,.0f}",
                 f"{len(slow)} fresh items needing math-verify, warm pool"))
    vm.close_math_pool()

    auto = sandbox.sandbox_isolation()
    programs = code_items(args.code)
    for layer in [auto] + [x for x in sandbox.available_layers() if x != auto]:
        verify_code_batch(programs[:4], workers=workers, isolation=layer)  # warm-up
        t = time.perf_counter()
        crs = verify_code_batch(programs, workers=workers, isolation=layer)
        dt = time.perf_counter() - t
        ok = sum(r.passed for r in crs)
        tag = " (default)" if layer == auto else ""
        rows.append((f"code runs/s, {layer}{tag}", f"{len(programs) / dt:,.1f}",
                     f"{len(programs)} programs in {dt:.2f}s, {ok} passed; goal >= 20"))

    rows.append(("isolation layer used", auto, sandbox.LAYER_DESCRIPTIONS[auto][:70]))
    rows.append(("workers / cpus", f"{workers} / {os.cpu_count()}", ""))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'metric':<{w0}}  {'value':>{w1}}  detail")
    print("-" * (w0 + w1 + 40))
    for name, value, detail in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {detail}")


if __name__ == "__main__":
    main()
