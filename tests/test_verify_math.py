"""Maths answer extraction and verification (fast path + math-verify worker pool)."""

from __future__ import annotations

import threading
import time

import pytest

from fusedata.verifiers import math as vm
from fusedata.verifiers.math import MathResult, extract_answer, fast_compare, verify_math_batch


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{3}, finally \\boxed{4}", "4"),
        ("\\fbox{7}", "7"),
        ("$\\boxed {\\{1, 2\\}}$", "\\{1, 2\\}"),
        ("hence \\boxed 5 is it", "5"),
        ("\\boxed{\\text{(B)}}", "\\text{(B)}"),
        ("Thus, the answer is 42.", "42"),
        ("Therefore the final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("Final Answer: **x = 2**", "x = 2"),
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("We get 12 apples and then 1,250 pears", "1,250"),
        ("It costs -3.5 dollars", "-3.5"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac12", "1/2", True),
        ("\\dfrac{1}{2}", "0.5", True),
        ("50\\%", "0.5", True),
        ("0.5", "50%", True),
        ("0.5", "50", False),
        ("1,000", "1000", True),
        ("3", "4", False),
        ("0.333333", "\\frac{1}{3}", True),
        ("12345678901234567891", "12345678901234567890", False),  # exact, not float, comparison
        ("\\text{(B)}", "B", True),
        ("(1, 2]", "(1,2]", True),
        ("2\\sqrt{2}", "\\sqrt{8}", None),  # needs sympy
    ],
)
def test_fast_compare(pred, gold, expected):
    assert fast_compare(pred, gold) is expected


def _labels(items, **kw):
    return [(r.label, r.correct) for r in verify_math_batch(items, **kw)]


def test_equivalences_required_by_the_pipeline():
    items = [
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("The answer is 1/2", "0.5"),
        ("\\boxed{50\\%}", "0.5"),
        ("\\boxed{0.5}", "50\\%"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{[2, \\infty)}", "[2,\\infty)"),
        ("\\boxed{(-1, 3]}", "(-1,3]"),
        ("\\boxed{\\text{(B)}}", "B"),
        ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
        ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
        ("\\boxed{\\sqrt3/2}", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{\\pi}", "\\pi"),
        ("\\boxed{\\{1,2\\}}", "\\{2, 1\\}"),
    ]
    assert _labels(items) == [("correct", True)] * len(items)


def test_wrong_and_odd_answers():
    items = [
        ("\\boxed{3}", "4"),
        ("\\boxed{\\frac{1}{3}}", "0.33"),
        ("\\boxed{2\\sqrt{3}}", "\\sqrt{8}"),
        ("\\boxed{(1, 2)}", "[1,2]"),
        ("\\boxed{4} or maybe \\boxed{5}", "4"),
        ("I could not solve it.", "4"),
        ("\\boxed{4}", None),
        ("\\boxed{4}", "   "),
    ]
    rs = verify_math_batch(items)
    expected = [("wrong", False)] * 5 + [("no_answer", False)] + [("error", False)] * 2
    assert [(r.label, r.correct) for r in rs] == expected
    assert rs[4].reason == "multiple_boxed" and rs[4].extracted == "5"
    assert rs[6].reason == "no gold answer" and rs[6].extracted == "4"
    assert all(isinstance(r, MathResult) for r in rs)


def test_repeated_identical_boxed_answer_is_fine():
    items = [("\\boxed{7}. Again: \\boxed{7}", "7"), ("\\boxed{\\frac12} i.e. \\boxed{0.5}", "1/2")]
    assert _labels(items) == [("correct", True)] * 2


def test_fast_path_batch_starts_no_worker():
    vm.close_math_pool()
    rs = verify_math_batch([("\\boxed{%d}" % i, str(i if i % 3 else i + 1)) for i in range(300)])
    assert vm._pool is None
    assert sum(r.correct for r in rs) == 200


def test_hung_item_times_out_and_pool_recovers():
    items = [
        ("\\boxed{9^{9^{9^{9}}}}", "5"),  # sympy evaluates this tower forever
        ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
        ("\\boxed{x^2+2x+1}", "(x+1)^2"),
        ("\\boxed{3}", "3"),
    ]
    verify_math_batch(items[1:2], workers=2)  # warm the pool so start-up is not timed
    t = time.monotonic()
    rs = verify_math_batch(items, timeout=1.5, workers=2)
    assert time.monotonic() - t < 8
    assert [r.label for r in rs] == ["timeout", "correct", "correct", "correct"]
    assert rs[0].correct is False and rs[0].extracted == "9^{9^{9^{9}}}"
    assert _labels([("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")], workers=2) == [("correct", True)]  # the pool still works


def test_works_off_the_main_thread():
    """math-verify's signal timeouts break off the main thread; the worker pool sidesteps that."""
    out: list = []
    th = threading.Thread(target=lambda: out.extend(verify_math_batch([("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")])))
    th.start()
    th.join(60)
    assert [(r.label, r.correct) for r in out] == [("correct", True)]


def test_unparseable_gold_is_an_error_not_a_crash():
    rs = verify_math_batch([("\\boxed{x}", "\\frac{")])
    assert rs[0].label in ("error", "wrong") and rs[0].correct is False
