"""Prompt sources: each FuseChat-3.0 mapping on a local file shaped like the real dataset,
the LeetCode/sc2 test builders executed against right and wrong solutions, and the
embedded sets checked item by item. No network: Hub ids are never fetched here."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import pytest

from fusedata.errors import FusekitError
from fusedata.records import Prompt, prompt_id_for
from fusedata.sources import MATH_INSTRUCTION, SOURCES, load_source, parse_leetcode, sc2_tests

FIXTURES = Path(__file__).parent / "fixtures" / "sources"


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def run(code: str, tests: str) -> None:
    """Execute trusted code then its tests in one namespace (raises AssertionError on failure)."""
    namespace: dict = {}
    exec(code, namespace)
    exec(tests, namespace)


def only_user(p: Prompt) -> str:
    assert [m["role"] for m in p.messages] == ["user"]
    return p.messages[0]["content"]


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_eight_hub_sources_and_four_embedded_sets():
    hub = {
        "ultrafeedback": ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs", "instruction"),
        "magpie-pro-dpo": ("Magpie-Align/Magpie-Pro-DPO-100K-v0.1", "train", "instruction"),
        "helpsteer2": ("nvidia/HelpSteer2", "train", "instruction"),
        "openmathinstruct2": ("nvidia/OpenMathInstruct-2", "train_1M", "math"),
        "leetcode": ("greengerong/leetcode", "train", "code"),
        "sc2-exec": ("bigcode/self-oss-instruct-sc2-exec-filter-50k", "train", "code"),
        "alpaca-gpt4-zh": ("llamafactory/alpaca_gpt4_zh", "train", "zh"),
        "magpie-qwen2-pro-zh": ("Magpie-Align/Magpie-Qwen2-Pro-200K-Chinese", "train", "zh"),
    }
    for name, (hub_id, split, domain) in hub.items():
        spec = SOURCES[name]
        assert (spec.hub_id, spec.split, spec.domain, spec.kind) == (hub_id, split, domain, "hub")
    embedded = {
        "embedded:math": "math",
        "embedded:code": "code",
        "embedded:instruction": "instruction",
        "embedded:zh": "zh",
    }
    for name, domain in embedded.items():
        assert (SOURCES[name].domain, SOURCES[name].kind, SOURCES[name].hub_id) == (domain, "embedded", None)
    assert set(SOURCES) == set(hub) | set(embedded)
    assert SOURCES["openmathinstruct2"].fields == ("problem", "expected_answer")
    assert SOURCES["leetcode"].fields == ("content", "python")


def test_unknown_source_names_the_known_ones():
    with pytest.raises(FusekitError) as err:
        load_source("ultrafeedbak")
    msg = str(err.value)
    assert "unknown prompt source 'ultrafeedbak'" in msg
    for name in ("ultrafeedback", "leetcode", "embedded:math", "magpie-qwen2-pro-zh"):
        assert name in msg


def test_hub_sources_call_load_dataset_with_hub_id_and_default_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, **kw):
        calls.append((path, kw))
        return datasets.Dataset.from_list([{"problem": "What is 2 + 2?", "expected_answer": "4"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    [p] = load_source("openmathinstruct2")
    assert calls == [("nvidia/OpenMathInstruct-2", {"split": "train_1M"})]
    assert p.gold == "4" and p.domain == "math"
    load_source("openmathinstruct2", split="train")
    assert calls[-1] == ("nvidia/OpenMathInstruct-2", {"split": "train"})


def test_hub_load_failure_is_one_clear_error(monkeypatch):
    import datasets

    def unreachable(path, **kw):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    where = r"source 'leetcode' \(hub greengerong/leetcode, split train\): could not load"
    with pytest.raises(FusekitError, match=where):
        load_source("leetcode")


# --------------------------------------------------------------------------- instruction sources


def test_ultrafeedback_maps_prompt_and_dedups_by_normalised_text():
    prompts = load_source("ultrafeedback", data_files=fixture("ultrafeedback.jsonl"))
    assert [only_user(p) for p in prompts] == [
        "How do I boil an egg?",
        "Name a planet with rings.",
        "Write a limerick about a frog.",
    ]
    first = prompts[0]
    assert first.domain == "instruction" and first.source == "ultrafeedback"
    assert first.id == prompt_id_for([{"role": "user", "content": "How do I boil an egg?"}])
    assert first.gold is None and first.tests is None
    assert first.meta == {"source_row": 0, "source_id": "a1f0"}
    assert prompts[2].meta == {"source_row": 3, "source_id": "c3d2"}  # row 2 was the duplicate


def test_limit_applies_after_dedup_and_keeps_file_order():
    path = fixture("ultrafeedback.jsonl")
    full = load_source("ultrafeedback", data_files=path)
    assert load_source("ultrafeedback", data_files=path, limit=2) == full[:2]
    assert [p.meta["source_row"] for p in load_source("ultrafeedback", data_files=path, limit=3)] == [0, 1, 3]
    assert load_source("ultrafeedback", data_files=path, limit=0) == []
    assert load_source("ultrafeedback", data_files=path, limit=99) == full
    with pytest.raises(FusekitError, match="limit must be a non-negative integer"):
        load_source("ultrafeedback", data_files=path, limit=-1)


def test_magpie_pro_dpo_maps_instruction_and_uuid():
    prompts = load_source("magpie-pro-dpo", data_files=fixture("magpie_pro_dpo.jsonl"))
    assert [only_user(p) for p in prompts] == [
        "What are the benefits of keeping a journal?",
        "Explain the difference between weather and climate.",
    ]
    assert prompts[0].meta == {
        "source_row": 0,
        "source_id": "5e1c-01",
        "task_category": "Advice seeking",
        "difficulty": "easy",
    }
    assert all(p.domain == "instruction" for p in prompts)


def test_parquet_files_use_the_same_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in Path(fixture("magpie_pro_dpo.jsonl")).read_text().splitlines()]
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    from_parquet = load_source("magpie-pro-dpo", data_files=str(path))
    assert from_parquet == load_source("magpie-pro-dpo", data_files=fixture("magpie_pro_dpo.jsonl"))


def test_helpsteer2_dedups_repeated_prompts_and_splits_multi_turn():
    prompts = load_source("helpsteer2", data_files=fixture("helpsteer2.jsonl"))
    assert len(prompts) == 3  # six rows, two responses per prompt
    assert only_user(prompts[0]) == "Summarise the plot of a heist movie in two sentences."
    assert only_user(prompts[1]) == "What is a good name for a bakery?"
    assert prompts[2].messages == [
        {"role": "user", "content": "I want to learn chess."},
        {"role": "assistant", "content": "Great! Start with how the pieces move."},
        {"role": "user", "content": "Which piece should I learn first?"},
    ]
    assert [p.meta["source_row"] for p in prompts] == [0, 2, 4]


# --------------------------------------------------------------------------- maths


def test_openmathinstruct2_maps_problem_gold_and_boxed_instruction():
    prompts = load_source("openmathinstruct2", data_files=fixture("openmathinstruct2.jsonl"))
    assert len(prompts) == 3  # the first problem appears twice
    first = prompts[0]
    assert first.domain == "math"
    assert only_user(first) == (
        "What is the value of $\\frac{1}{2}+\\frac{1}{4}$?\n\n"
        "Please reason step by step, and put your final answer within \\boxed{}."
    )
    assert first.gold == "\\frac{3}{4}"
    assert first.meta == {"source_row": 0, "problem_source": "augmented_math"}
    assert [p.gold for p in prompts] == ["\\frac{3}{4}", "6", "4"]
    assert prompts[1].meta["problem_source"] == "augmented_gsm8k"


def test_missing_field_names_source_file_field_and_found_fields():
    path = fixture("openmathinstruct2_no_answer.jsonl")
    with pytest.raises(FusekitError) as err:
        load_source("openmathinstruct2", data_files=path)
    assert str(err.value) == (
        f"source 'openmathinstruct2' (file {path}): missing field 'expected_answer'; "
        "found fields: problem, generated_solution, problem_source"
    )


def test_wrong_type_missing_file_and_bad_extension_are_fusekit_errors(tmp_path):
    bad = tmp_path / "uf.jsonl"
    bad.write_text(json.dumps({"prompt": ["not", "text"], "prompt_id": "x"}) + "\n")
    with pytest.raises(FusekitError, match=r"row 0: field 'prompt' should be a string, got list"):
        load_source("ultrafeedback", data_files=str(bad))
    with pytest.raises(FusekitError, match="data file not found"):
        load_source("ultrafeedback", data_files=str(tmp_path / "nope.jsonl"))
    csv = tmp_path / "uf.csv"
    csv.write_text("prompt\nhi\n")
    with pytest.raises(FusekitError, match=r"expected a \.json, \.jsonl or \.parquet file"):
        load_source("ultrafeedback", data_files=str(csv))


# --------------------------------------------------------------------------- LeetCode

# Written for this test in the dataset's markdown shape: two examples, escaped brackets.
TWO_SUM_CONTENT = (
    "Given an array `nums` and an integer `target`, return the indices of the two numbers that add up "
    "to `target`.\n\n**Example 1:**\n\n**Input:** nums = \\[2,7,11,15\\], target = 9\n**Output:** \\[0,1\\]\n"
    "**Explanation:** nums\\[0\\] + nums\\[1\\] == 9.\n\n**Example 2:**\n\n**Input:** nums = \\[3,2,4\\], "
    "target = 6\n**Output:** \\[1,2\\]\n\n**Constraints:**\n\n*   `2 <= nums.length <= 104`"
)
TWO_SUM_PYTHON = (
    "```python\ndef twoSum(nums, target):\n    where = {}\n    for i, x in enumerate(nums):\n"
    "        if target - x in where:\n            return [where[target - x], i]\n        where[x] = i\n```\n"
    "explanation\nOne pass with a dictionary."
)
TWO_SUM_RIGHT = """
class Solution:
    def twoSum(self, nums, target):
        for i in range(len(nums)):
            for j in range(i + 1, len(nums)):
                if nums[i] + nums[j] == target:
                    return [i, j]
"""
TWO_SUM_WRONG = """
class Solution:
    def twoSum(self, nums, target):
        return [0, len(nums) - 1]
"""


def test_leetcode_examples_become_asserts_that_pass_right_and_fail_wrong():
    task = parse_leetcode(TWO_SUM_CONTENT, TWO_SUM_PYTHON)
    assert not isinstance(task, str), task
    assert task.method == "twoSum" and task.params == ["nums", "target"] and task.n_examples == 2
    assert task.tests == (
        "assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]\n"
        "assert Solution().twoSum([3, 2, 4], 6) == [1, 2]"
    )
    run(TWO_SUM_RIGHT, task.tests)
    with pytest.raises(AssertionError):
        run(TWO_SUM_WRONG, task.tests)


LEETCODE_RIGHT = {
    "pairWithTarget": """
class Solution:
    def pairWithTarget(self, nums, target):
        for j in range(len(nums)):
            for i in range(j):
                if nums[i] + nums[j] == target:
                    return [j, i]   # reversed order: allowed, the problem says any order
""",
    "reverseWords": """
class Solution:
    def reverseWords(self, s):
        return ' '.join(s.split()[::-1])
""",
    "meanOfArray": """
class Solution:
    def meanOfArray(self, nums):
        return sum(nums) / len(nums) + 1e-9
""",
    "containsRepeat": """
class Solution:
    def containsRepeat(self, nums):
        return any(nums.count(x) > 1 for x in nums)
""",
}
LEETCODE_WRONG = {
    "pairWithTarget": "class Solution:\n    def pairWithTarget(self, nums, target):\n        return [0, 1]\n",
    "reverseWords": "class Solution:\n    def reverseWords(self, s):\n        return s\n",
    "meanOfArray": "class Solution:\n    def meanOfArray(self, nums):\n        return sum(nums) // len(nums)\n",
    "containsRepeat": "class Solution:\n    def containsRepeat(self, nums):\n        return False\n",
}


def test_leetcode_source_builds_solution_prompts_tests_and_meta(caplog):
    with caplog.at_level(logging.WARNING, logger="fusedata.sources"):
        prompts = load_source("leetcode", data_files=fixture("leetcode.jsonl"))
    assert [p.meta["slug"] for p in prompts] == [
        "pair-with-target",
        "reverse-word-order",
        "mean-of-array",
        "contains-repeat",
    ]
    first = prompts[0]
    assert first.domain == "code" and first.gold is None
    assert first.meta == {
        "source_row": 0,
        "source_id": 1,
        "slug": "pair-with-target",
        "title": "Pair With Target",
        "difficulty": "Easy",
        "entry_point": "pairWithTarget",
    }
    text = only_user(first)
    assert "**Input:** nums = [3,8,2,6], target = 10" in text  # escapes undone for the model too
    assert "\\[" not in text
    assert "```python\nclass Solution:\n    def pairWithTarget(self, nums, target):\n```" in text
    assert text.endswith("Give your complete solution as a single fenced ```python code block.")
    assert first.tests == (
        "assert sorted(Solution().pairWithTarget([3, 8, 2, 6], 10)) == sorted([1, 2])\n"
        "assert sorted(Solution().pairWithTarget([5, 5], 10)) == sorted([0, 1])"
    )
    # The export's trailing space inside string literals is dropped; floats get a tolerance;
    # true/false become booleans; the helper `total` is not mistaken for the entry point.
    assert prompts[1].tests.splitlines()[1] == "assert Solution().reverseWords('  hi there') == 'there hi'"
    assert prompts[2].meta["entry_point"] == "meanOfArray"
    assert "<= 1e-05" in prompts[2].tests
    assert prompts[3].tests.splitlines()[0] == "assert Solution().containsRepeat([1, 2, 3, 1]) == True"
    for p in prompts:
        run(LEETCODE_RIGHT[p.meta["entry_point"]], p.tests)
        with pytest.raises(AssertionError):
            run(LEETCODE_WRONG[p.meta["entry_point"]], p.tests)
    # The design problem and the linked-list problem have no usable examples: reported, skipped.
    report = [r.getMessage() for r in caplog.records]
    assert any(
        "source 'leetcode': skipped 2 of 6 rows read" in m
        and "no **Input:**/**Output:** examples (rows 4)" in m
        and "needs ListNode/TreeNode inputs (rows 5)" in m
        for m in report
    ), report


@pytest.mark.parametrize(
    "content, python, reason",
    [
        ("No examples at all.", "def f(x):\n    return x", "no **Input:**/**Output:** examples"),
        ("**Input:** nums = \\[1,2\\]\n**Output:** 2, nums = \\[1,\\_\\]", "def f(nums):\n    return 1",
         "examples are not Python literals"),
        ("**Input:** a = 1, b = 2\n**Output:** 3", "def f(a):\n    return a",
         "no function taking 2 arguments in the python solution"),
        ("Do not return anything, modify nums in-place instead.\n\n**Input:** nums = \\[1\\]\n**Output:** \\[1\\]",
         "def f(nums):\n    pass", "modifies its input in place"),
    ],
)
def test_leetcode_unparseable_problems_get_no_tests(content, python, reason):
    assert parse_leetcode(content, python) == reason


def test_leetcode_entry_point_skips_helpers_and_handles_solution_classes():
    from fusedata.sources.hub import leetcode_entry_point

    plain = (
        "```python\ndef dfs(i, seen):\n    return dfs(i - 1, seen) if i else 0\n\n"
        "def countPaths(n, edges):\n    return dfs(n, set())\n```\nexplanation\nA Node-free DFS."
    )
    assert leetcode_entry_point(plain, 2) == "countPaths"  # dfs also takes 2 but is a helper
    recursive = "```python\ndef climb(n, memo={}):\n    return 1 if n < 2 else climb(n - 1) + climb(n - 2)\n```"
    assert leetcode_entry_point(recursive, 1) == "climb"  # calling itself does not make it a helper
    klass = (
        "class Solution:\n    def _norm(self, s):\n        return s\n    def helper(self, s):\n        return s\n"
        "    def solve(self, s):\n        return self.helper(s)\n"
    )
    assert leetcode_entry_point(klass, 1) == "solve"
    assert leetcode_entry_point("def f(:\n", 1) is None


def test_helpsteer2_turn_markers_fall_back_to_one_message_when_malformed():
    from fusedata.sources.hub import helpsteer2_messages

    assert helpsteer2_messages("plain question") == [{"role": "user", "content": "plain question"}]
    ends_with_assistant = "Hi\n<extra_id_1>Assistant\nHello!"
    assert helpsteer2_messages(ends_with_assistant) == [{"role": "user", "content": ends_with_assistant}]


# --------------------------------------------------------------------------- sc2


def test_sc2_exec_takes_instruction_and_reference_asserts():
    prompts = load_source("sc2-exec", data_files=fixture("sc2_exec.jsonl"))
    assert [p.meta["source_id"] for p in prompts] == [101, 102, 104]  # 103 has no asserts, 105 repeats 101
    clamp, upper, isqrt = prompts
    assert only_user(clamp) == (
        "Write a Python function `clamp(x, lo, hi)` that limits `x` to the range [lo, hi].\n\n"
        "The tests call `clamp`, so your code must define it with exactly that name.\n\n"
        "Give your complete solution as a single fenced ```python code block."
    )
    assert clamp.tests == (
        "assert clamp(5, 0, 10) == 5\nassert clamp(-3, 0, 10) == 0\nassert clamp(\n    42, 0, 10\n) == 10"
    )
    assert clamp.meta == {"source_row": 0, "source_id": 101, "entry_point": "clamp"}
    # The [Tests] block re-defined the solution: that definition is not part of the tests.
    assert upper.tests == "assert count_upper('HeLLo') == 3\nassert count_upper('') == 0"
    assert isqrt.tests == "values = [1, 4, 9, 10]\nassert [int_sqrt(v) for v in values] == [1, 2, 3, 3]"
    assert isqrt.meta["entry_point"] == "int_sqrt"
    run("def clamp(x, lo, hi):\n    return min(max(x, lo), hi)", clamp.tests)
    run("def count_upper(s):\n    return len([c for c in s if 'A' <= c <= 'Z'])", upper.tests)
    run("def int_sqrt(n):\n    return int(n ** 0.5)", isqrt.tests)
    with pytest.raises(AssertionError):
        run("def clamp(x, lo, hi):\n    return x", clamp.tests)
    with pytest.raises(NameError):  # the tests alone define nothing: a renamed function fails
        run("def count_capitals(s):\n    return 0", upper.tests)


def test_sc2_tests_returns_none_without_asserts():
    assert sc2_tests("```python\ndef f():\n    return 1\n```") is None
    assert sc2_tests("no code here") is None
    broken = sc2_tests("```python\nassert f(1) == 1\nassert f(2) == (\n```")  # not parseable: plain assert lines
    assert broken is not None and broken.tests == "assert f(1) == 1" and broken.entry_point is None


# --------------------------------------------------------------------------- Chinese


def test_alpaca_gpt4_zh_joins_instruction_and_input_from_json_array():
    prompts = load_source("alpaca-gpt4-zh", data_files=fixture("alpaca_gpt4_zh.json"))
    assert [only_user(p) for p in prompts] == [
        "给出三个保持健康的小建议。",
        "把下面的句子翻译成英文。\n\n今天天气很好。",
    ]
    assert all(p.domain == "zh" for p in prompts)
    assert [p.meta for p in prompts] == [{"source_row": 0}, {"source_row": 1}]


def test_magpie_qwen2_pro_zh_maps_instruction_and_uuid():
    path = fixture("magpie_qwen2_pro_zh.jsonl")
    prompts = load_source("magpie-qwen2-pro-zh", data_files=path, limit=5)
    assert [only_user(p) for p in prompts] == ["请介绍一下太阳系的八大行星。", "帮我写一封请假邮件。"]
    assert prompts[1].meta == {
        "source_row": 1,
        "source_id": "9a7b-02",
        "task_category": "Editing",
        "difficulty": "easy",
    }
    assert load_source("magpie-qwen2-pro-zh", data_files=path, limit=1) == prompts[:1]


# --------------------------------------------------------------------------- embedded sets


@pytest.mark.parametrize("name", ["embedded:math", "embedded:code", "embedded:instruction", "embedded:zh"])
def test_embedded_sets_load_offline_with_unique_ids(name, monkeypatch):
    import datasets

    def no_network(*a, **kw):
        raise AssertionError("embedded sets must not go through datasets.load_dataset")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    prompts = load_source(name)
    assert len(prompts) >= 30
    assert all(p.domain == SOURCES[name].domain and p.source == name for p in prompts)
    source_ids = [p.meta["source_id"] for p in prompts]
    assert len(set(source_ids)) == len(source_ids)
    assert [p.meta["source_row"] for p in prompts] == list(range(len(prompts)))  # nothing deduplicated away
    assert len({p.id for p in prompts}) == len(prompts)


# Every gold answer recomputed here.
MATH_CHECK = {
    "math-01": 7 + 5, "math-02": 15 - 8, "math-03": 6 * 7, "math-04": Fraction(56, 8), "math-05": 3 * 4,
    "math-06": 9 - 4, "math-07": Fraction(1, 2), "math-08": Fraction(1, 4), "math-09": Fraction(10, 100) * 30,
    "math-10": 2 * 6, "math-11": 9 ** 2, "math-12": 8, "math-13": 100 - 37, "math-14": 3 + 4 * 2,
    "math-15": (3 + 4) * 2, "math-16": 60 * 3, "math-17": Fraction(24, 4), "math-18": 2 ** 5,
    "math-19": Fraction(1, 3) + Fraction(1, 3), "math-20": Fraction(1, 2) + Fraction(1, 4), "math-21": 5 * 3,
    "math-22": 4 * 4, "math-23": Fraction(3, 4) * 20, "math-24": 12 * 5, "math-25": Fraction(1000, 10),
    "math-26": 10 - 3, "math-27": Fraction(18, 2), "math-28": 17 % 5, "math-29": 20 - Fraction(25, 100) * 20,
    "math-30": Fraction(4 + 6 + 8, 3), "math-31": 2 * 60, "math-32": 11 * 11, "math-33": Fraction(3, 3 + 5),
    "math-34": -4 + 9, "math-35": 7 - 10, "math-36": Fraction(5, 2) * 4, "math-37": 1 - Fraction(2, 8),
    "math-38": max(Fraction(3, 10), Fraction(25, 100)),
}


def test_embedded_math_gold_answers_are_right():
    prompts = load_source("embedded:math")
    assert {p.meta["source_id"] for p in prompts} == set(MATH_CHECK)
    for p in prompts:
        assert p.gold, p.meta
        assert Fraction(p.gold) == MATH_CHECK[p.meta["source_id"]], (p.meta["source_id"], p.gold)
        assert only_user(p).endswith("\n\n" + MATH_INSTRUCTION)
    assert {p.gold for p in prompts} >= {"12", "1/2", "0.25", "3"}


# Trusted reference solutions, kept here rather than in the data.
CODE_REFERENCE = {
    "add": "def add(a, b):\n    return a + b",
    "subtract": "def subtract(a, b):\n    return a - b",
    "is_even": "def is_even(n):\n    return n % 2 == 0",
    "reverse_string": "def reverse_string(s):\n    return s[::-1]",
    "max_of_list": "def max_of_list(nums):\n    return max(nums)",
    "count_vowels": "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
    "factorial": "import math\ndef factorial(n):\n    return math.factorial(n)",
    "fibonacci": "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "is_palindrome": "def is_palindrome(s):\n    return s == s[::-1]",
    "sum_list": "def sum_list(nums):\n    return sum(nums)",
    "square": "def square(n):\n    return n * n",
    "celsius_to_fahrenheit": "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32",
    "count_words": "def count_words(s):\n    return len(s.split())",
    "first_char": "def first_char(s):\n    return s[:1]",
    "min_of_list": "def min_of_list(nums):\n    return min(nums)",
    "is_prime": "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))",
    "absolute_value": "def absolute_value(n):\n    return abs(n)",
    "to_upper": "def to_upper(s):\n    return s.upper()",
    "list_length": "def list_length(items):\n    return len(items)",
    "average": "def average(nums):\n    return sum(nums) / len(nums)",
    "count_occurrences": "def count_occurrences(items, x):\n    return items.count(x)",
    "remove_duplicates": "def remove_duplicates(items):\n    return list(dict.fromkeys(items))",
    "is_positive": "def is_positive(n):\n    return n > 0",
    "last_element": "def last_element(items):\n    return items[-1]",
    "double_list": "def double_list(nums):\n    return [2 * x for x in nums]",
    "filter_even": "def filter_even(nums):\n    return [x for x in nums if x % 2 == 0]",
    "join_words": "def join_words(words):\n    return ' '.join(words)",
    "gcd": "import math\ndef gcd(a, b):\n    return math.gcd(a, b)",
    "is_leap_year": "def is_leap_year(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
    "capitalize_first": "def capitalize_first(s):\n    return s[:1].upper() + s[1:]",
    "sum_of_digits": "def sum_of_digits(n):\n    return sum(int(d) for d in str(n))",
    "count_char": "def count_char(s, c):\n    return s.count(c)",
    "contains": "def contains(items, x):\n    return x in items",
    "fizzbuzz": (
        "def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n        return 'Fizz'\n"
        "    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)"
    ),
    "second_largest": "def second_largest(nums):\n    return sorted(set(nums))[-2]",
    "is_sorted": "def is_sorted(nums):\n    return all(a <= b for a, b in zip(nums, nums[1:]))",
}


def test_embedded_code_tests_pass_the_reference_and_reject_a_stub():
    prompts = load_source("embedded:code")
    assert {p.meta["entry_point"] for p in prompts} == set(CODE_REFERENCE)
    for p in prompts:
        entry = p.meta["entry_point"]
        lines = p.tests.splitlines()
        assert 3 <= len(lines) <= 5 and all(line.startswith(f"assert {entry}(") for line in lines), p.tests
        text = only_user(p)
        assert f"`{entry}(" in text and text.endswith("single fenced ```python code block.")
        run(CODE_REFERENCE[entry], p.tests)
        with pytest.raises(AssertionError):
            run(f"def {entry}(*args):\n    return None", p.tests)


def test_embedded_instruction_and_zh_prompts():
    english = load_source("embedded:instruction")
    chinese = load_source("embedded:zh")
    assert only_user(english[0]) == "Write a haiku about rain."
    assert english[0].meta == {"source_row": 0, "source_id": "instruction-01"}
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in only_user(p)) for p in chinese)


def test_embedded_source_reads_a_local_jsonl_with_the_same_fields(tmp_path):
    path = tmp_path / "my_math.jsonl"
    path.write_text(json.dumps({"id": "q1", "question": "What is 1 + 1?", "answer": "2"}) + "\n")
    [p] = load_source("embedded:math", data_files=str(path))
    assert p.gold == "2" and p.meta == {"source_row": 0, "source_id": "q1"}
    path.write_text(json.dumps({"id": "q1", "question": "What is 1 + 1?"}) + "\n")
    with pytest.raises(FusekitError) as err:
        load_source("embedded:math", data_files=str(path))
    assert str(err.value) == f"source 'embedded:math' (file {path}): missing field 'answer'; found fields: id, question"
