"""evals: AlpacaEval 2, Arena-Hard (v0.1, v2.0) and MT-Bench with any OpenAI-compatible or in-process judge.

questions (``benches``) → answers (``answers``, through fusedata's engines) → judge calls
(``judging`` with ``judges``: prompts as data files, request builders and verdict parsers, the
OpenAI-compatible and in-process backends) → scores (``score`` over the pure ``scoring``
functions) → reports (``report``). ``store`` keeps every stage in one SQLite file per run.
"""
