"""Code extraction and verification through the sandbox."""

from __future__ import annotations

import pytest

from fusedata.verifiers.code import CodeResult, extract_code, verify_code_batch

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Here:\n```python\nx = 1\n```\nand better:\n```python\nx = 2\n```\nDone.", "x = 2"),
        ("```py\nprint(1)\n```", "print(1)"),
        ("```\ny = 3\n```", "y = 3"),
        ("```python\nx = 1\n```\n```text\noutput\n```", "x = 1"),
        ("```bash\nls\n```\n```\nz = 1\n```", "z = 1"),
        ("~~~python\nw = 1\n~~~", "w = 1"),
        ("Truncated:\n```python\ndef f():\n    return 1", "def f():\n    return 1"),
        ("def f(x):\n    return x * 2\n", "def f(x):\n    return x * 2"),
        ("The answer is to loop over the list.", None),
        ("```bash\nls -la\n```", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_verify_code_batch_labels():
    fence = "```python\n{}\n```"
    items = [
        (fence.format(SOLUTION), TESTS),  # 3/3
        (fence.format("def add(a, b):\n    return a + b if a != 2 else 0\n"), TESTS),  # 2/3
        (fence.format("def add(a, b)\n    return a + b\n"), TESTS),  # syntax error
        ("I would use a loop.", TESTS),  # no code
        (fence.format(SOLUTION), None),  # no tests
        (fence.format("import time\ntime.sleep(30)\n"), TESTS),  # timeout
        (fence.format("raise RuntimeError('nope')\n"), TESTS),  # exception
    ]
    rs = verify_code_batch(items, timeout=1.5, workers=2)
    assert all(isinstance(r, CodeResult) for r in rs)
    got = [(r.label, r.tests_passed, r.tests_total, r.passed) for r in rs]
    assert got == [
        ("passed", 3, 3, True),
        ("failed", 2, 3, False),
        ("syntax_error", 0, 0, False),
        ("no_code", 0, 0, False),
        ("error", 0, 0, False),
        ("timeout", 0, 3, False),
        ("error", 0, 3, False),
    ]
    assert rs[4].reason == "no tests"
    assert "SyntaxError" in rs[2].stderr_tail
    assert "RuntimeError: nope" in rs[6].stderr_tail
    assert "assert add(2, 2) == 4" in rs[1].stderr_tail
    assert rs[0].isolation and rs[0].duration_s > 0


def test_whole_response_as_code():
    rs = verify_code_batch([("def add(a, b):\n    return a + b\n", TESTS)])
    assert rs[0].label == "passed" and rs[0].passed


def test_empty_batch():
    assert verify_code_batch([]) == []
