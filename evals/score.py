"""Stored judgments → leaderboard numbers, without calling anything (``evals score RUN_DIR``).

Verdicts are parsed here, from the stored reply texts and log-probs, so a fixed parser re-scores
an old run for free. For every model the counts say how many items were judged, how many judge
calls failed (or were never made) and how many replies held no usable verdict.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply

from .benches import DEFAULT_REFERENCE, get_bench
from .benches.arena_hard import GPT4_0314, style_metadata
from .comparable import Verdict, verdict
from .judges import alpaca_eval, arena_hard, mt_bench
from .pricing import cost_usd
from .records import Answer, Judgment, Question
from .report import BenchReport, ModelResult
from .scoring import alpaca as alpaca_scoring
from .scoring import arena_hard as arena_scoring
from .scoring import mt_bench as mt_scoring
from .scoring.arena_hard import GamePair
from .store import EvalStore

# upstream: FastChat's, arena-hard-auto's and alpaca_eval's own verdict rules; lenient: fusekit's
# more forgiving reading of the same replies (docs/evals.md), which the report names.
PARSERS: tuple[str, ...] = ("upstream", "lenient")
ALPACA_HUB = ("tatsu-lab/alpaca_eval", "2edc6fad8be6b14ea7230aabfd08188da6b8b814")


@dataclass
class ScoreOptions:
    judge: str | None = None           # score this judge's judgments (default: the latest judge on the bench)
    judge_is_local: bool | None = None
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    lc_inputs: str | None = None       # AlpacaEval LC difficulty inputs: a folder, "hub", or None
    bootstrap_seed: int = 42
    style_control: bool | None = None  # Arena-Hard: also fit with length + markdown features (default: as run)
    parser: str | None = None          # one of PARSERS (default: as the run did, else upstream)


def is_local_judge(judge_settings: dict[str, Any]) -> bool:
    """In-process, or served on this machine (loopback): no per-token price applies."""
    url = judge_settings.get("base_url")
    return not url or urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def _answer_index(store: EvalStore, bench: str) -> dict[str, dict[tuple[str, int], Answer]]:
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


@dataclass(frozen=True)
class ScoreInput:
    """What a bench's scorer (``Bench.score``) reads: one judge's judgments on one bench with their
    stored replies, the questions, every stored model's answers and the run's settings."""

    bench: str
    judge: str
    judgments: list[Judgment]
    replies: dict[str, tuple[JudgeReply, int]]
    questions: dict[str, Question]
    answers: dict[str, dict[tuple[str, int], Answer]]
    run: dict[str, Any]
    opts: ScoreOptions

    @property
    def parser(self) -> str:
        return self.opts.parser or self.run.get("parser") or "upstream"

    @property
    def lenient(self) -> bool:
        """Parse verdicts with fusekit's lenient rules instead of upstream's exact ones."""
        return self.parser == "lenient"

    def reply(self, j: Judgment) -> JudgeReply | None:
        """The successful reply deciding ``j``; None when its call failed or was never made."""
        got = self.replies.get(j.key)
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
    meta = store.get_meta(f"{bench}:run", {})
    judge_meta = store.get_meta(f"{bench}:judge", {})
    local = opts.judge_is_local if opts.judge_is_local is not None else is_local_judge(judge_meta)
    inputs = ScoreInput(bench, judge, judgments, replies, {q.id: q for q in store.questions(bench)},
                        _answer_index(store, bench), meta, opts)
    report = get_bench(bench).score(inputs)
    report.usage = _usage(store, judge, judgments, replies, local, opts.prices)
    report.settings = {"run": meta, "judge": judge_meta, "models": {m: s for m, (_, s) in store.models(bench).items()},
                       "prompts": store.prompt_versions(j.key for j in judgments if j.key)}
    report.data = store.get_meta(f"{bench}:data", {})
    report.wall_seconds = float(store.get_meta(f"{bench}:wall_seconds", 0.0))
    prompts = store.get_meta(f"{bench}:prompts", {})
    report.settings["prompt_sources"] = prompts
    report.comparable = _comparable(inputs, judge_meta, report, prompts, store.models(bench))
    return report


def _comparable(inp: ScoreInput, judge_meta: dict[str, Any], report: BenchReport,
                prompts: dict[str, dict[str, str]], models: dict[str, tuple[str, dict[str, Any]]]) -> Verdict:
    bench = get_bench(inp.bench)
    extra = []
    baseline_ok = True
    if inp.run.get("mode") == "pairwise":
        baseline_ok = inp.run.get("pairwise_baseline") == mt_bench.UPSTREAM_PAIRWISE_BASELINE
        extra.append("pairwise mode (MT-Bench's leaderboard reports single grading)")
    if inp.run.get("reference", DEFAULT_REFERENCE) != DEFAULT_REFERENCE and bench.references:
        extra.append(f"reference answers {inp.run['reference']} (the leaderboard used {DEFAULT_REFERENCE})")
    if bench.logprob_judge and not any(_finite(m.columns.get("length_controlled_winrate")) for m in report.models):
        extra.append("LC win rate not computed (the leaderboard ranks by it)")
    judge = {**judge_meta, "model": inp.judge}
    return verdict(inp.bench, inp.run, judge, report.data, prompts, {m: s for m, (_, s) in models.items()},
                   set(bench.pins), parser=inp.parser, baseline_ok=baseline_ok, extra=extra)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _counts(n_questions: int, items: list[Judgment], judged: int, unparsed: int, answer_failed: int) -> dict[str, int]:
    return {"questions": n_questions, "items": len(items), "judged": judged,
            "judge_failed": len(items) - judged - unparsed, "unparsed": unparsed, "answers_failed": answer_failed}


def _answers_failed(answers: dict[tuple[str, int], Answer]) -> int:
    return sum(1 for a in answers.values() if not a.ok)


# -- MT-Bench ------------------------------------------------------------------------------------
def score_mt_bench(inp: ScoreInput) -> BenchReport:
    """Single-answer grading (1–10), or the adjusted win rate against the pairwise baseline."""
    return _mt_bench_pairwise(inp) if inp.run.get("mode", "single") == "pairwise" else _mt_bench_single(inp)


def _mt_bench_single(inp: ScoreInput) -> BenchReport:
    by_model: dict[str, list[Judgment]] = defaultdict(list)
    for j in inp.judgments:
        if j.mode == "single":
            by_model[j.model].append(j)
    models = []
    for model, items in by_model.items():
        records, unparsed, judged = [], 0, 0
        for j in items:
            reply = inp.reply(j)
            rating = mt_bench.parse_rating(reply.text, inp.lenient) if reply else None
            if reply is not None and rating is None:
                unparsed += 1
            judged += rating is not None
            q = inp.questions.get(j.question_id)
            records.append({"question_id": j.question_id, "turn": j.turn, "score": rating,
                            "category": q.category if q else None})
        s = mt_scoring.mt_bench_single(records)
        cols = {"score": s.overall, "turn_1": s.turn_means.get(1, math.nan), "turn_2": s.turn_means.get(2, math.nan),
                **{f"category_{c}": v for c, v in s.category_means.items()},
                "n_judged": s.n_valid, "n_failed": s.n_failed}
        models.append(ModelResult(model, s.overall, None, None, cols, dict(s.category_means),
                                  _counts(len({j.question_id for j in items}), items, judged, unparsed, 0)))
    cats = sorted({c for m in models for c in m.categories})
    columns = ["score", "turn_1", "turn_2", *[f"category_{c}" for c in cats], "n_judged", "n_failed"]
    return BenchReport(inp.bench, inp.judge, "MT-Bench score (1–10)", (0.0, 10.0), "model", columns, models,
                       notes=["single-answer grading; score = mean over all valid (question, turn) ratings"])


def _mt_bench_pairwise(inp: ScoreInput) -> BenchReport:
    baseline = inp.run.get("pairwise_baseline")
    pairs: dict[tuple[str, str, int], dict[int, str]] = defaultdict(dict)
    unparsed: dict[str, int] = defaultdict(int)
    judged: dict[str, int] = defaultdict(int)
    items: dict[str, list[Judgment]] = defaultdict(list)
    for j in inp.judgments:
        if j.mode != "pairwise":
            continue
        items[j.model].append(j)
        reply = inp.reply(j)
        label = mt_bench.parse_pair(reply.text, inp.lenient) if reply else None
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
    columns = ["win", "loss", "tie", "win_rate", "loss_rate", "win_rate_adjusted", "n_inconsistent", "n_error"]
    return BenchReport(inp.bench, inp.judge, f"adjusted win rate vs {baseline} (%)", (0.0, 100.0), "model",
                       columns, models, notes=["pairwise mode: two games per (question, turn), positions swapped; "
                                      "disagreeing games count as ties"])


# -- Arena-Hard ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ArenaVersion:
    """How Arena-Hard v0.1 and v2.0 score the same kind of verdicts differently."""

    per_category: bool  # v2.0 scores each category against its own baseline, v0.1 all questions at once
    fit: Callable[..., arena_scoring.ArenaHardResult]
    fit_style: Callable[..., arena_scoring.ArenaHardResult]
    dropped: str  # what one missing verdict drops: a game (v0.1) or a judgment (v2.0)
    ratings: bool  # v0.1's leaderboard also shows the Bradley-Terry rating's CI


_V01 = _ArenaVersion(False, arena_scoring.arena_hard_v01, arena_scoring.arena_hard_v01_style_control, "games", True)
_V2 = _ArenaVersion(True, arena_scoring.arena_hard_v2, arena_scoring.arena_hard_v2_style_control, "judgments", False)


def _style_metadata(questions: dict[str, Question], answers: dict[str, dict[tuple[str, int], Answer]],
                    groups: dict[tuple[str, str], list[GamePair]]) -> dict[str, dict[str, dict]] | None:
    """Style features per (model, uid), baselines included; None when a baseline lacks them.

    The model's token_len counts its own tokenizer's tokens while the baselines' come from
    upstream's tiktoken counts: the length feature is approximate, and the report says so.
    """
    meta: dict[str, dict[str, dict]] = defaultdict(dict)
    for (_, baseline), pairs in groups.items():
        for pair in pairs:
            q = questions[pair.uid]
            if "baseline_style" not in q.meta:
                return None
            meta[baseline][q.id] = q.meta["baseline_style"]
            a = answers.get(pair.model, {}).get((q.id, 1))
            if a is None or not a.ok:
                return None
            meta[pair.model][q.id] = style_metadata(a.text or "", a.n_output_tokens)
    return meta


@dataclass
class _ArenaVerdicts:
    """The parsed verdicts of one judge, per model: its judgments, both games per question, and
    how many games had a verdict or an unparseable reply."""

    items: dict[str, list[Judgment]] = field(default_factory=lambda: defaultdict(list))
    games: dict[tuple[str, str], list[str | None]] = field(default_factory=lambda: defaultdict(lambda: [None, None]))
    judged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unparsed: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _arena_verdicts(inp: ScoreInput) -> _ArenaVerdicts:
    v = _ArenaVerdicts()
    for j in inp.judgments:
        v.items[j.model].append(j)
        reply = inp.reply(j)
        label = arena_hard.parse_verdict(reply.text, inp.bench, inp.lenient) if reply else None
        if reply is not None and label is None:
            v.unparsed[j.model] += 1
        v.judged[j.model] += label is not None
        v.games[(j.model, j.question_id)][j.game - 1] = label
    return v


def _arena_groups(inp: ScoreInput, verdicts: _ArenaVerdicts, version: _ArenaVersion
                  ) -> dict[tuple[str, str], list[GamePair]]:
    """Game pairs by (category, baseline): what one leaderboard fit sees."""
    groups: dict[tuple[str, str], list[GamePair]] = defaultdict(list)
    for (model, qid), g in verdicts.games.items():
        q = inp.questions.get(qid)
        if q is None:
            continue
        category = q.category if version.per_category else "all"
        groups[(category, q.baseline or "")].append(GamePair(qid, model, (g[0], g[1]), q.category))
    return groups


def _fit_arena(version: _ArenaVersion, groups: dict[tuple[str, str], list[GamePair]],
               style_meta: dict[str, dict[str, dict]] | None, seed: int, notes: list[str]
               ) -> tuple[dict[str, dict[str, arena_scoring.ArenaHardScore]],
                          dict[str, dict[str, arena_scoring.ArenaHardScore]]]:
    """Scores per (model, category), plain and style-controlled (empty without style metadata)."""
    plain: dict[str, dict[str, arena_scoring.ArenaHardScore]] = defaultdict(dict)
    styled: dict[str, dict[str, arena_scoring.ArenaHardScore]] = defaultdict(dict)
    for (category, baseline), pairs in sorted(groups.items()):
        if style_meta is not None:
            try:
                sc = version.fit_style(pairs, style_meta, baseline, seed=seed)
                coefs = ", ".join(f"{k} {v:+.3f}" for k, v in (sc.style_coefs or {}).items())
                notes.append(f"{category}: style-controlled (length + markdown), feature coefficients {coefs}")
                for m, s in sc.scores.items():
                    if m != baseline:
                        styled[m][category] = s
            except ValueError as e:
                notes.append(f"{category}: style control not fitted ({e})")
        try:
            result = version.fit(pairs, baseline, seed=seed)
        except ValueError as e:
            notes.append(f"{category} vs {baseline}: not scored ({e})")
            continue
        notes.append(f"{category}: baseline {baseline}, {result.n_dropped} {version.dropped} dropped for a missing "
                     f"or unparseable verdict, {int(result.ci_level * 100)}% bootstrap CI over {result.num_rounds} "
                     f"rounds (seed {seed})")
        for m, s in result.scores.items():
            if m != baseline:
                plain[m][category] = s
    return plain, styled


def _headline(scores: dict[str, arena_scoring.ArenaHardScore]) -> arena_scoring.ArenaHardScore | None:
    """The score a model is ranked by: all questions (v0.1), else hard_prompt, else its only category."""
    return scores.get("all") or scores.get("hard_prompt") or next(iter(scores.values()), None)


def _arena_row(model: str, scores: dict[str, arena_scoring.ArenaHardScore],
               styled: dict[str, arena_scoring.ArenaHardScore], answers: dict[tuple[str, int], Answer],
               counts: dict[str, int], version: _ArenaVersion) -> ModelResult:
    head = _headline(scores)
    lengths = [a.n_output_tokens for a in answers.values() if a.ok]
    avg = sum(lengths) / len(lengths) if lengths else math.nan
    cols: dict[str, Any] = {
        "score": head.score if head else math.nan,
        "lower": head.lower if head else math.nan, "upper": head.upper if head else math.nan,
        "CI": f"(-{head.score - head.lower:.1f}, +{head.upper - head.score:.1f})" if head else "",
        "avg_tokens": avg,
    }
    if version.ratings:
        cols.update(rating_q025=head.rating_lower if head else math.nan,
                    rating_q975=head.rating_upper if head else math.nan)
    cats = {c: s.score for c, s in scores.items() if c != "all"}
    cols.update({f"category_{c}": v for c, v in cats.items()})
    sc_head = _headline(styled)
    if sc_head is not None:
        cols.update(score_style_controlled=sc_head.score, lower_style_controlled=sc_head.lower,
                    upper_style_controlled=sc_head.upper)
    return ModelResult(model, cols["score"], head.lower if head else None, head.upper if head else None,
                       cols, cats, counts, avg)


def _arena_hard(inp: ScoreInput, version: _ArenaVersion) -> tuple[list[ModelResult], list[str], bool]:
    """Every model's row, the notes, and whether any style-controlled score was fitted."""
    verdicts = _arena_verdicts(inp)
    groups = _arena_groups(inp, verdicts, version)
    notes: list[str] = []
    style = inp.opts.style_control if inp.opts.style_control is not None else bool(inp.run.get("style_control"))
    style_meta = _style_metadata(inp.questions, inp.answers, groups) if style else None
    if style and style_meta is None:
        notes.append("style control not applied: a baseline answer lacks its style metadata")
    plain, styled = _fit_arena(version, groups, style_meta, inp.opts.bootstrap_seed, notes)
    models = []
    for model, its in verdicts.items.items():
        answers = inp.answers.get(model, {})
        counts = _counts(len({j.question_id for j in its}), its, verdicts.judged[model], verdicts.unparsed[model],
                         _answers_failed(answers))
        models.append(_arena_row(model, plain.get(model, {}), styled.get(model, {}), answers, counts, version))
    return models, notes, bool(styled)


def _arena_report(inp: ScoreInput, name: str, columns: list[str], models: list[ModelResult], notes: list[str],
                  styled: bool) -> BenchReport:
    if styled:
        columns = [*columns, "score_style_controlled", "lower_style_controlled", "upper_style_controlled"]
    notes = [*notes, "avg_tokens counts the model's own tokenizer's tokens (upstream counts tiktoken tokens)"]
    return BenchReport(inp.bench, inp.judge, name, (0.0, 100.0), "model", columns, models, notes=notes,
                       length_unit="tokens")


def score_arena_hard_v01(inp: ScoreInput) -> BenchReport:
    """Bradley-Terry win rates against gpt-4-0314 over all questions, the baseline's own row included."""
    models, notes, styled = _arena_hard(inp, _V01)
    models.append(ModelResult(GPT4_0314, 50.0, 50.0, 50.0, {"score": 50.0, "CI": "(-0.0, +0.0)"}))
    columns = ["score", "rating_q025", "rating_q975", "CI", "avg_tokens"]
    return _arena_report(inp, f"win rate vs {GPT4_0314} (%)", columns, models, notes, styled)


def score_arena_hard_v2(inp: ScoreInput) -> BenchReport:
    """Bootstrapped win rates per category against that category's baseline."""
    models, notes, styled = _arena_hard(inp, _V2)
    cats = sorted({c for m in models for c in m.categories})
    columns = ["score", "lower", "upper", "CI", *[f"category_{c}" for c in cats], "avg_tokens"]
    return _arena_report(inp, "win rate vs the category baseline (%) — hard_prompt when present", columns, models,
                         notes, styled)


# -- AlpacaEval ----------------------------------------------------------------------------------
LC_FILE = "df_gamed.csv"


def check_lc_inputs(where: str | None) -> None:
    """A folder given as the LC inputs must exist and hold df_gamed.csv (the Hub is tried when used)."""
    if where is None or where == "hub":
        return
    folder = Path(where)
    if not folder.is_dir():
        raise FusekitError(f"lc_inputs (--lc-inputs) {where}: no such folder")
    if not (folder / LC_FILE).is_file():
        raise FusekitError(f"lc_inputs (--lc-inputs) {where}: no {LC_FILE} in that folder")


def _read_lc_inputs(where: str | None) -> tuple[alpaca_scoring.GamedRows | None, str | None]:
    """(df_gamed.csv's rows, why not) from a folder or the Hub. upstream's LC reads only this file:
    the gamed-baseline rows and, from them, every instruction's difficulty."""
    if where is None:
        return None, (f"{LC_FILE} (the GLM's gamed-baseline rows and instruction difficulties) is published only "
                      f"on the Hub ({ALPACA_HUB[0]}); pass --lc-inputs hub online, or --lc-inputs DIR holding it")
    if where == "hub":
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(ALPACA_HUB[0], LC_FILE, repo_type="dataset", revision=ALPACA_HUB[1]))
        except Exception as e:  # noqa: BLE001 - offline or gated: LC is reported as not computed
            return None, f"could not fetch {LC_FILE} from the Hub ({type(e).__name__}: {e})"
    else:
        check_lc_inputs(where)
        path = Path(where) / LC_FILE
    with open(path, newline="", encoding="utf-8") as fh:
        try:
            return alpaca_scoring.gamed_rows(csv.DictReader(fh)), None
        except ValueError as e:
            raise FusekitError(f"{path}: {e}") from None


def _preferences(inp: ScoreInput, model: str, items: list[Judgment]
                 ) -> tuple[dict[str, dict], dict[str, int] | None, int, int]:
    """AlpacaEval annotations by instruction (baseline as output_1; NaN where a reply held no
    preference, as upstream keeps such rows), the instructions' canonical positions (None when a
    stored question predates them), and how many items had a preference and how many a reply
    without one."""
    annotations: dict[str, dict] = {}
    positions: dict[str, int] | None = {}
    judged = unparsed = 0
    for j in items:
        q = inp.questions.get(j.question_id)
        answer = inp.answers.get(model, {}).get((j.question_id, 1))
        if q is None or answer is None or not answer.ok:
            continue
        if j.mode == "identical":
            pref = 1.5
        else:
            reply = inp.reply(j)
            if reply is None:
                continue
            try:
                pref = alpaca_eval.preference(reply, j.swapped, lenient=inp.lenient)
            except alpaca_eval.NoLogprobsError:
                pref = math.nan
        unparsed += math.isnan(pref)
        judged += not math.isnan(pref)
        annotations[q.turns[0]] = {"instruction": q.turns[0], "output_1": q.baseline_answer,
                                   "output_2": answer.text, "preference": pref}
        if positions is not None and isinstance(q.meta.get("index"), int):
            positions[q.turns[0]] = q.meta["index"]
        else:
            positions = None
    return annotations, positions, judged, unparsed


def _alpaca_row(model: str, annotations: dict[str, dict], lc: alpaca_scoring.LengthControlledResult,
                counts: dict[str, int]) -> ModelResult:
    wr = lc.win_rate
    avg_len = sum(len(a["output_2"]) for a in annotations.values()) / len(annotations)
    # upstream's avg_length is the mean output length cut to an int
    cols = {"win_rate": wr.win_rate, "standard_error": wr.standard_error, "n_wins": wr.n_wins,
            "n_wins_base": wr.n_wins_base, "n_draws": wr.n_draws, "n_total": wr.n_total,
            "discrete_win_rate": wr.discrete_win_rate, "mode": "community", "avg_length": int(avg_len),
            "length_controlled_winrate": lc.length_controlled_winrate if lc.computed else math.nan,
            "lc_standard_error": lc.lc_standard_error if lc.computed else math.nan}
    head, se = (lc.length_controlled_winrate, lc.lc_standard_error) if lc.computed else (wr.win_rate, wr.standard_error)
    ci = (head - 1.96 * se, head + 1.96 * se) if se is not None and math.isfinite(se) else (None, None)
    return ModelResult(model, head, ci[0], ci[1], cols, {}, counts, avg_len)


def _alpaca_lc(annotations: dict[str, dict], positions: dict[str, int] | None,
               gamed: alpaca_scoring.GamedRows | None, missing: str | None) -> alpaca_scoring.LengthControlledResult:
    """length_controlled_v1, or the raw win rate with the reason LC is not there."""
    if gamed is None:
        return alpaca_scoring.LengthControlledResult(None, None, alpaca_scoring.win_rate(annotations),
                                                     "length_controlled_v1", reason=missing)
    try:
        return alpaca_scoring.maybe_length_controlled_win_rate(annotations, gamed, positions)
    except ValueError as e:
        return alpaca_scoring.LengthControlledResult(None, None, alpaca_scoring.win_rate(annotations),
                                                     "length_controlled_v1", reason=str(e))


def score_alpaca_eval(inp: ScoreInput) -> BenchReport:
    """Win rate against gpt4_1106_preview, length-controlled when df_gamed.csv is at hand."""
    gamed, missing = _read_lc_inputs(inp.opts.lc_inputs)
    models, notes = [], []
    by_model: dict[str, list[Judgment]] = defaultdict(list)
    for j in inp.judgments:
        by_model[j.model].append(j)
    for model, items in by_model.items():
        annotations, positions, judged, unparsed = _preferences(inp, model, items)
        if not judged:
            notes.append(f"{model}: no usable preferences")
            continue
        lc = _alpaca_lc(annotations, positions, gamed, missing)
        if not lc.computed and lc.reason and f"LC not computed: {lc.reason}" not in notes:
            notes.append(f"LC not computed: {lc.reason}")
        if lc.is_extreme_change:
            notes.append(f"{model}: LC moved far from the raw win rate (upstream's sanity warning)")
        counts = _counts(len({j.question_id for j in items}), items, judged, unparsed,
                         _answers_failed(inp.answers.get(model, {})))
        models.append(_alpaca_row(model, annotations, lc, counts))
    lc_on = any(math.isfinite(m.columns.get("length_controlled_winrate", math.nan)) for m in models)
    name = ("LC win rate" if lc_on else "win rate") + " vs gpt4_1106_preview (%), ±1.96 SE"
    columns = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
               "mode", "avg_length", "length_controlled_winrate", "lc_standard_error"]
    return BenchReport(inp.bench, inp.judge, name, (0.0, 100.0), "", columns, models, notes=notes,
                       length_unit="chars")
