"""Verifiers: decide whether a maths answer is right and whether code passes its tests.

``math`` compares final answers with math-verify (process pool, outer timeouts);
``code`` extracts a program from a response and runs it with its tests in ``sandbox``.
"""

from fusedata.verifiers.code import CodeResult, extract_code, verify_code_batch
from fusedata.verifiers.math import MathResult, extract_answer, verify_math_batch
from fusedata.verifiers.sandbox import SandboxResult, run_many, run_python, sandbox_isolation

__all__ = [
    "CodeResult",
    "MathResult",
    "SandboxResult",
    "extract_answer",
    "extract_code",
    "run_many",
    "run_python",
    "sandbox_isolation",
    "verify_code_batch",
    "verify_math_batch",
]
