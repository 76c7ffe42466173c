"""Code answer verification: extract the program from a response, run it with its tests.

The last fenced ```python block (else the last bare ``` block, else the whole response
when it is valid Python) is the program. It must compile (checked in-process with
``compile``, nothing runs) before it is executed, with the prompt's test code, in
:mod:`fusedata.verifiers.sandbox`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fusedata.verifiers import sandbox

LABELS: tuple[str, ...] = ("passed", "failed", "error", "timeout", "syntax_error", "no_code")

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.#-]*)[^\n]*\n", re.MULTILINE)
_PY_TAGS = {"python", "py", "python3", "py3", "ipython", "python2"}


@dataclasses.dataclass
class CodeResult:
    label: str
    tests_passed: int = 0
    tests_total: int = 0
    stderr_tail: str = ""
    passed: bool = False
    reason: str = ""
    duration_s: float = 0.0
    isolation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of each fenced block; an unclosed last fence runs to the end."""
    blocks: list[tuple[str, str]] = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            break
        fence, tag = m.group(1), m.group(2).lower()
        close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.MULTILINE)
        end = close.search(text, m.end())
        if end is None:
            blocks.append((tag, text[m.end() :]))
            break
        blocks.append((tag, text[m.end() : end.start()]))
        pos = end.end()
    return blocks


def _parses(code: str) -> bool:
    try:
        compile(code, "solution.py", "exec")
    except sandbox.COMPILE_ERRORS:
        return False
    return True


def extract_code(response_text: str | None) -> str | None:
    """The program in a model response, or None when there is none."""
    if not response_text or not response_text.strip():
        return None
    blocks = _fenced_blocks(response_text)
    py = [body for tag, body in blocks if tag in _PY_TAGS]
    if py:
        return py[-1].strip("\n") or None
    bare = [body for tag, body in blocks if tag == ""]
    if bare:
        return bare[-1].strip("\n") or None
    if not blocks and _parses(response_text):
        return response_text.strip("\n")
    return None


def _from_sandbox(r: sandbox.SandboxResult) -> CodeResult:
    return CodeResult(
        label=r.status,
        tests_passed=r.tests_passed,
        tests_total=r.tests_total,
        stderr_tail=r.stderr_tail,
        passed=r.status == "passed" and r.tests_total > 0 and r.tests_passed == r.tests_total,
        reason=r.reason,
        duration_s=r.duration_s,
        isolation=r.isolation,
    )


def verify_code_batch(
    items: list[tuple[str, str | None]],
    *,
    timeout: float = 10.0,
    workers: int | None = None,
    memory_mb: int = 1024,
    isolation: str | None = None,
) -> list[CodeResult]:
    """Verify ``(response_text, tests)`` pairs; results in input order, never raises per item."""
    results: list[CodeResult | None] = [None] * len(items)
    jobs: list[dict[str, Any]] = []
    where: list[int] = []
    for idx, (text, tests) in enumerate(items):
        code = extract_code(text)
        if code is None:
            results[idx] = CodeResult("no_code", reason="no code block found")
        elif tests is None or not str(tests).strip():
            results[idx] = CodeResult("error", reason="no tests")
        elif not _parses(code):
            try:
                compile(code, "solution.py", "exec")
                msg = ""
            except Exception as e:  # noqa: BLE001 - only the message is wanted
                msg = f"{type(e).__name__}: {e}"
            results[idx] = CodeResult("syntax_error", stderr_tail=msg, reason="code does not compile")
        else:
            jobs.append({"code": code, "tests": str(tests)})
            where.append(idx)
    if jobs:
        done = sandbox.run_many(jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, isolation=isolation)
        for idx, r in zip(where, done):
            results[idx] = _from_sandbox(r)
    return [r for r in results if r is not None]
