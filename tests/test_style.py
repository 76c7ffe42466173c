"""The project's style bar, checked mechanically so it holds as the code changes."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fusedata", "trainer", "evals", "cards", "bench", "recipes")
MAX_FUNCTION_LINES = 80
# bench/out holds generated benchmark output (git-ignored), not project source.
GENERATED = (ROOT / "bench" / "out",)
# A bare document name (the evals one, say) points at a file outside this repository; the project's
# own copies live under docs/, so only the "docs/<name>.md" spelling is allowed.
FOREIGN_DOC = re.compile(r"(?<!docs/)\b(?:data|evals|trainer|algorithms)\.md")


def _files(dirs: tuple[str, ...], suffix: str = "") -> list[Path]:
    found = []
    for name in dirs:
        for path in sorted((ROOT / name).rglob(f"*{suffix}")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if any(path.is_relative_to(g) for g in GENERATED):
                continue
            found.append(path)
    return found


def test_no_function_over_80_lines():
    offenders = []
    for path in _files(PACKAGES, ".py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not offenders, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_no_citation_of_documents_outside_the_repository():
    offenders = []
    for path in _files(PACKAGES + ("tests",)):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary fixtures cannot hold a citation
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in FOREIGN_DOC.finditer(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {match.group(0)!r} in {line.strip()!r}")
    assert not offenders, "cite the project's own docs/ copy instead:\n" + "\n".join(offenders)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed in this interpreter")
def test_ruff_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
