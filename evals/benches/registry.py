"""The four benches as :class:`~evals.benches.Bench` objects: the one place that maps a bench name
to its data, decoding settings, judge protocol and scoring (``evals.benches.get_bench`` reads it)."""

from __future__ import annotations

from evals import score
from evals.benches import Bench, alpaca_eval, arena_hard, mt_bench
from evals.judges import alpaca_eval as alpaca_judge
from evals.judges import arena_hard as arena_judge
from evals.judges import mt_bench as mt_judge

REGISTRY: dict[str, Bench] = {b.name: b for b in (
    Bench(mt_bench.BENCH, mt_bench.CATEGORIES, mt_bench.ORIGIN, mt_bench.load, mt_bench.generation,
          mt_judge.plan, score.score_mt_bench, references=mt_bench.REFERENCES, balanced_limit=True,
          pairwise_mode=True, pins=frozenset(mt_bench.PINS.values()), prompt_roles=mt_judge.PROMPT_NAMES),
    Bench(arena_hard.BENCH_V01, arena_hard.CATEGORIES_V01, arena_hard.ORIGIN_V01,
          lambda files, select, _reference: arena_hard.load_v01(files, select),
          lambda _question: arena_hard.GENERATION, arena_judge.plan, score.score_arena_hard_v01,
          pins=frozenset(arena_hard.PINS_V01.values()),
          prompt_roles=tuple(arena_judge.JUDGE_PROMPTS[arena_hard.BENCH_V01].values())),
    Bench(arena_hard.BENCH_V2, arena_hard.CATEGORIES_V2, arena_hard.ORIGIN_V2,
          lambda files, select, _reference: arena_hard.load_v2(files, select),
          lambda _question: arena_hard.GENERATION, arena_judge.plan, score.score_arena_hard_v2,
          pins=frozenset(arena_hard.PINS_V2.values()),
          prompt_roles=tuple(arena_judge.JUDGE_PROMPTS[arena_hard.BENCH_V2].values())),
    Bench(alpaca_eval.BENCH, alpaca_eval.CATEGORIES, alpaca_eval.ORIGIN,
          lambda files, select, _reference: alpaca_eval.load(files, select),
          lambda _question: alpaca_eval.GENERATION, alpaca_judge.plan, score.score_alpaca_eval,
          logprob_judge=True, pins=frozenset({alpaca_eval.PIN}), prompt_roles=(alpaca_judge.ROLE,)),
)}
