"""Stored judgments → leaderboard numbers, without calling anything (``evals score RUN_DIR``).

Verdicts are parsed here, from the stored reply texts and log-probs, so a fixed parser re-scores
an old run for free. For every model the counts say how many items were judged, how many judge
calls failed (or were never made) and how many replies held no usable verdict.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fusedata.errors import FusekitError

from .benches.arena_hard import style_metadata
from .judges import alpaca_eval, arena_hard, mt_bench
from .pricing import cost_usd
from .records import JudgeReply, Judgment
from .report import BenchReport, ModelResult
from .scoring import alpaca as alpaca_scoring
from .scoring import arena_hard as arena_scoring
from .scoring import mt_bench as mt_scoring
from .store import EvalStore

ALPACA_HUB = ("tatsu-lab/alpaca_eval", "2edc6fad8be6b14ea7230aabfd08188da6b8b814")


@dataclass
class ScoreOptions:
    judge: str | None = None           # score this judge's judgments (default: the latest judge on the bench)
    judge_is_local: bool | None = None
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    lc_inputs: str | None = None       # AlpacaEval LC difficulty inputs: a folder, "hub", or None
    bootstrap_seed: int = 42
    style_control: bool | None = None  # Arena-Hard: also fit with length + markdown features (default: as run)


def is_local_judge(judge_settings: dict[str, Any]) -> bool:
    """In-process, or served on this machine (loopback): no per-token price applies."""
    url = judge_settings.get("base_url")
    return not url or urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def _answer_index(store: EvalStore, bench: str) -> dict[str, dict[tuple[str, int], Any]]:
    return {m: store.answers(bench, m, h) for m, (h, _) in store.models(bench).items()}


def _usage(store: EvalStore, judge: str, judgments: list[Judgment], replies: dict[str, tuple[JudgeReply, int]],
           local: bool, prices: dict[str, tuple[float, float]]) -> dict[str, Any]:
    keys = {j.key for j in judgments if j.key}
    ok = [replies[k][0] for k in keys if k in replies and replies[k][0].ok]
    pt = sum(r.prompt_tokens for r in ok)
    ct = sum(r.completion_tokens for r in ok)
    return {
        "calls": len(keys), "ok": len(ok), "failed": sum(1 for k in keys if k in replies and not replies[k][0].ok),
        "never_sent": sum(1 for k in keys if k not in replies),
        "retried": sum(1 for k in keys if k in replies and replies[k][1] > 1),
        "prompt_tokens": pt, "completion_tokens": ct,
        "cost_usd": cost_usd(judge, pt, ct, local=local, prices=prices),
        "judge_seconds": round(sum(r.seconds for r in ok), 2),
    }


def _reply_state(j: Judgment, replies: dict[str, tuple[JudgeReply, int]]) -> JudgeReply | None:
    got = replies.get(j.key)
    return got[0] if got and got[0].ok else None


def score_bench(store: EvalStore, bench: str, opts: ScoreOptions) -> BenchReport:
    judges = store.judges(bench)
    if not judges:
        raise FusekitError(f"nothing judged for {bench} in {store.folder}")
    judge = opts.judge or store.get_meta(f"{bench}:judge", {}).get("model") or judges[-1]
    if judge not in judges:
        raise FusekitError(f"no judgments by judge {judge!r} for {bench}; judges here: {', '.join(judges)}")
    judgments = store.judgments(bench, judge)
    replies = store.replies({j.key for j in judgments if j.key})
    questions = {q.id: q for q in store.questions(bench)}
    answers = _answer_index(store, bench)
    meta = store.get_meta(f"{bench}:run", {})
    judge_meta = store.get_meta(f"{bench}:judge", {})
    local = opts.judge_is_local if opts.judge_is_local is not None else is_local_judge(judge_meta)
    mode = meta.get("mode", "single")
    if bench == "mt-bench" and mode == "pairwise":
        report = _mt_bench_pairwise(bench, judge, judgments, replies, questions, meta.get("pairwise_baseline"))
    elif bench == "mt-bench":
        report = _mt_bench_single(bench, judge, judgments, replies, questions)
    elif bench.startswith("arena-hard"):
        style = opts.style_control if opts.style_control is not None else bool(meta.get("style_control"))
        report = _arena_hard(bench, judge, judgments, replies, questions, answers, opts.bootstrap_seed, style)
    else:
        report = _alpaca(bench, judge, judgments, replies, questions, answers, opts.lc_inputs)
    report.usage = _usage(store, judge, judgments, replies, local, opts.prices)
    report.settings = {"run": meta, "judge": judge_meta, "models": {m: s for m, (_, s) in store.models(bench).items()},
                       "prompts": store.prompt_versions(j.key for j in judgments if j.key)}
    report.data = store.get_meta(f"{bench}:data", {})
    report.wall_seconds = float(store.get_meta(f"{bench}:wall_seconds", 0.0))
    return report


def _counts(n_questions: int, items: list[Judgment], judged: int, unparsed: int, answer_failed: int) -> dict[str, int]:
    return {"questions": n_questions, "items": len(items), "judged": judged,
            "judge_failed": len(items) - judged - unparsed, "unparsed": unparsed, "answers_failed": answer_failed}


def _answers_failed(answers: dict[tuple[str, int], Any]) -> int:
    return sum(1 for a in answers.values() if not a.ok)


# -- MT-Bench ------------------------------------------------------------------------------------
def _mt_bench_single(bench, judge, judgments, replies, questions) -> BenchReport:
    by_model: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if j.mode == "single":
            by_model[j.model].append(j)
    models = []
    for model, items in by_model.items():
        records, unparsed, judged = [], 0, 0
        for j in items:
            reply = _reply_state(j, replies)
            rating = mt_bench.parse_rating(reply.text) if reply else None
            if reply is not None and rating is None:
                unparsed += 1
            judged += rating is not None
            records.append({"question_id": j.question_id, "turn": j.turn, "score": rating,
                            "category": questions[j.question_id].category if j.question_id in questions else None})
        s = mt_scoring.mt_bench_single(records)
        cols = {"score": s.overall, "turn_1": s.turn_means.get(1, math.nan), "turn_2": s.turn_means.get(2, math.nan),
                **{f"category_{c}": v for c, v in s.category_means.items()}, "n_judged": s.n_valid, "n_failed": s.n_failed}
        models.append(ModelResult(model, s.overall, None, None, cols, dict(s.category_means),
                                  _counts(len({j.question_id for j in items}), items, judged, unparsed, 0)))
    cats = sorted({c for m in models for c in m.categories})
    columns = ["score", "turn_1", "turn_2", *[f"category_{c}" for c in cats], "n_judged", "n_failed"]
    return BenchReport(bench, judge, "MT-Bench score (1–10)", (0.0, 10.0), "model", columns, models,
                       notes=["single-answer grading; score = mean over all valid (question, turn) ratings"])


def _mt_bench_pairwise(bench, judge, judgments, replies, questions, baseline) -> BenchReport:
    pairs: dict[tuple[str, str, int], dict[int, str]] = defaultdict(dict)
    unparsed: dict[str, int] = defaultdict(int)
    judged: dict[str, int] = defaultdict(int)
    items: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if j.mode != "pairwise":
            continue
        items[j.model].append(j)
        reply = _reply_state(j, replies)
        label = mt_bench.parse_pair(reply.text) if reply else None
        if reply is not None and label is None:
            unparsed[j.model] += 1
        judged[j.model] += label is not None
        winner = mt_scoring.pair_game_winner(label, swapped=j.swapped) if label else "error"
        pairs[(j.model, j.question_id, j.turn)][j.game] = winner
    models = []
    for model, its in items.items():
        recs = [{"model_1": model, "model_2": baseline, "g1_winner": g.get(1, "error"), "g2_winner": g.get(2, "error")}
                for (m, _, _), g in pairs.items() if m == model]
        s = mt_scoring.mt_bench_pairwise(recs, model, baseline)
        cols = {"win": s.win, "loss": s.loss, "tie": s.tie, "win_rate": s.win_rate, "loss_rate": s.loss_rate,
                "win_rate_adjusted": s.win_rate_adjusted, "n_inconsistent": s.n_inconsistent, "n_error": s.n_error}
        models.append(ModelResult(model, 100.0 * s.win_rate_adjusted, None, None, cols, {},
                                  _counts(len({j.question_id for j in its}), its, judged[model], unparsed[model], 0)))
    return BenchReport(bench, judge, f"adjusted win rate vs {baseline} (%)", (0.0, 100.0), "model",
                       ["win", "loss", "tie", "win_rate", "loss_rate", "win_rate_adjusted", "n_inconsistent", "n_error"],
                       models, notes=["pairwise mode: two games per (question, turn), positions swapped; "
                                      "disagreeing games count as ties"])


# -- Arena-Hard ----------------------------------------------------------------------------------
def _style_metadata(questions, answers, groups) -> dict[str, dict[str, dict]] | None:
    """Style features per (model, uid), baselines included; None when a baseline lacks them.

    The model's token_len counts its own tokenizer's tokens while the baselines' come from
    upstream's tiktoken counts: the length feature is approximate, and the report says so.
    """
    meta: dict[str, dict[str, dict]] = defaultdict(dict)
    for (_, baseline), recs in groups.items():
        for rec in recs:
            q = questions[rec["uid"]]
            if "baseline_style" not in q.meta:
                return None
            meta[baseline][q.id] = q.meta["baseline_style"]
            a = answers.get(rec["model"], {}).get((q.id, 1))
            if a is None or not a.ok:
                return None
            meta[rec["model"]][q.id] = style_metadata(a.text, a.n_output_tokens)
    return meta


def _arena_hard(bench, judge, judgments, replies, questions, answers, seed, style_control) -> BenchReport:
    v01 = bench == "arena-hard-v0.1"
    games: dict[tuple[str, str], list] = defaultdict(lambda: [None, None])
    unparsed: dict[str, int] = defaultdict(int)
    judged: dict[str, int] = defaultdict(int)
    items: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        items[j.model].append(j)
        reply = _reply_state(j, replies)
        label = arena_hard.parse_verdict(reply.text) if reply else None
        if reply is not None and label is None:
            unparsed[j.model] += 1
        judged[j.model] += label is not None
        games[(j.model, j.question_id)][j.game - 1] = label
    notes: list[str] = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (model, qid), g in games.items():
        q = questions.get(qid)
        if q is None:
            continue
        groups[(q.category if not v01 else "all", q.baseline or "")].append(
            {"uid": qid, "model": model, "games": list(g), "category": q.category})
    per_model: dict[str, dict[str, arena_scoring.ArenaHardScore]] = defaultdict(dict)
    styled: dict[str, dict[str, arena_scoring.ArenaHardScore]] = defaultdict(dict)
    style_meta = _style_metadata(questions, answers, groups) if style_control else None
    if style_control and style_meta is None:
        notes.append("style control not applied: a baseline answer lacks its style metadata")
    for (category, baseline), recs in sorted(groups.items()):
        if style_meta is not None:
            try:
                fit = arena_scoring.arena_hard_v01_style_control if v01 else arena_scoring.arena_hard_v2_style_control
                sc = fit(recs, style_meta, baseline, seed=seed)
                coefs = ", ".join(f"{k} {v:+.3f}" for k, v in (sc.style_coefs or {}).items())
                notes.append(f"{category}: style-controlled (length + markdown), feature coefficients {coefs}")
                for m, s in sc.scores.items():
                    if m != baseline:
                        styled[m][category] = s
            except ValueError as e:
                notes.append(f"{category}: style control not fitted ({e})")
        try:
            if v01:
                result = arena_scoring.arena_hard_v01(recs, baseline, seed=seed)
            else:
                result = arena_scoring.arena_hard_v2(recs, baseline, seed=seed)
        except ValueError as e:
            notes.append(f"{category} vs {baseline}: not scored ({e})")
            continue
        notes.append(f"{category}: baseline {baseline}, {result.n_dropped} "
                     f"{'games' if v01 else 'judgments'} dropped for a missing or unparseable verdict, "
                     f"{int(result.ci_level * 100)}% bootstrap CI over {result.num_rounds} rounds (seed {seed})")
        for m, sc in result.scores.items():
            if m != baseline:
                per_model[m][category] = sc
    models = []
    for model, its in items.items():
        scores = per_model.get(model, {})
        head = scores.get("all") or scores.get("hard_prompt") or next(iter(scores.values()), None)
        lengths = [a.n_output_tokens for a in answers.get(model, {}).values() if a.ok]
        avg = sum(lengths) / len(lengths) if lengths else math.nan
        cols: dict[str, Any] = {
            "score": head.score if head else math.nan,
            "lower": head.lower if head else math.nan, "upper": head.upper if head else math.nan,
            "CI": f"(-{head.score - head.lower:.1f}, +{head.upper - head.score:.1f})" if head else "",
            "avg_tokens": avg,
        }
        if v01:
            cols.update(rating_q025=head.rating_lower if head else math.nan,
                        rating_q975=head.rating_upper if head else math.nan)
        cats = {c: s.score for c, s in scores.items() if c != "all"}
        cols.update({f"category_{c}": v for c, v in cats.items()})
        sc = styled.get(model, {})
        sc_head = sc.get("all") or sc.get("hard_prompt") or next(iter(sc.values()), None)
        if sc_head is not None:
            cols.update(score_style_controlled=sc_head.score, lower_style_controlled=sc_head.lower,
                        upper_style_controlled=sc_head.upper)
        models.append(ModelResult(model, cols["score"], head.lower if head else None, head.upper if head else None,
                                  cols, cats, _counts(len({j.question_id for j in its}), its, judged[model],
                                                      unparsed[model], _answers_failed(answers.get(model, {}))), avg))
    if v01:
        columns = ["score", "rating_q025", "rating_q975", "CI", "avg_tokens"]
        name = "win rate vs gpt-4-0314 (%)"
        models.append(ModelResult("gpt-4-0314", 50.0, 50.0, 50.0, {"score": 50.0, "CI": "(-0.0, +0.0)"}))
    else:
        cats = sorted({c for m in models for c in m.categories})
        columns = ["score", "lower", "upper", "CI", *[f"category_{c}" for c in cats], "avg_tokens"]
        name = "win rate vs the category baseline (%) — hard_prompt when present"
    if styled:
        columns += ["score_style_controlled", "lower_style_controlled", "upper_style_controlled"]
    notes.append("avg_tokens counts the model's own tokenizer's tokens (upstream counts tiktoken tokens)")
    return BenchReport(bench, judge, name, (0.0, 100.0), "model", columns, models, notes=notes)


# -- AlpacaEval ----------------------------------------------------------------------------------
def _read_lc_inputs(where: str | None) -> tuple[dict[str, float] | None, list[dict] | None, str | None]:
    """(instruction difficulty, gamed-baseline rows, why not) from a folder or the Hub."""
    if where is None:
        return None, None, ("instruction_difficulty.csv and df_gamed.csv are published only on the Hub "
                            f"({ALPACA_HUB[0]}); pass --lc-inputs hub online, or --lc-inputs DIR holding both files")
    if where == "hub":
        try:
            from huggingface_hub import hf_hub_download

            folder = Path(hf_hub_download(ALPACA_HUB[0], "instruction_difficulty.csv", repo_type="dataset",
                                          revision=ALPACA_HUB[1])).parent
            hf_hub_download(ALPACA_HUB[0], "df_gamed.csv", repo_type="dataset", revision=ALPACA_HUB[1])
        except Exception as e:  # noqa: BLE001 - offline or gated: LC is reported as not computed
            return None, None, f"could not fetch the LC inputs from the Hub ({type(e).__name__}: {e})"
    else:
        folder = Path(where)
    diff_path, gamed_path = folder / "instruction_difficulty.csv", folder / "df_gamed.csv"
    if not diff_path.exists() or not gamed_path.exists():
        return None, None, f"{folder} lacks instruction_difficulty.csv or df_gamed.csv"
    with open(diff_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "instruction" not in rows[0] or "instruction_difficulty" not in rows[0]:
        raise FusekitError(f"{diff_path}: expected columns 'instruction' and 'instruction_difficulty'")
    difficulty = {r["instruction"]: float(r["instruction_difficulty"]) for r in rows}
    with open(gamed_path, newline="", encoding="utf-8") as fh:
        gamed = list(csv.DictReader(fh))
    return difficulty, gamed, None


def _alpaca(bench, judge, judgments, replies, questions, answers, lc_inputs) -> BenchReport:
    difficulty, gamed, reason = _read_lc_inputs(lc_inputs)
    models, notes = [], []
    by_model: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_model[j.model].append(j)
    for model, items in by_model.items():
        annotations: dict[str, dict] = {}
        unparsed = judged = 0
        for j in items:
            q = questions.get(j.question_id)
            answer = answers.get(model, {}).get((j.question_id, 1))
            if q is None or answer is None or not answer.ok:
                continue
            if j.mode == "identical":
                pref = 1.5
            else:
                reply = _reply_state(j, replies)
                if reply is None:
                    continue
                try:
                    pref = alpaca_eval.preference(reply, j.swapped)
                except alpaca_eval.NoLogprobsError:
                    pref = math.nan
                if math.isnan(pref):
                    unparsed += 1
                    continue
            judged += 1
            annotations[q.turns[0]] = {"instruction": q.turns[0], "output_1": q.baseline_answer,
                                       "output_2": answer.text, "preference": pref}
        if not annotations:
            notes.append(f"{model}: no usable preferences")
            continue
        try:
            lc = alpaca_scoring.maybe_length_controlled_win_rate(annotations, difficulty, gamed)
        except ValueError as e:
            lc = alpaca_scoring.LengthControlledResult(None, None, alpaca_scoring.win_rate(annotations), "length_controlled_v1",
                                                       reason=str(e))
        wr = lc.win_rate
        if not lc.computed and lc.reason and f"LC not computed: {lc.reason}" not in notes:
            notes.append(f"LC not computed: {lc.reason}")
        if lc.is_extreme_change:
            notes.append(f"{model}: LC moved far from the raw win rate (upstream's sanity warning)")
        avg_len = sum(len(a["output_2"]) for a in annotations.values()) / len(annotations)
        cols = {"win_rate": wr.win_rate, "standard_error": wr.standard_error, "n_wins": wr.n_wins,
                "n_wins_base": wr.n_wins_base, "n_draws": wr.n_draws, "n_total": wr.n_total,
                "discrete_win_rate": wr.discrete_win_rate, "mode": "community", "avg_length": avg_len,
                "length_controlled_winrate": lc.length_controlled_winrate if lc.computed else math.nan,
                "lc_standard_error": lc.lc_standard_error if lc.computed else math.nan}
        head, se = (lc.length_controlled_winrate, lc.lc_standard_error) if lc.computed else (wr.win_rate, wr.standard_error)
        ci = (head - 1.96 * se, head + 1.96 * se) if se is not None and math.isfinite(se) else (None, None)
        models.append(ModelResult(model, head, ci[0], ci[1], cols, {},
                                  _counts(len({j.question_id for j in items}), items, judged, unparsed,
                                          _answers_failed(answers.get(model, {}))), avg_len))
    lc_on = any(math.isfinite(m.columns.get("length_controlled_winrate", math.nan)) for m in models)
    name = ("LC win rate" if lc_on else "win rate") + " vs gpt4_1106_preview (%), ±1.96 SE"
    columns = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
               "mode", "avg_length", "length_controlled_winrate", "lc_standard_error"]
    return BenchReport(bench, judge, name, (0.0, 100.0), "", columns, models, notes=notes)

