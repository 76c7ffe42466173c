"""``evals export``: a run's answers and judgments in the upstream tools' own file layouts.

Anyone can then re-score a fusekit run with alpaca_eval, arena-hard-auto's ``show_result.py`` or
FastChat's ``show_result.py``, or judge the exported answers again with them. The layouts and
every field are described in ``docs/evals.md#export``:

* AlpacaEval (alpaca_eval 0.6.6): ``alpaca_eval/<model>/model_outputs.json`` and
  ``alpaca_eval/<model>/<annotator>/annotations.json``;
* Arena-Hard: ``<bench>/model_answer/<model>.jsonl`` and ``<bench>/model_judgment/<judge>/<model>.jsonl``,
  v0.1 in the ``question_id``/``choices`` layout its ``show_result.py`` (0489bf3) reads, v2.0 in the
  ``uid``/``messages`` layout;
* MT-Bench (FastChat ``llm_judge``): ``mt_bench/model_answer/<model>.jsonl`` and
  ``mt_bench/model_judgment/<judge>_single.jsonl`` / ``<judge>_pair.jsonl``.

A verdict is exported as fusekit parsed it (the ``score``/``preference``/winner fields), next to the
judge's raw text, so upstream's aggregation of the files gives fusekit's numbers while upstream's
parsers can still re-read the text. Every file is rebuilt from the store, written under a temporary
name and renamed: re-running the export rewrites the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply
from fusedata.records import sha256_hex

from .benches.arena_hard import BENCH_V01, BENCH_V2, style_metadata
from .judges import alpaca_eval, arena_hard, mt_bench
from .records import Answer, Judgment, Question
from .scoring.mt_bench import pair_game_winner
from .store import DB_NAME, EvalStore

# FastChat's and arena-hard-auto's API_ERROR_OUTPUT: the text they store for a call that failed.
ERROR_OUTPUT = "$ERROR$"
# alpaca_eval's leaderboard annotator, and the judge model its config names (gpt-4-turbo of Nov 2023).
UPSTREAM_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
UPSTREAM_ANNOTATOR_JUDGE = "gpt-4-1106-preview"
ALPACA_DATASPLIT = "eval"  # the split name of alpaca_eval's 805-instruction evaluation set
BENCH_FOLDERS = {"alpaca-eval": "alpaca_eval", "mt-bench": "mt_bench", BENCH_V01: BENCH_V01, BENCH_V2: BENCH_V2}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class ExportedFile:
    """One written file and what went into it.

    ``failed`` counts judge calls (or answers) that failed and are written in upstream's error form,
    ``unparsed`` replies without a usable verdict (written with upstream's "no verdict" value), and
    ``left_out`` items with nothing upstream would store: judge calls never made and, where upstream
    writes no record for them, answers that failed.
    """

    bench: str
    model: str
    kind: str  # "answers", "judgments" or "annotations"
    path: Path
    rows: int
    failed: int = 0
    unparsed: int = 0
    left_out: int = 0


@dataclass
class _Run:
    """One bench of one run as the exporters read it: one judge's judgments and everything they point at."""

    bench: str
    judge: str
    questions: list[Question]
    answers: dict[str, dict[tuple[str, int], Answer]]
    names: dict[str, str]  # run label → file-safe name used throughout the export
    judgments: list[Judgment]
    replies: dict[str, JudgeReply]
    requests: dict[str, dict[str, Any]]  # call key → the stored JudgeRequest as a dict
    call_times: dict[str, float]
    answer_times: dict[tuple[str, str, int], float]
    lenient: bool = False  # the run parses verdicts with fusekit's lenient rules (evals.score.PARSERS)
    by_id: dict[str, Question] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {q.id: q for q in self.questions}

    def reply(self, j: Judgment) -> JudgeReply | None:
        return self.replies.get(j.key)

    def name(self, model: str) -> str:
        return self.names.get(model) or safe_name(model)

    def user_prompt(self, key: str) -> str:
        """The last user message of the call (what FastChat and arena-hard-auto store as ``user_prompt``)."""
        messages = self.requests.get(key, {}).get("messages", [])
        users = [m["content"] for m in messages if m.get("role") == "user"]
        return users[-1] if users else ""


# -- writing ---------------------------------------------------------------------------------------
def _replace_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _dumps(obj: Any, **kwargs: Any) -> str:
    # allow_nan=False: a NaN that slipped through would make the file unreadable to strict JSON readers.
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kwargs)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    _replace_atomically(path, "".join(_dumps(r) + "\n" for r in rows))


def _write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    _replace_atomically(path, _dumps(rows, indent=2) + "\n")


def safe_name(name: str) -> str:
    """``name`` as a file name: upstream tools take a model's name from its answer file's name."""
    safe = _UNSAFE.sub("_", name)
    return "_" + safe if safe.startswith(".") or not safe else safe


def _file_names(labels: list[str]) -> dict[str, str]:
    names = {m: safe_name(m) for m in labels}
    seen: dict[str, str] = {}
    for label, name in names.items():
        if name in seen:
            raise FusekitError(f"models {seen[name]!r} and {label!r} would both be exported as {name!r}; "
                               "rename one of them (NAME=REF) and re-run")
        seen[name] = label
    return names


# -- reading the store -----------------------------------------------------------------------------
def _pick_judge(store: EvalStore, bench: str, judge: str | None) -> str:
    judges = store.judges(bench)
    if not judges:
        raise FusekitError(f"nothing judged for {bench} in {store.folder}")
    chosen = judge or store.get_meta(f"{bench}:judge", {}).get("model") or judges[-1]
    if chosen not in judges:
        raise FusekitError(f"no judgments by judge {chosen!r} for {bench}; judges here: {', '.join(judges)}")
    return chosen


def _answer_times(store: EvalStore, bench: str,
                  models: dict[str, tuple[str, dict]]) -> dict[tuple[str, str, int], float]:
    return {(model, q, t): when for model, (settings_hash, _) in models.items()
            for (q, t), when in store.answer_times(bench, model, settings_hash).items()}


def _load(store: EvalStore, bench: str, judge: str | None) -> _Run:
    chosen = _pick_judge(store, bench, judge)
    judgments = store.judgments(bench, chosen)
    keys = {j.key for j in judgments if j.key}
    replies = {k: r for k, (r, _) in store.replies(keys).items()}
    stored = store.requests(keys)
    requests, call_times = {k: r for k, (r, _) in stored.items()}, {k: t for k, (_, t) in stored.items()}
    models = store.models(bench)
    answers = {m: store.answers(bench, m, h) for m, (h, _) in models.items()}
    lenient = store.get_meta(f"{bench}:run", {}).get("parser") == "lenient"
    return _Run(bench, chosen, store.questions(bench), answers, _file_names(list(models)), judgments, replies,
                requests, call_times, _answer_times(store, bench, models), lenient)


def _prompt_label(request: dict[str, Any]) -> str:
    """The prompt's name, with fusekit's version when the text is not upstream's own."""
    name, version = request.get("prompt", ""), request.get("prompt_version", "")
    return name if version.startswith("upstream-") else f"{name}@{version}"


def _answer_id(*parts: str) -> str:
    # Upstream draws a random shortuuid; a hash of what the answer is keeps re-exports byte-identical.
    return sha256_hex("\x1f".join(parts))[:22]


def _by_model(judgments: list[Judgment]) -> dict[str, list[Judgment]]:
    out: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        out[j.model].append(j)
    return out


def _tally(rows: int = 0) -> dict[str, int]:
    return {"rows": rows, "failed": 0, "unparsed": 0, "left_out": 0}


# -- AlpacaEval ------------------------------------------------------------------------------------
def annotator_name(judge: str, prompt_labels: set[str], lenient: bool = False) -> str:
    """The annotator folder: alpaca_eval's leaderboard name only for its own judge model, prompt text and
    log-prob parser.

    Any other judge, prompt or parser gets a name of its own, so that its annotations cannot pass for
    ``weighted_alpaca_eval_gpt4_turbo``'s (LC is calibrated for that annotator only).
    """
    upstream_text = all("@" not in p for p in prompt_labels)
    if judge == UPSTREAM_ANNOTATOR_JUDGE and upstream_text and not lenient:
        return UPSTREAM_ANNOTATOR
    name = f"weighted_alpaca_eval_{safe_name(judge)}"
    if not upstream_text:
        name += "_prompt-" + "+".join(sorted(safe_name(p.split("@", 1)[1]) for p in prompt_labels if "@" in p))
    return name + ("_lenient" if lenient else "")


def _canonical_positions(data_dir: str | None) -> dict[str, int]:
    """Instruction → row in the 805-row evaluation set: alpaca_eval's LC reads difficulties by that row."""
    from .benches import load_questions

    try:
        reference, _ = load_questions("alpaca-eval", data_dir=data_dir)
    except FusekitError as e:
        raise FusekitError(f"AlpacaEval export needs the evaluation set for each instruction's row index "
                           f"(alpaca_eval's LC looks difficulties up by it): {e}") from None
    return {q.turns[0]: i for i, q in enumerate(reference)}


def _raw_completion(reply: JudgeReply | None) -> dict[str, Any] | None:
    """The reply in the shape of the OpenAI choice alpaca_eval stores (what its ``logprob_parser`` reads)."""
    if reply is None or not reply.ok:
        return None
    logprobs = None
    if reply.top_logprobs is not None:
        # -inf (probability 0) has no JSON spelling; leaving the token out means the same to the parser.
        finite = [(t, lp) for t, lp in reply.top_logprobs.items() if math.isfinite(lp)]
        top = sorted(finite, key=lambda x: (-x[1], x[0]))
        content = {"token": reply.text, "logprob": reply.top_logprobs.get(reply.text or ""),
                   "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}
        if content["logprob"] is not None and not math.isfinite(content["logprob"]):
            content["logprob"] = None
        logprobs = {"content": [content]}
    return {"logprobs": logprobs, "message": {"content": reply.text, "role": "assistant"}, "text": reply.text,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def _preference(run: _Run, j: Judgment, tally: dict[str, int]) -> tuple[float | None, JudgeReply | None, bool]:
    """(preference on upstream's [1, 2] scale or None, the reply, whether the item is exported at all)."""
    if j.mode == "identical":
        return 1.5, None, True
    reply = run.reply(j)
    if reply is None:
        tally["left_out"] += 1
        return None, None, False
    if not reply.ok:
        tally["failed"] += 1
        return None, reply, True
    try:
        pref = alpaca_eval.preference(reply, j.swapped, lenient=run.lenient)
    except alpaca_eval.NoLogprobsError:
        pref = math.nan
    if math.isnan(pref):
        tally["unparsed"] += 1
        return None, reply, True
    return pref, reply, True


def _alpaca_annotations(run: _Run, model: str, items: list[Judgment], positions: dict[str, int],
                        annotator: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    tally = _tally()
    rows = []
    for j in items:
        q = run.by_id.get(j.question_id)
        answer = run.answers.get(model, {}).get((j.question_id, 1))
        if q is None or answer is None or not answer.ok:
            tally["left_out"] += 1
            continue
        pref, reply, keep = _preference(run, j, tally)
        if not keep:
            continue
        rows.append({
            "instruction": q.turns[0], "output_1": q.baseline_answer, "generator_1": q.baseline,
            "dataset": q.category, "output_2": answer.text, "generator_2": run.name(model),
            "annotator": annotator, "preference": pref, "price_per_example": None,
            "time_per_example": reply.seconds if reply is not None and reply.ok else None,
            "raw_completion": _raw_completion(reply), "is_switched_outputs": j.swapped,
            "index": _position(positions, q),
        })
    rows.sort(key=lambda r: r["index"])
    tally["rows"] = len(rows)
    return rows, tally


def _position(positions: dict[str, int], q: Question) -> int:
    if q.turns[0] not in positions:
        raise FusekitError(f"alpaca-eval question {q.id} is not in the AlpacaEval evaluation set read for the export")
    return positions[q.turns[0]]


def _alpaca_outputs(run: _Run, model: str, positions: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    tally = _tally()
    rows = []
    for q in run.questions:
        a = run.answers[model].get((q.id, 1))
        if a is None or not a.ok:
            tally["failed" if a is not None else "left_out"] += 1
            continue
        rows.append((_position(positions, q), {"instruction": q.turns[0], "output": a.text,
                                               "generator": run.name(model), "dataset": q.category,
                                               "datasplit": ALPACA_DATASPLIT}))
    tally["rows"] = len(rows)
    return [r for _, r in sorted(rows, key=lambda x: x[0])], tally


def _export_alpaca(run: _Run, root: Path, data_dir: str | None) -> list[ExportedFile]:
    positions = _canonical_positions(data_dir)
    labels = {_prompt_label(run.requests[j.key]) for j in run.judgments if j.key in run.requests}
    annotator = annotator_name(run.judge, labels, run.lenient)
    out = []
    for model, name in run.names.items():
        rows, tally = _alpaca_outputs(run, model, positions)
        path = root / name / "model_outputs.json"
        _write_json(path, rows)
        out.append(ExportedFile(run.bench, name, "answers", path, **tally))
    for model, items in _by_model(run.judgments).items():
        rows, tally = _alpaca_annotations(run, model, items, positions, annotator)
        path = root / run.name(model) / annotator / "annotations.json"
        _write_json(path, rows)
        out.append(ExportedFile(run.bench, run.name(model), "annotations", path, **tally))
    return out


# -- Arena-Hard ------------------------------------------------------------------------------------
def _arena_answer(v01: bool, name: str, q: Question, text: str, style: dict[str, Any] | None,
                  tstamp: float | None) -> dict[str, Any]:
    """One answer record: v0.1's ``question_id``/``choices`` layout, or v2.0's ``uid``/``messages``."""
    ans_id = _answer_id(q.bench, q.id, name, text)
    if v01:
        turn: dict[str, Any] = {"content": text}
        if style is not None:
            turn["token_len"] = style["token_len"]
        record: dict[str, Any] = {"question_id": q.id, "answer_id": ans_id, "model_id": name,
                                  "choices": [{"index": 0, "turns": [turn]}], "tstamp": tstamp}
        if style is not None:
            record["conv_metadata"] = style
        return record
    record = {"uid": q.id, "ans_id": ans_id, "model": name,
              "messages": [{"role": "user", "content": q.turns[0]}, {"role": "assistant", "content": {"answer": text}}],
              "tstamp": tstamp}
    if style is not None:
        record["metadata"] = style
    return record


def _arena_answers(run: _Run, root: Path) -> list[ExportedFile]:
    """Every model's answers, and the baselines' (their style metadata is what style control reads)."""
    v01 = run.bench == BENCH_V01
    out = []
    for model, name in run.names.items():
        tally, rows = _tally(), []
        for q in run.questions:
            a = run.answers[model].get((q.id, 1))
            if a is None or not a.ok:
                tally["failed" if a is not None else "left_out"] += 1
                continue
            style = style_metadata(a.text or "", a.n_output_tokens)
            rows.append(_arena_answer(v01, name, q, a.text or "", style, run.answer_times.get((model, q.id, 1))))
        tally["rows"] = len(rows)
        out.append(_written(run.bench, name, "answers", root / "model_answer" / f"{name}.jsonl", rows, tally))
    baselines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    for q in run.questions:
        if q.baseline is None or q.baseline_answer is None or q.baseline in run.names:
            continue
        style = q.meta.get("baseline_style")
        if style is None:  # v0.1's show_result needs token_len of every answer it averages
            missing[q.baseline] += 1
            continue
        baselines[q.baseline].append(_arena_answer(v01, safe_name(q.baseline), q, q.baseline_answer, style, None))
    for baseline, rows in baselines.items():
        tally = {**_tally(len(rows)), "left_out": missing.pop(baseline, 0)}
        path = root / "model_answer" / f"{safe_name(baseline)}.jsonl"
        out.append(_written(run.bench, safe_name(baseline), "answers", path, rows, tally))
    return out


def _written(bench: str, model: str, kind: str, path: Path, rows: list[dict[str, Any]],
             tally: dict[str, int]) -> ExportedFile:
    _write_jsonl(path, rows)
    return ExportedFile(bench, model, kind, path, **tally)


def _arena_game(run: _Run, j: Judgment | None, v01: bool, tally: dict[str, int]) -> dict[str, Any] | None:
    """One game as upstream stores it. A failed call: v2.0 keeps ``None`` for the game (its completion
    returned nothing), v0.1 the judge text ``$ERROR$`` with no score. No verdict: score ``None``."""
    reply = run.reply(j) if j is not None else None
    if reply is None or not reply.ok:
        tally["failed"] += 1
        if not v01:
            return None
        return {"user_prompt": run.user_prompt(j.key) if j else "", "judgment": ERROR_OUTPUT, "score": None}
    score = arena_hard.parse_verdict(reply.text, run.bench, run.lenient)
    tally["unparsed"] += score is None
    if v01:
        return {"user_prompt": run.user_prompt(j.key), "judgment": reply.text, "score": score}
    return {"score": score, "judgment": {"answer": reply.text}, "prompt": run.requests.get(j.key, {}).get("messages")}


def _arena_judgments(run: _Run, root: Path) -> list[ExportedFile]:
    v01 = run.bench == BENCH_V01
    folder = root / "model_judgment" / safe_name(run.judge)
    out = []
    for model, items in _by_model(run.judgments).items():
        games: dict[str, dict[int, Judgment]] = {}
        for j in items:  # judgment order, game 1 before game 2: fusekit's (and show_result's) battle order
            games.setdefault(j.question_id, {})[j.game] = j
        tally, rows = _tally(), []
        for qid, pair in games.items():
            q = run.by_id.get(qid)
            if q is None or all(g.key not in run.replies for g in pair.values()):
                tally["left_out"] += 1  # never judged: upstream would hold no record yet
                continue
            played = [_arena_game(run, pair.get(n), v01, tally) for n in (1, 2)]
            name = run.name(model)
            rows.append({"question_id": qid, "model": name, "judge": run.judge, "games": played} if v01 else
                        {"uid": qid, "category": q.category, "judge": run.judge, "model": name,
                         "baseline": q.baseline, "games": played})
        tally["rows"] = len(rows)
        out.append(_written(run.bench, run.name(model), "judgments", folder / f"{run.name(model)}.jsonl", rows, tally))
    return out


def _export_arena(run: _Run, root: Path) -> list[ExportedFile]:
    return _arena_answers(run, root) + _arena_judgments(run, root)


# -- MT-Bench --------------------------------------------------------------------------------------
def _mt_id(qid: str) -> int | str:
    # FastChat's question ids are integers; fusekit keeps every id as a string.
    return int(qid) if qid.isdigit() else qid


def _fastchat_number(value: float) -> int | float:
    # FastChat reads "[[8]]" with ast.literal_eval, which gives the int 8.
    return int(value) if value.is_integer() else value


def _mt_answers(run: _Run, root: Path) -> list[ExportedFile]:
    out = []
    for model, name in run.names.items():
        tally, rows = _tally(), []
        for q in run.questions:
            got = [run.answers[model].get((q.id, t)) for t in range(1, len(q.turns) + 1)]
            if all(a is None for a in got):
                tally["left_out"] += 1
                continue
            tally["failed"] += sum(1 for a in got if a is None or not a.ok)
            turns = [a.text if a is not None and a.ok else ERROR_OUTPUT for a in got]
            times = [run.answer_times[k] for k in ((model, q.id, t) for t in range(1, len(got) + 1))
                     if k in run.answer_times]
            rows.append({"question_id": _mt_id(q.id), "answer_id": _answer_id(q.bench, q.id, name, *turns),
                         "model_id": name, "choices": [{"index": 0, "turns": turns}],
                         "tstamp": max(times) if times else None})
        tally["rows"] = len(rows)
        out.append(_written(run.bench, name, "answers", root / "model_answer" / f"{name}.jsonl", rows, tally))
    return out


def _mt_judge_text(run: _Run, j: Judgment, tally: dict[str, int]) -> str | None:
    """The judge's text, ``$ERROR$`` for a failed call (FastChat judges on and stores it), None: never made."""
    reply = run.reply(j)
    if reply is None:
        return None
    if not reply.ok:
        tally["failed"] += 1
        return ERROR_OUTPUT
    return reply.text


def _mt_single(run: _Run, items: list[Judgment]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    tally, rows = _tally(), []
    for j in items:
        text = _mt_judge_text(run, j, tally)
        if text is None:
            tally["left_out"] += 1
            continue
        rating = mt_bench.parse_rating(text, run.lenient) if text != ERROR_OUTPUT else None
        tally["unparsed"] += rating is None and text != ERROR_OUTPUT
        rows.append({"question_id": _mt_id(j.question_id), "model": run.name(j.model),
                     "judge": [run.judge, _prompt_label(run.requests.get(j.key, {}))],
                     "user_prompt": run.user_prompt(j.key), "judgment": text,
                     "score": -1 if rating is None else _fastchat_number(rating), "turn": j.turn,
                     "tstamp": run.call_times.get(j.key)})
    tally["rows"] = len(rows)
    return rows, tally


def _mt_winner(run: _Run, j: Judgment | None, tally: dict[str, int]) -> tuple[str, str, str]:
    """(winner as FastChat names it, user prompt, judgment) of one pairwise game."""
    text = _mt_judge_text(run, j, tally) if j is not None else None
    if text is None or text == ERROR_OUTPUT:
        tally["failed"] += text is None
        return "error", run.user_prompt(j.key) if j else "", ERROR_OUTPUT
    label = mt_bench.parse_pair(text, run.lenient)
    tally["unparsed"] += label is None
    return pair_game_winner(label, swapped=j.swapped) if label else "error", run.user_prompt(j.key), text


def _mt_pairs(run: _Run, items: list[Judgment]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    tally, rows = _tally(), []
    pairs: dict[tuple[str, str, int], dict[int, Judgment]] = {}
    for j in items:
        pairs.setdefault((j.model, j.question_id, j.turn), {})[j.game] = j
    for (model, qid, turn), games in pairs.items():
        if all(g.key not in run.replies for g in games.values()):
            tally["left_out"] += 1
            continue
        (w1, p1, t1), (w2, p2, t2) = (_mt_winner(run, games.get(n), tally) for n in (1, 2))
        first = next(iter(games.values()))
        rows.append({"question_id": _mt_id(qid), "model_1": run.name(model), "model_2": run.name(first.baseline or ""),
                     "g1_winner": w1, "g2_winner": w2,
                     "judge": [run.judge, _prompt_label(run.requests.get(first.key, {}))],
                     "g1_user_prompt": p1, "g1_judgment": t1, "g2_user_prompt": p2, "g2_judgment": t2,
                     "turn": turn, "tstamp": max(run.call_times.get(g.key, 0.0) for g in games.values())})
    tally["rows"] = len(rows)
    return rows, tally


def _export_mt_bench(run: _Run, root: Path) -> list[ExportedFile]:
    out = _mt_answers(run, root)
    folder = root / "model_judgment"
    for mode, build, suffix in (("single", _mt_single, "single"), ("pairwise", _mt_pairs, "pair")):
        items = [j for j in run.judgments if j.mode == mode]
        if items:
            rows, tally = build(run, items)
            path = folder / f"{safe_name(run.judge)}_{suffix}.jsonl"
            out.append(_written(run.bench, "", "judgments", path, rows, tally))
    return out


# -- entry points ----------------------------------------------------------------------------------
def export_files(run_dir: Path, out: Path, bench: str | None = None, judge: str | None = None, *,
                 data_dir: str | None = None) -> list[ExportedFile]:
    """Export every judged bench of ``run_dir`` (or only ``bench``) under ``out``; ``judge`` picks whose
    verdicts (default: the run's judge, as ``evals score``). ``data_dir`` is where the AlpacaEval
    evaluation set is read from when it is not installed (its row positions go into the annotations)."""
    if not (Path(run_dir) / DB_NAME).exists():
        raise FusekitError(f"{run_dir} holds no {DB_NAME}; point at a directory written by `evals run`")
    with EvalStore(run_dir) as store:
        benches = [b for b in store.benches() if store.judges(b)]
        if bench is not None:
            if bench not in store.benches():
                raise FusekitError(f"no {bench} in {run_dir}; benches here: {', '.join(store.benches()) or 'none'}")
            benches = [bench]
        if not benches:
            raise FusekitError(f"nothing judged in {run_dir} yet")
        files: list[ExportedFile] = []
        for b in benches:
            run = _load(store, b, judge)
            root = Path(out) / BENCH_FOLDERS[b]
            if b == "alpaca-eval":
                files += _export_alpaca(run, root, data_dir)
            elif b == "mt-bench":
                files += _export_mt_bench(run, root)
            else:
                files += _export_arena(run, root)
    return files


def export_run(run_dir: Path, out: Path, bench: str | None = None, judge: str | None = None, *,
               data_dir: str | None = None) -> list[Path]:
    """The paths :func:`export_files` wrote."""
    return [f.path for f in export_files(run_dir, out, bench, judge, data_dir=data_dir)]


def summary_table(files: list[ExportedFile], out: Path) -> Table:
    table = Table("bench", "model", "file", "rows", "failed", "unparsed", "left out", title=f"exported to {out}")
    for f in files:
        table.add_row(f.bench, f.model or "(all)", str(f.path.relative_to(out)), str(f.rows), str(f.failed),
                      str(f.unparsed), str(f.left_out))
    return table

