"""The whole `fusedata build` on tiny models through the CLI: generate → score → pairs → dataset
folder + card, `fusedata pairs --method wrpo` with the target's own samples, `inspect`, and
`push` (dry run, then to the loopback fake Hub); two runs' folders loaded side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from tests.hub_server import FakeHub
from tests.test_build import rows, run_cli, write_recipe


def tiny_recipe(path: Path, tiny_llama: Path, tiny_rm: Path, prompts: int) -> Path:
    models = [
        {"name": "tiny-a", "model": str(tiny_llama), "sampling": {"max_tokens": 8, "n": 3}},
        {"name": "tiny-b", "model": str(tiny_llama), "sampling": {"max_tokens": 8, "n": 3, "seed": 5}},
    ]
    return write_recipe(
        path, models=models,
        domains={"instruction": {"sources": ["embedded:instruction"], "limit": prompts}},
        target={"name": "tiny-target", "model": str(tiny_llama), "sampling": {"max_tokens": 8, "n": 3, "seed": 9}},
        scoring={"reward": {"kind": "seqcls", "model": str(tiny_rm)}},
        # A random reward model's gaps are tiny: an open window keeps every same-source pair.
        # The random tiny model never stops by itself: keep its "length" finishes.
        pairs={"method": "fusechat3", "gap": [0.0, 100.0], "test_fraction": 0.2, "keep_truncated": True},
    )


def dataset_folder(run: Path) -> Path:
    """The folder the build wrote, as its summary records it (its name is unique to its rows)."""
    return Path(json.loads((run / "summary.json").read_text())["dataset"]["folder"])


def test_build_to_dataset_then_wrpo_inspect_and_push(tmp_path, tiny_llama, tiny_rm):
    recipe = tiny_recipe(tmp_path / "r.yaml", tiny_llama, tiny_rm, 12)
    res = run_cli("build", str(recipe))
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "run"
    ds = dataset_folder(out)
    assert ds.parent == out and ds.name.startswith("t-fusechat3-") and f'load_dataset("{ds}"' in \
        res.stderr.replace("\n", "")
    sft = datasets.load_dataset(str(ds), "sft")
    dpo = datasets.load_dataset(str(ds), "dpo")
    n_sft = sum(len(s) for s in sft.values())
    n_dpo = sum(len(s) for s in dpo.values())
    assert n_sft + n_dpo == 12 and n_dpo >= 4  # every prompt lands in one split (4:6 on average)
    row = dpo["train"][0]
    assert row["prompt"][-1]["role"] == "user" and [m["role"] for m in row["chosen"]] == ["assistant"]
    assert row["chosen_model"] == row["rejected_model"]  # FuseChat-3.0 pairs come from one source
    assert row["score_chosen"] > row["score_rejected"]
    card = (ds / "README.md").read_text()
    assert "config_name: dpo" in card and str(tmp_path) not in card

    # WRPO: the target samples the preference prompts (stored like any model), then pairs.
    res = run_cli("pairs", str(out), "--method", "wrpo", "--out", str(tmp_path / "wrpo"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert rows(out, "SELECT COUNT(*) > 0 FROM responses WHERE model = 'tiny-target'") == [(1,)]
    w = datasets.load_dataset(str(tmp_path / "wrpo"), "wrpo")["train"]
    assert {"prompt", "chosen_source", "chosen_target", "rejected"} <= set(w.column_names)
    assert all(r["chosen_target_model"] == "tiny-target" if "chosen_target_model" in r else True for r in w)

    res = run_cli("inspect", str(out), "--examples", "1")
    assert res.returncode == 0 and (out / "inspect.png").stat().st_size > 1000

    dry = run_cli("push", str(out), "me/mix", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = dry.stdout.split()
    assert listed[0] == "README.md" and all(p.startswith("data/") for p in listed[1:])
    # A real upload to the loopback fake Hub (no upload-capable Hub server exists offline).
    with FakeHub(token="hf_test") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            res = run_cli("push", str(out), "me/mix")
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        assert res.returncode == 0, res.stderr[-3000:]
        got = hub.files("me/mix")
    assert sorted(got) == listed
    assert got["README.md"] == (ds / "README.md").read_bytes()
    assert run_cli("push", str(tmp_path / "nothing"), "me/mix").returncode == 2
    assert not Path(tmp_path / "nothing").exists()


def test_two_runs_load_their_own_rows_with_the_plain_load_dataset(tmp_path, tiny_llama, tiny_rm, monkeypatch):
    """Every dataset folder used to be called `dataset`, and `datasets` caches a local folder's
    prepared data under its name: the second run's folder served the first run's rows."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # one cache, shared
    folders = {}
    for run, prompts in (("small", 3), ("large", 9)):
        (tmp_path / run).mkdir()
        recipe = tiny_recipe(tmp_path / run / "r.yaml", tiny_llama, tiny_rm, prompts)
        # Same recipe name and method in both runs: only the rows tell the folders apart.
        res = run_cli("build", str(recipe), "pairs.test_fraction=0")
        assert res.returncode == 0, res.stderr[-3000:]
        folders[run] = dataset_folder(tmp_path / run / "run")
    assert folders["small"].name != folders["large"].name
    written = {run: {c: pq.read_table(f / "data" / c / "train-00000-of-00001.parquet").num_rows for c in ("sft", "dpo")}
               for run, f in folders.items()}
    assert sum(written["small"].values()) < sum(written["large"].values())
    for run, folder in folders.items():
        got = {c: datasets.load_dataset(str(folder), c, split="train").num_rows for c in ("sft", "dpo")}
        assert got == written[run], run
    # Pairing the same rows again keeps the name (and so the cache entry) of the folder.
    res = run_cli("pairs", str(tmp_path / "small" / "run"), "pairs.test_fraction=0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert dataset_folder(tmp_path / "small" / "run") == folders["small"] and folders["large"].is_dir()


def test_new_rows_replace_the_runs_folder_and_an_export_leaves_it(tmp_path, monkeypatch):
    from fusedata import recipe as recipe_mod
    from fusedata.dataset import run_dataset_folder, write_run_dataset
    from fusedata.store import RunStore

    r = recipe_mod.parse({"name": "My Run", "domains": {"math": ["embedded:math"]},
                          "models": [{"model": "embedded:smollm2-135m"}], "pairs": {"test_fraction": 0.0}})

    def rows(n: int) -> dict[str, list[dict]]:
        return {"sft": [{"prompt_id": f"p{i}", "domain": "math",
                         "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
                        for i in range(n)]}

    with RunStore(tmp_path / "run") as store:
        first = write_run_dataset(store, r, rows(2), {})
        assert first.folder.parent == tmp_path / "run" and first.folder.name.startswith("my-run-fusechat3-")
        assert first.counts == {"sft": {"train": 2, "test": 0}}
        second = write_run_dataset(store, r, rows(3), {})
        assert second.folder != first.folder and not first.folder.exists()
        export = write_run_dataset(store, r, rows(1), {}, out=tmp_path / "elsewhere")
        assert export.folder == tmp_path / "elsewhere" and second.folder.is_dir()
    assert run_dataset_folder(tmp_path / "run") == second.folder
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    assert datasets.load_dataset(str(second.folder), "sft", split="train").num_rows == 3
