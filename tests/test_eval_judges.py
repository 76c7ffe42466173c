"""Judge prompts and the AlpacaEval / Arena-Hard / MT-Bench request builders and reply parsers.

Expected preferences are worked out by hand from docs/evals.md#alpacaeval-2-weighted-judge with ``math``
only; request tests look at where each text lands in the rendered messages.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from evals.judges import alpaca_eval as ae
from evals.judges import arena_hard as ah
from evals.judges import mt_bench as mt
from evals.judges.prompts import JudgePrompt, load_prompt, prompt_names, render
from evals.records import Question
from evals.scoring.arena_hard import VERDICT_LABELS
from evals.scoring.mt_bench import pair_game_winner
from fusedata.errors import FusekitError
from fusedata.judge import JudgeReply

EXPECTED_PROMPTS = {
    "alpaca-eval-weighted",
    "arena-hard-v0.1",
    "arena-hard-v2-hard-prompt",
    "arena-hard-v2-creative",
    "single-v1",
    "single-math-v1",
    "single-v1-multi-turn",
    "single-math-v1-multi-turn",
    "pair-v2",
    "pair-math-v1",
    "pair-v2-multi-turn",
    "pair-math-v1-multi-turn",
}
SLOT = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def user_text(request) -> str:
    return request.messages[-1]["content"]


def all_text(request) -> str:
    return "\n".join(m["content"] for m in request.messages)


# ==================================================================================================
# Prompt files and rendering
# ==================================================================================================


def test_prompt_names_are_the_shipped_set():
    assert set(prompt_names()) == EXPECTED_PROMPTS


@pytest.mark.parametrize("name", sorted(EXPECTED_PROMPTS))
def test_every_prompt_loads_and_renders_without_leftover_slots(name):
    prompt = load_prompt(name)
    assert isinstance(prompt, JudgePrompt)
    assert prompt.name == name and prompt.version == "fusekit-1" and prompt.description
    assert prompt.placeholders
    values = {slot: f"<value of {slot}>" for slot in prompt.placeholders}
    messages = prompt.messages(**values)
    assert [m["role"] for m in messages] == (["system", "user"] if prompt.system else ["user"])
    text = "\n".join(m["content"] for m in messages)
    assert not SLOT.search(text)
    for value in values.values():
        assert value in text


def test_load_prompt_is_cached():
    assert load_prompt("pair-v2") is load_prompt("pair-v2")


def test_unknown_prompt_suggests_and_lists():
    with pytest.raises(FusekitError) as err:
        load_prompt("single-v2")
    message = str(err.value)
    assert "did you mean 'single-v1'?" in message
    assert "pair-math-v1-multi-turn" in message and "alpaca-eval-weighted" in message


def test_alpaca_template_keeps_its_literal_braces():
    prompt = load_prompt("alpaca-eval-weighted")
    text = prompt.messages(instruction="Say hi.", output_1="hi", output_2="hello")[-1]["content"]
    assert '"instruction": """Say hi."""' in text
    assert '"model_identifier": "m",\n        "output": """hi"""' in text
    assert '"model_identifier": "M",\n        "output": """hello"""' in text
    assert text.count("{") == text.count("}") == 3
    assert "[\n    {" in text


def test_a_value_is_never_substituted_again():
    template = "A: {answer_a}\nB: {answer_b}"
    out = render(template, answer_a="I wrote {answer_b} on purpose", answer_b="real B")
    assert out == "A: I wrote {answer_b} on purpose\nB: real B"


def test_render_fills_repeated_slots_and_leaves_other_braces():
    assert render('{"q": {q}} / {q} / {not a slot}', q="x") == '{"q": x} / x / {not a slot}'


def test_render_refuses_missing_and_unused_values():
    with pytest.raises(ValueError, match="answer_b"):
        render("{answer_a} {answer_b}", answer_a="a")
    with pytest.raises(ValueError, match="extra"):
        render("{answer_a}", answer_a="a", extra="x")
    with pytest.raises(ValueError, match="question"):
        load_prompt("single-v1").messages(answer="a")


# ==================================================================================================
# AlpacaEval 2 weighted judge
# ==================================================================================================

AE_QUESTION = Question(
    bench="alpaca-eval",
    id="q1",
    category="helpful_base",
    turns=["Name three primary colours."],
    baseline="gpt4_1106_preview",
    baseline_answer="Red, yellow and blue.",
)


def reply(logprobs: dict[str, float] | None) -> JudgeReply:
    return JudgeReply(text="m", top_logprobs=logprobs)


def test_is_swapped_is_deterministic_and_balanced():
    strings = [f"instruction number {i}" for i in range(1000)]
    first = [ae.is_swapped(s) for s in strings]
    assert first == [ae.is_swapped(s) for s in strings]
    assert 400 <= sum(first) <= 600
    # The seed takes part in the flip.
    assert first != [ae.is_swapped(s, seed=1) for s in strings]


def test_alpaca_request_orders_outputs_by_swap():
    model_answer = "Red, green and blue."
    req, swapped = ae.request(AE_QUESTION, model_answer, load_prompt("alpaca-eval-weighted"))
    assert swapped == ae.is_swapped(AE_QUESTION.turns[0])
    assert (req.prompt, req.prompt_version) == ("alpaca-eval-weighted", "fusekit-1")
    assert (req.max_tokens, req.temperature, req.top_logprobs) == (1, 1.0, 5)
    text = user_text(req)
    first, second = (model_answer, AE_QUESTION.baseline_answer)
    if not swapped:
        first, second = second, first
    assert text.index(f'"""{first}"""') < text.index('"M"') < text.index(f'"""{second}"""')
    # Flip the instruction until the other order shows up, to check both branches.
    other = next(
        replace(AE_QUESTION, turns=[f"variant {i}"])
        for i in range(100)
        if ae.is_swapped(f"variant {i}") != swapped
    )
    req2, swapped2 = ae.request(other, model_answer, load_prompt("alpaca-eval-weighted"))
    assert swapped2 != swapped
    text2 = user_text(req2)
    m_output = text2[text2.index('"m"') :].split('"""')[1]
    assert m_output == (model_answer if swapped2 else AE_QUESTION.baseline_answer)


def test_alpaca_request_needs_a_baseline_answer():
    question = Question(bench="alpaca-eval", id="q2", category="x", turns=["Hi"])
    with pytest.raises(FusekitError, match="no baseline answer"):
        ae.request(question, "hello", load_prompt("alpaca-eval-weighted"))


def test_identical_outputs():
    # upstream compares output_1 == output_2 exactly: surrounding whitespace makes another answer
    assert ae.identical(AE_QUESTION, "Red, yellow and blue.")
    assert not ae.identical(AE_QUESTION, "Red, yellow and blue.\n")
    assert not ae.identical(AE_QUESTION, "Red, yellow, blue.")


def test_preference_hand_computed():
    p_m = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5))  # ≈ 0.9168
    expected = 2.0 - p_m  # ≈ 1.0832: the judge prefers output_1
    got = ae.preference(reply({"m": -0.1, "M": -2.5, "The": -4.0}), swapped=False)
    assert got == pytest.approx(expected, abs=1e-12)
    got_swapped = ae.preference(reply({"m": -0.1, "M": -2.5}), swapped=True)
    assert got_swapped == pytest.approx(3.0 - expected, abs=1e-12)  # output_1 was the model


def test_preference_with_one_label_and_with_none():
    assert ae.preference(reply({"m": -0.3, "Output": -1.0}), swapped=False) == 1.0
    assert ae.preference(reply({"M": -0.3, "x": -1.0}), swapped=False) == 2.0
    assert ae.preference(reply({"M": -0.3}), swapped=True) == 1.0
    assert math.isnan(ae.preference(reply({"Model": -0.1, "mm": -0.2}), swapped=False))
    assert math.isnan(ae.preference(reply({}), swapped=True))


def test_lenient_preference_strips_whitespace_and_merges_spellings():
    p_m = math.exp(-1.0) / (math.exp(-1.0) + math.exp(-0.5))
    spaced = reply({" M": -0.5, "m ": -1.0})
    assert ae.preference(spaced, swapped=False, lenient=True) == pytest.approx(2 - p_m)
    # upstream reads the exact tokens "m" and "M" only: neither is here
    assert math.isnan(ae.preference(spaced, swapped=False))
    # "M" and " M" are the same choice: their probabilities add up.
    mass_m, mass_big = math.exp(-1.0), math.exp(-1.2) + math.exp(-2.0)
    both = reply({"m": -1.0, "M": -1.2, " M": -2.0})
    assert ae.preference(both, swapped=False, lenient=True) == pytest.approx(2 - mass_m / (mass_m + mass_big))
    # upstream ignores " M": p_m = e^-1 / (e^-1 + e^-1.2)
    assert ae.preference(both, swapped=False) == pytest.approx(2 - 1 / (1 + math.exp(-0.2)), abs=1e-12)


def test_preference_does_not_underflow():
    assert ae.preference(reply({"m": -2000.0, "M": -2001.0}), swapped=False) == pytest.approx(
        2 - 1 / (1 + math.exp(-1.0))
    )


def test_no_logprobs_raises():
    with pytest.raises(ae.NoLogprobsError, match="log-probabilities") as err:
        ae.preference(JudgeReply(text="M", top_logprobs=None), swapped=False)
    assert isinstance(err.value, FusekitError)


# ==================================================================================================
# Arena-Hard
# ==================================================================================================


def arena_question(bench: str = "arena-hard-v2.0", category: str = "hard_prompt") -> Question:
    return Question(
        bench=bench,
        id="uid-1",
        category=category,
        turns=["Write a haiku about {braces}."],
        baseline="o3-mini-2025-01-31",
        baseline_answer="BASELINE ANSWER",
    )


def test_prompt_for_and_token_budget():
    assert ah.prompt_for(arena_question("arena-hard-v0.1", "arena-hard-v0.1")) == "arena-hard-v0.1"
    assert ah.prompt_for(arena_question(category="hard_prompt")) == "arena-hard-v2-hard-prompt"
    assert ah.prompt_for(arena_question(category="creative_writing")) == "arena-hard-v2-creative"
    g1, g2 = ah.requests(arena_question("arena-hard-v0.1", "arena-hard-v0.1"), "MODEL", load_prompt("arena-hard-v0.1"))
    assert (g1.max_tokens, g2.max_tokens, g1.temperature) == (4096, 4096, 0.0)
    assert g1.prompt == "arena-hard-v0.1"
    g1, _ = ah.requests(arena_question(), "MODEL", load_prompt("arena-hard-v2-hard-prompt"))
    assert g1.max_tokens == 16000
    g1, _ = ah.requests(arena_question(), "MODEL", load_prompt("arena-hard-v2-creative"), max_tokens=32000)
    assert (g1.prompt, g1.max_tokens) == ("arena-hard-v2-creative", 32000)


def test_arena_games_swap_positions():
    g1, g2 = ah.requests(arena_question(), "MODEL ANSWER", load_prompt("arena-hard-v2-hard-prompt"))
    assert g1.messages[0]["role"] == "system" and g1.messages[0] == g2.messages[0]
    a_start, a_end = "<|The Start of Assistant A's Answer|>\n", "\n<|The End of Assistant A's Answer|>"
    b_start, b_end = "<|The Start of Assistant B's Answer|>\n", "\n<|The End of Assistant B's Answer|>"
    for game, (a, b) in ((g1, ("BASELINE ANSWER", "MODEL ANSWER")), (g2, ("MODEL ANSWER", "BASELINE ANSWER"))):
        text = user_text(game)
        assert text.startswith("<|User Prompt|>\nWrite a haiku about {braces}.\n\n")
        assert a_start + a + a_end in text
        assert b_start + b + b_end in text


def test_arena_override_with_an_unfit_prompt_is_a_user_error():
    with pytest.raises(FusekitError, match="ref_answer_1"):
        ah.requests(arena_question(), "MODEL", load_prompt("pair-math-v1"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My final verdict is tie: [[A=B]]", "A=B"),
        ("I considered [[A>>B]] but in the end [[B>A]]", "B>A"),
        ("[[A>B]] ... final [[B>>A]]", "B>>A"),
        ("final verdict: [[a>b]]", "A>B"),
        ("final verdict: [[B<A]]", "A>B"),
        ("final verdict: [[A<<B]]", "B>>A"),
        ("final verdict: [[A>>>B]]", None),
        ("My verdict: [A=B]", "A=B"),
        ("[[ A > B ]]", "A>B"),
        ("[[A>B]] and finally [[A>>>B]]", None),
        ("Assistant [A] is better", None),
        ("No label at all.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict_lenient(text, expected):
    for bench in ("arena-hard-v0.1", "arena-hard-v2.0"):
        assert ah.parse_verdict(text, bench, lenient=True) == expected


@pytest.mark.parametrize("bench", ["arena-hard-v0.1", "arena-hard-v2.0"])
@pytest.mark.parametrize("lenient", [False, True])
def test_parse_verdict_covers_every_label(bench, lenient):
    for label in VERDICT_LABELS:
        assert ah.parse_verdict(f"Reasoning... My final verdict is [[{label}]].", bench, lenient) == label


# ==================================================================================================
# MT-Bench
# ==================================================================================================

WRITING = Question(
    bench="mt-bench", id="81", category="writing", turns=["Write a blog post.", "Rewrite it as a poem."]
)
MATH = Question(
    bench="mt-bench",
    id="111",
    category="math",
    turns=["What is 2+2?", "And 3+3?"],
    references=["REF ONE: 4", "REF TWO: 6"],
)


def upstream(name: str) -> JudgePrompt:
    return mt.upstream_prompt(name)[0]


def single(question: Question, answers: list[str], turn: int):
    return mt.single_request(question, answers, turn, upstream(mt.single_prompt_for(question, turn)))


def test_single_turn_1_uses_the_plain_or_math_prompt():
    req = single(WRITING, ["POST", "POEM"], turn=1)
    assert (req.prompt, req.temperature, req.max_tokens) == ("single-v1", 0.0, 2048)
    assert req.prompt_version.startswith("upstream-")
    assert req.messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    text = user_text(req)
    assert "[Question]\nWrite a blog post.\n" in text
    assert "[The Start of Assistant's Answer]\nPOST\n[The End of Assistant's Answer]" in text
    assert "POEM" not in text and "Rewrite" not in text
    math_req = single(MATH, ["4", "6"], turn=1)
    assert math_req.prompt == "single-math-v1"
    assert "[The Start of Reference Answer]\nREF ONE: 4\n[The End of Reference Answer]" in user_text(math_req)
    assert "REF TWO" not in all_text(math_req)


def test_single_turn_2_shows_the_whole_conversation_with_references():
    req = single(MATH, ["ANSWER ONE", "ANSWER TWO"], turn=2)
    assert req.prompt == "single-math-v1-multi-turn"
    assert "[[rating]]" in req.messages[0]["content"]  # instructions live in the system message
    text = user_text(req)
    for piece in ("What is 2+2?", "And 3+3?", "ANSWER ONE", "ANSWER TWO", "REF ONE: 4", "REF TWO: 6"):
        assert piece in text
    conversation = text[text.index("<|The Start of Assistant A's Conversation with User|>") :]
    assert conversation.index("### User:\nWhat is 2+2?") < conversation.index("### Assistant A:\nANSWER ONE")
    assert conversation.index("### Assistant A:\nANSWER ONE") < conversation.index("### User:\nAnd 3+3?")
    assert conversation.index("### User:\nAnd 3+3?") < conversation.index("### Assistant A:\nANSWER TWO")
    assert conversation.rstrip().endswith("<|The End of Assistant A's Conversation with User|>")
    plain = single(WRITING, ["POST", "POEM"], turn=2)
    assert plain.prompt == "single-v1-multi-turn" and "Reference" not in all_text(plain)


def test_single_request_errors():
    with pytest.raises(ValueError, match="turns are 1 and 2"):
        single(WRITING, ["a", "b"], turn=3)
    with pytest.raises(ValueError, match="needs 2 answer"):
        single(WRITING, ["a"], turn=2)
    one_ref = replace(MATH, references=["REF ONE: 4"])
    with pytest.raises(FusekitError, match="ref_answer_2"):
        single(one_ref, ["a", "b"], turn=2)
    with pytest.raises(FusekitError, match="ref_answer_1"):
        mt.single_request(WRITING, ["a", "b"], 1, upstream("single-math-v1"))


def test_pair_requests_swap_positions():
    g1, g2 = mt.pair_requests(MATH, ["M1 T1", "M1 T2"], ["M2 T1", "M2 T2"], 1, upstream("pair-math-v1"))
    assert g1.prompt == g2.prompt == "pair-math-v1"
    for game, (a, b) in ((g1, ("M1 T1", "M2 T1")), (g2, ("M2 T1", "M1 T1"))):
        text = user_text(game)
        assert f"[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]" in text
        assert f"[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]" in text
        assert "REF ONE: 4" in text
    g1, g2 = mt.pair_requests(WRITING, ["M1 T1", "M1 T2"], ["M2 T1", "M2 T2"], 2, upstream("pair-v2-multi-turn"))
    assert g1.prompt == "pair-v2-multi-turn"
    for game, (a, b) in ((g1, ("M1", "M2")), (g2, ("M2", "M1"))):
        text = user_text(game)
        a_block = text[: text.index("<|The End of Assistant A's Conversation with User|>")]
        b_block = text[text.index("<|The Start of Assistant B's Conversation with User|>") :]
        assert f"### Assistant A:\n{a} T1" in a_block and f"### Assistant A:\n{a} T2" in a_block
        assert f"### Assistant B:\n{b} T1" in b_block and f"### Assistant B:\n{b} T2" in b_block
        assert "Rewrite it as a poem." in a_block and "Rewrite it as a poem." in b_block


def test_the_paraphrases_fill_the_same_slots_as_upstream():
    for name in mt.PROMPT_NAMES:
        assert set(load_prompt(name).placeholders) == set(upstream(name).placeholders), name


def test_upstream_prompt_refuses_unknown_names_and_unpinned_files(tmp_path):
    with pytest.raises(FusekitError, match="pair-v2-multi-turn"):
        mt.upstream_prompt("pair-v3")
    checkout = tmp_path / "fastchat" / "llm_judge" / "data"
    checkout.mkdir(parents=True)
    text = mt.upstream_prompt("pair-v2")[1].text
    (checkout / "judge_prompts.jsonl").write_text(text.replace("impartial", "partial", 1))
    with pytest.raises(FusekitError, match=mt.JUDGE_PROMPTS.sha256):
        mt.upstream_prompt("pair-v2", str(checkout / "mt_bench"))
    (checkout / "judge_prompts.jsonl").write_text(text)
    prompt, source = mt.upstream_prompt("single-v1", str(checkout / "mt_bench"))
    assert source.path == str(checkout / "judge_prompts.jsonl") and prompt.version == "upstream-fd283293406d"


@pytest.mark.parametrize(
    ("text", "expected", "lenient"),
    [
        ("Rating: [[7]]", 7.0, 7.0),
        ("Rating: [[8.5]]", 8.5, 8.5),
        ("Rating: [[10]]", 10.0, 10.0),
        ("Rating: [[ 6 ]]", None, 6.0),  # FastChat's pattern allows nothing else inside the brackets
        ("Rating: [[11]]", 11.0, None),  # kept as FastChat keeps it; lenient checks the 1-10 range
        ("Rating: [[0]]", 0.0, None),
        ("Rating: [[08]]", None, 8.0),  # a SyntaxError in FastChat's literal_eval
        ("Rating: [5]", 5.0, 5.0),
        ("Rating: [ 5 ]", None, 5.0),
        ("[[7]] but then [[3]]", 7.0, 7.0),
        ("On a scale [1] to [10] ... Rating: [[4]]", 4.0, 4.0),  # double brackets first
        ("On a scale [1] to [10] ... Rating: 4", 1.0, 1.0),
        ("No number here, [[rating]].", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_rating(text, expected, lenient):
    assert mt.parse_rating(text) == expected
    assert mt.parse_rating(text, lenient=True) == lenient


@pytest.mark.parametrize(
    ("text", "expected", "lenient"),
    [
        ("Assistant A is better. [[A]]", "A", "A"),
        ("[[B]]", "B", "B"),
        ("Both are equally good: [[C]]", "tie", "tie"),
        ("final verdict: [[ b ]]", None, "B"),
        ('Output "[[A]]" if A is better... my verdict: [[B]]', "A", "B"),  # FastChat: [[A]] anywhere first
        ("[[C]] or rather [[B]]", "B", "B"),
        ("[A] is better", None, None),
        ("[[D]]", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_pair(text, expected, lenient):
    assert mt.parse_pair(text) == expected
    assert mt.parse_pair(text, lenient=True) == lenient


def test_parse_pair_feeds_pair_game_winner():
    assert pair_game_winner(mt.parse_pair("[[A]]"), swapped=True) == "model_2"
    assert pair_game_winner(mt.parse_pair("[[C]]"), swapped=False) == "tie"
    assert pair_game_winner(mt.parse_pair("nothing"), swapped=False) == "error"
