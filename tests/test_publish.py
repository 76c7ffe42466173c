"""Publishing: dataset folders that round-trip through `datasets`, scrubbed cards, run inspection."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from huggingface_hub import DatasetCard  # noqa: E402

from cards.render import render_dataset_card, render_model_card, scrub, size_category  # noqa: E402
from fusedata.errors import FusekitError  # noqa: E402
from fusedata.publish import split_train_test, upload_tree, write_dataset  # noqa: E402
from fusedata.records import Prompt, Response, SamplingParams, Score  # noqa: E402
from fusedata.store import RunStore  # noqa: E402

HF_TOKEN = "hf_abcdefghijklmnopqrstuvwxyzABCD"
SK_TOKEN = "sk-proj-0123456789abcdefABCDEF"


def _sft(i: int, domain: str = "math") -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                         {"role": "assistant", "content": f"It is {2 * i}."}],
            "prompt_id": f"p{i}", "domain": domain, "method": "fusechat3", "source_dataset": "toy",
            "model": "m-a" if i % 2 else "m-b", "score": 0.5 + i / 10, "weight": 1.0,
            "verified": bool(i % 2), "meta": "{}"}


def _dpo(i: int, domain: str = "instruction") -> dict:
    return {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Say {i}."}],
            "chosen": [{"role": "assistant", "content": f"{i}"}],
            "rejected": [{"role": "assistant", "content": f"I will not say {i}."}],
            "prompt_id": f"q{i}", "domain": domain, "method": "fusechat3", "source_dataset": "toy",
            "chosen_model": "m-a", "rejected_model": "m-b", "score_chosen": 1.0 + i, "score_rejected": float(i),
            "chosen_verified": None, "rejected_verified": None, "margin": 1.0, "weight": 1.0, "meta": "{}"}


def _report() -> dict:
    return {"method": "fusechat3", "params": {}, "split": {"math": {"sft": 3, "dpo": 2}},
            "kept": {"sft": {"math": 3}, "dpo": {"instruction": 4}},
            "dropped": {"dpo": {"instruction": {"small_margin": 2, "no_rejected": 1}}},
            "responses_dropped": {"truncated": 5}}


def _card_info(**kw) -> dict:
    info = {
        "repo_id": "someone/fused-toy", "pretty_name": "Toy fusion data",
        "source_models": [{"name": "google/gemma-2-2b-it", "license": "gemma",
                           "sampling": {"temperature": 0.8, "top_p": 0.95}},
                          {"name": "Qwen/Qwen2.5-0.5B-Instruct", "license": "apache-2.0"}],
        "recipe": {"out": "/root/runs/fused-toy", "cache_dir": "/tmp/fusekit-cache/x",
                   "models": [{"name": "google/gemma-2-2b-it", "path": "/home/me/models/gemma"}],
                   "hub": {"token": HF_TOKEN}, "judge": {"api_key": SK_TOKEN},
                   "notes": f"pushed with {HF_TOKEN} and {SK_TOKEN} from /tmp/work"},
        "reward_model": "Skywork/Skywork-Reward-V2-Llama-3.1-8B",
        "reports": {"fusechat3": _report()},
    }
    info.update(kw)
    return info


@pytest.fixture()
def configs():
    sft = [_sft(i, "math" if i < 6 else "code") for i in range(10)]
    dpo = [_dpo(i) for i in range(8)]
    s_train, s_test = split_train_test(sft, 0.3, seed=1)
    d_train, d_test = split_train_test(dpo, 0.3, seed=1)
    assert s_test and d_test and s_train and d_train
    return {"sft": {"train": s_train, "test": s_test}, "dpo": {"train": d_train, "test": d_test}}


def test_split_is_deterministic_and_by_prompt():
    rows = [_sft(i) for i in range(50)]
    a = split_train_test(rows, 0.2, seed=3)
    b = split_train_test(list(reversed(rows)), 0.2, seed=3)
    assert {r["prompt_id"] for r in a[1]} == {r["prompt_id"] for r in b[1]}
    assert len(a[0]) + len(a[1]) == 50 and 2 <= len(a[1]) <= 20
    assert split_train_test(rows, 0.0)[1] == []
    # Rows without prompt_id split by their prompt messages: same prompt, same side.
    twins = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [], "rejected": []} for i in range(30)]
    assert split_train_test(twins, 0.5, 7) == split_train_test([dict(r) for r in twins], 0.5, 7)
    with pytest.raises(FusekitError):
        split_train_test(rows, 1.0)


def test_folder_round_trips_through_load_dataset(tmp_path, configs):
    from datasets import load_dataset

    folder = write_dataset(tmp_path / "ds", configs, card_info=_card_info())
    for name in ("sft", "dpo"):
        ds = load_dataset(str(folder), name, cache_dir=str(tmp_path / "hf-cache"))
        assert set(ds) == {"train", "test"}
        for split in ("train", "test"):
            assert ds[split].to_list() == configs[name][split]
    # Message lists stay nested lists of {role, content}.
    row = load_dataset(str(folder), "dpo", split="train", cache_dir=str(tmp_path / "hf-cache"))[0]
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert row["chosen"][0]["role"] == "assistant"
    # No temporary folders are left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "hf-cache"]


def test_rewrite_replaces_folder_and_refuses_foreign_one(tmp_path, configs):
    folder = write_dataset(tmp_path / "ds", configs, card_info=_card_info())
    only_sft = {"sft": configs["sft"]}
    write_dataset(folder, only_sft, card_info=_card_info())
    assert not (folder / "data" / "dpo").exists()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FusekitError):
        write_dataset(foreign, only_sft, card_info=_card_info())
    assert (foreign / "notes.txt").read_text() == "mine"


def test_wrpo_layout_round_trips(tmp_path):
    from datasets import load_dataset

    rows = [{"prompt": {"role": "user", "content": f"q{i}"},
             "chosen": [{"role": "assistant", "content": "ws"}, {"role": "assistant", "content": "wt"}],
             "rejected": [{"role": "assistant", "content": "l"}], "prompt_id": f"w{i}", "domain": "math",
             "method": "wrpo", "source_dataset": "toy", "chosen_models": ["a", "b"], "rejected_models": ["b"],
             "chosen_scores": [2.0, 1.5], "rejected_scores": [0.1]} for i in range(4)]
    folder = write_dataset(tmp_path / "w", {"wrpo": {"train": rows}}, card_info=_card_info())
    assert load_dataset(str(folder), "wrpo", split="train", cache_dir=str(tmp_path / "c")).to_list() == rows


def test_card_validates_and_licence_is_other(tmp_path, configs):
    folder = write_dataset(tmp_path / "ds", configs, card_info=_card_info())
    text = (folder / "README.md").read_text()
    card = DatasetCard(text)
    assert card.data.license == "other"
    assert card.data.task_categories == ["text-generation"]
    assert card.data.size_categories == ["n<1K"]
    assert {"synthetic", "model-fusion", "fusekit", "dpo", "sft"} <= set(card.data.tags)
    by_name = {c["config_name"]: c for c in card.data.configs}
    assert set(by_name) == {"sft", "dpo"}
    assert {f["split"] for f in by_name["dpo"]["data_files"]} == {"train", "test"}
    assert by_name["dpo"]["data_files"][0]["path"].startswith("data/dpo/")
    # Body: load snippet, source models with licences, kept/dropped reasons, samples, counts.
    assert 'load_dataset("someone/fused-toy", "sft")' in text
    assert "google/gemma-2-2b-it" in text and "| gemma |" in text
    assert "small_margin" in text and "truncated" in text
    assert "What is" in text and "score_chosen" in text
    assert "| `sft` | 4 | 0 | 6 |" in text  # rows per domain: code, instruction, math
    # Loading the card back from disk works too.
    assert DatasetCard.load(folder / "README.md").data.license == "other"


@pytest.mark.parametrize("licence", ["gemma", "llama3", None])
def test_licence_other_for_any_restricted_source(licence):
    models = [{"name": "a", "license": "apache-2.0"}, {"name": "b", "license": licence}]
    card = render_dataset_card(_card_info(source_models=models, splits={"sft": {"train": 3}}))
    assert card.data.license == "other"
    assert card.data.license_name


def test_licence_permissive_when_all_sources_are():
    models = [{"name": "a", "license": "apache-2.0"}, {"name": "b", "license": "MIT"}]
    card = render_dataset_card(_card_info(source_models=models, splits={"sft": {"train": 3}}))
    assert card.data.license == "apache-2.0"
    models = [{"name": "b", "license": "mit"}]
    assert render_dataset_card(_card_info(source_models=models, splits={"sft": {"train": 3}})).data.license == "mit"


def test_scrub_helper():
    got = scrub({"out": "/root/runs/x", "cache": "/tmp/abc/def.parquet", "token": "anything-at-all",
                 "hf_token": None, "list": ["see /home/u/x.txt now", "~/models/m", "file:///srv/data"],
                 "text": f"token {HF_TOKEN}; key {SK_TOKEN}; hf_xxx sk-xxx",
                 "keep": "https://huggingface.co/datasets/a/b and kept/dropped 1/2 data/sft/train-*",
                 "frac": "(a+b)/2", "n": 3, "win": "C:\\Users\\me\\x", "max_tokens": 512, "authors": "us",
                 "apiKey": "x1", "HF_TOKEN": "x2", "openai-api-key": "x3"})
    assert got["out"] == "<local-path>" and got["cache"] == "<local-path>"
    assert got["token"] == "<redacted>" and got["hf_token"] is None
    assert got["list"] == ["see <local-path> now", "<local-path>", "<local-path>"]
    assert "hf_" not in got["text"] and "sk-" not in got["text"]
    assert got["keep"] == "https://huggingface.co/datasets/a/b and kept/dropped 1/2 data/sft/train-*"
    assert got["n"] == 3 and got["win"] == "<local-path>"
    assert got["frac"] == "(a+b)/2"
    assert got["max_tokens"] == 512 and got["authors"] == "us"
    assert got["apiKey"] == got["HF_TOKEN"] == got["openai-api-key"] == "<redacted>"


def test_card_never_holds_tokens_or_local_paths(tmp_path, configs):
    rows = dict(configs)
    leaky = dict(configs["sft"]["train"][0])
    leaky["messages"] = [{"role": "user", "content": "read /root/secret.txt"},
                         {"role": "assistant", "content": f"use {HF_TOKEN}"}]
    rows["sft"] = {"train": [leaky, *configs["sft"]["train"][1:]], "test": configs["sft"]["test"]}
    info = _card_info(description="built in /tmp/build-123 with sk-xxxxxxxx and hf_xxxx")
    folder = write_dataset(tmp_path / "ds", rows, card_info=info)
    text = (folder / "README.md").read_text()
    for bad in ("/root", "/tmp", "/home", HF_TOKEN, SK_TOKEN, "hf_x", "sk-x", "anything"):
        assert bad not in text, bad
    assert "<redacted>" in text and "<local-path>" in text
    # The recipe is still there, minus the secrets.
    assert "cache_dir" in text and "google/gemma-2-2b-it" in text


def test_upload_tree_lists_exactly_the_push(tmp_path, configs):
    folder = write_dataset(tmp_path / "ds", configs, card_info=_card_info())
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.lock").write_text("")
    (folder / "data" / "sft" / "train.parquet.tmp").write_text("")
    (folder / ".DS_Store").write_text("")
    assert upload_tree(folder) == [
        "README.md",
        "data/dpo/test-00000-of-00001.parquet", "data/dpo/train-00000-of-00001.parquet",
        "data/sft/test-00000-of-00001.parquet", "data/sft/train-00000-of-00001.parquet",
    ]


def test_size_categories():
    assert size_category(0) == "n<1K" and size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K" and size_category(250_000) == "100K<n<1M"
    assert size_category(5 * 10**9) == "1B<n<10B"


def test_model_card_renders():
    card = render_model_card({"model_id": "someone/fused-1b", "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
                              "method": "WRPO", "datasets": ["someone/fused-toy"],
                              "hyperparameters": {"lr": 5e-7, "beta": 0.01, "output_dir": "/root/out"},
                              "metrics": {"eval/loss": 0.42}, "source_models": [{"name": "a", "license": "mit"}],
                              "recipe": {"token": HF_TOKEN}})
    text = str(card)
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B-Instruct" and card.data.license == "mit"
    assert "WRPO" in text and "beta" in text and "0.42" in text and "someone/fused-toy" in text
    assert "/root" not in text and HF_TOKEN not in text


# -- inspect ------------------------------------------------------------------------------

def _store(tmp_path) -> RunStore:
    """3 math prompts, 1 code prompt; models a, b, c; rewards chosen so shares are known."""
    ph = SamplingParams().hash()
    store = RunStore(tmp_path / "run")
    prompts = [Prompt.make("math", "toy", [{"role": "user", "content": f"m{i}"}], gold=str(i)) for i in range(3)]
    prompts.append(Prompt.make("code", "toy", [{"role": "user", "content": "c0"}]))
    store.put_prompts(prompts)
    rewards = {  # prompt index -> model -> reward
        0: {"a": 2.0, "b": 1.0, "c": 0.0},
        1: {"a": 0.5, "b": 3.0, "c": 1.0},
        2: {"a": 1.0, "b": 1.0, "c": -1.0},  # tie a/b
        3: {"a": 0.0, "b": 0.1, "c": 0.9},
    }
    resps, scores = [], []
    for i, per in rewards.items():
        pid = prompts[i].id
        for m, r in per.items():
            resps.append(Response(pid, m, ph, 0, f"answer {m} {i}", "stop"))
            scores.append(Score(pid, m, ph, 0, "rm:toy", r))
    resps.append(Response(prompts[0].id, "c", ph, 1, None, error="timeout"))
    resps.append(Response(prompts[0].id, "c", ph, 2, "cut", "length"))
    store.put_responses(resps)
    store.put_scores(scores)
    return store


def test_inspect_win_shares_and_plot(tmp_path):
    from fusedata.inspect import examples, inspect_run, plot_inspect

    with _store(tmp_path) as store:
        stats = inspect_run(store)
        ex = examples(store, 2)
    assert stats["prompts"] == {"code": 1, "math": 3}
    assert stats["responses"]["math"] == {"a": 3, "b": 3, "c": 3}
    assert stats["failures"] == {"c": 1} and stats["dropped"] == {"error": 1, "truncated": 1}
    math = stats["win_share"]["math"]
    assert math["prompts"] == 3
    assert math["shares"] == pytest.approx({"a": 1.5 / 3, "b": 1.5 / 3, "c": 0.0})
    assert stats["win_share"]["code"]["shares"] == pytest.approx({"a": 0.0, "b": 0.0, "c": 1.0})
    assert stats["win_share"]["all"]["shares"] == pytest.approx({"a": 0.375, "b": 0.375, "c": 0.25})
    assert sum(stats["win_share"]["all"]["shares"].values()) == pytest.approx(1.0)
    h = stats["rewards"]["math"]
    assert h["n"] == 9 and sum(sum(c) for c in h["counts"].values()) == 9
    assert h["min"] == -1.0 and h["max"] == 3.0
    png = plot_inspect(stats, tmp_path / "inspect.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(ex) == 2 and {e["domain"] for e in ex} == {"math", "code"}
    for e in ex:
        rs = [r["reward"] for r in e["responses"]]
        assert rs == sorted(rs, reverse=True) and e["prompt"]
