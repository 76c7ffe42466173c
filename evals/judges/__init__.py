"""Judging for ``evals``: the judge prompts and each benchmark's judge protocol.

* :mod:`evals.judges.prompts` — the YAML judge prompts shipped in ``prompts/`` and their rendering.
* :mod:`evals.judges.alpaca_eval` — AlpacaEval 2's weighted (log-prob) judge.
* :mod:`evals.judges.arena_hard` — Arena-Hard-Auto's two-game pairwise judge.
* :mod:`evals.judges.mt_bench` — MT-Bench single-answer grading and pairwise comparison.

The protocol modules are pure: they build ``JudgeRequest``s and parse ``JudgeReply``s; the calls
go through the one judge client, ``fusedata.judge``.
"""

from evals.judges.alpaca_eval import NoLogprobsError
from evals.judges.prompts import JudgePrompt, load_prompt, prompt_names, render

__all__ = ["JudgePrompt", "NoLogprobsError", "load_prompt", "prompt_names", "render"]
