"""The paged store readers give exactly what the whole-table reads give, and the score, pairs and
inspect stages built on them hold one page at a time: their peak memory does not grow with the run."""

from __future__ import annotations

import hashlib
import json
import math
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

import fusedata.publish as publish
from fusedata import recipe as recipe_mod
from fusedata.dataset import StoreCandidates, build_configs, candidates, folder_name, write_run_dataset
from fusedata.inspect import examples, inspect_run
from fusedata.pairs import gather
from fusedata.recipe import parse_scoring
from fusedata.records import Prompt, Response, Score, canonical_json
from fusedata.score import domain_stats, score_run
from fusedata.store import RunStore

QUIET = Console(file=open("/dev/null", "w"))
MODELS = ("m-b", "m-a", "m-c")
TARGET = "tgt"


def fill(folder: Path, n_prompts: int, *, seed: int = 0, text_chars: int = 40) -> RunStore:
    """A run as builds leave it: several models and samples, failures, truncated and blank answers,
    reward and verifier scores (some failed), responses of an unknown prompt, all stored out of order."""
    rng = random.Random(seed)
    prompts, resps, scores = [], [], []
    for i in range(n_prompts):
        dom = ("instruction", "math", "code")[i % 3]
        prompts.append(Prompt.make(dom, "src", [{"role": "user", "content": f"{dom} question {i}"}],
                                   gold=str(i) if dom == "math" and i % 7 else None,
                                   tests="assert True" if dom == "code" else None))
    filler = "".join(rng.choice("abcdefgh ") for _ in range(text_chars))
    keys = [(p, m, k) for p in prompts for m in (*MODELS, TARGET) for k in range(2)]
    for j, (p, m, k) in enumerate(keys):
        case = j % 19  # 0: failed, 1: blank, 2: truncated, 3: failed reward, 4: no reward
        if case == 0:
            resps.append(Response(p.id, m, "h", k, None, None, 2, 0, "HTTP 503"))
            continue
        text = "  " if case == 1 else f"{m} {k} {rng.random()} {filler}"
        resps.append(Response(p.id, m, "h", k, text, "length" if case == 2 else "stop", 2, 3))
        if case != 4:
            reward = rng.choice([0.5, 0.51, 0.55, 1.0, rng.random()])
            scores.append(Score(p.id, m, "h", k, "rm:x", reward, None, {}, "oom" if case == 3 else None))
        if p.domain == "math" and rng.random() < 0.8:
            ok = rng.random() < 0.5
            scores.append(Score(p.id, m, "h", k, "math", 1.0 if ok else 0.0, "correct" if ok else "wrong",
                                {"k": k}) if p.gold else Score(p.id, m, "h", k, "math", None, "skipped"))
    resps.append(Response("not-stored", "m-a", "h", 0, "orphan", "stop"))
    rng.shuffle(resps)
    rng.shuffle(scores)
    st = RunStore(folder)
    st.put_prompts(prompts[::2])
    for i in range(0, len(resps), 50):
        st.put_responses(resps[i:i + 50])
    st.put_prompts(prompts[1::2])
    st.put_scores(scores)
    return st


def recipe(method: str = "fusechat3", **pairs) -> recipe_mod.Recipe:
    return recipe_mod.parse({"name": "Stream Run", "domains": {"math": ["embedded:math"]},
                             "models": [{"name": m, "model": "embedded:smollm2-135m"} for m in MODELS],
                             "target": {"name": TARGET, "model": "embedded:smollm2-135m"},
                             "pairs": {"method": method, "test_fraction": 0.25, **pairs}})


@pytest.fixture
def small_pages(monkeypatch):
    """Pages, spool chunks and row groups far smaller than the runs here, so every reader turns pages."""
    monkeypatch.setattr(RunStore, "PROMPT_PAGE", 3)
    monkeypatch.setattr(RunStore, "RESPONSE_PAGE", 20)  # 8 responses a prompt: 2 or 3 prompts a page
    monkeypatch.setattr(RunStore, "ROW_PAGE", 4)
    monkeypatch.setattr(publish, "SPOOL_CHUNK", 5)
    monkeypatch.setattr(publish, "ROW_GROUP", 7)


def test_paged_readers_return_what_the_whole_table_reads_do(tmp_path, small_pages):
    with fill(tmp_path, 20) as st:
        prompts, responses, scores = st.prompts(), st.responses(), st.scores()
        assert list(st.iter_prompts()) == prompts
        groups = list(st.prompt_groups())
        assert [g.prompt for g in groups] == prompts
        st.RESPONSE_PAGE = 4  # fewer responses a page than a prompt has: one prompt a page
        pages = []
        fetch = st._fetch
        st._fetch = lambda sql, args=(): pages.append(sql) or fetch(sql, args)
        # a first page of PROMPT_PAGE (3), then the other 17 prompts one a page, then the empty page
        assert list(st.prompt_groups()) == groups and sum("FROM prompts WHERE" in q for q in pages) == 1 + 17 + 1
        del st._fetch, st.RESPONSE_PAGE
        for g in groups:
            assert [r for _, r in g.responses] == [r for r in responses if r.prompt_id == g.prompt.id]
            assert g.scores == [s for s in scores if s.prompt_id == g.prompt.id]
        rowids = [i for g in groups for i, _ in g.responses]
        assert len(set(rowids)) == len(rowids) == len(responses) - 1  # all but the orphan, each once
        assert st.orphan_responses() == (1, st.db.execute("SELECT rowid FROM responses WHERE prompt_id = "
                                                          "'not-stored'").fetchone()[0])
        ok_target = sorted((i, r) for g in st.prompt_groups(ok_only=True, model=TARGET) for i, r in g.responses)
        assert [r for _, r in ok_target] == [r for r in responses if r.model == TARGET and r.error is None]
        for g in st.prompt_groups(not_model=TARGET, scorers=["rm:x"]):
            assert g.scores == [s for s in scores if s.prompt_id == g.prompt.id and s.model != TARGET
                                and s.scorer == "rm:x"]
        assert st.scorer_names() == ["math", "rm:x"]
        assert st.failure_counts() == dict(sorted(Counter(r.model for r, _ in st.failures()).items()))
        domain = {p.id: p.domain for p in prompts}
        assert st.response_counts() == dict(sorted(Counter(domain[r.prompt_id] for r in responses
                                                           if r.prompt_id in domain and r.error is None).items()))
        assert list(st.iter_score_values()) == [(domain[s.prompt_id], s.scorer, s.value, s.label) for s in scores]
        # Pending work in key order, as score.py has always sorted it.
        done = st.scored_keys("math")
        pending = sorted((r for r in responses if r.error is None and domain.get(r.prompt_id) in ("math", "code")
                          and r.key not in done), key=lambda r: r.key)
        got = list(st.unscored("math", ["code", "math"]))
        assert [r for r, _ in got] == pending and len(pending) == st.count_unscored("math", ["math", "code"]) > 10
        assert all(p.id == r.prompt_id and p in prompts for r, p in got)
        assert list(st.unscored("math", [])) == [] and st.count_unscored("math", []) == 0


def test_store_candidates_are_what_gather_joins(tmp_path, small_pages):
    with fill(tmp_path, 20) as st:
        prompts, scores = st.prompts(), st.scores()
        for kw, keep in (({"ok_only": False}, False), ({"not_model": TARGET}, True), ({"model": TARGET}, False)):
            streamed = StoreCandidates(st, "rm:x", keep_truncated=keep, **kw)
            rs = [r for r in st.responses(ok_only=kw.get("ok_only", True))
                  if r.model != kw.get("not_model") and kw.get("model") in (None, r.model)]
            joined = gather(prompts, rs, scores, "rm:x", keep_truncated=keep)
            assert list(streamed.items()) == list(joined.items())
            # The same counts in the same order (the card lists them in this order).
            assert list(streamed.dropped.items()) == list(joined.dropped.items())
            if kw == {"ok_only": False}:
                assert set(joined.dropped) == {"error", "truncated", "empty", "unknown_prompt"}


@pytest.mark.parametrize("method,extra", [("fusechat3", {"gap": [0.0, 0.5]}), ("wrpo", {}),
                                          ("wrpo", {"export": "quadruple"}), ("fuserl", {"m": 2})])
def test_streamed_pairs_equal_the_in_memory_build(tmp_path, small_pages, method, extra):
    r = recipe(method, **extra)
    with fill(tmp_path / "run", 30) as st:
        prompts, scores = st.prompts(), st.scores()
        ok = st.responses(ok_only=True)
        sources = gather(prompts, [x for x in ok if x.model != TARGET], scores, keep_truncated=False)
        target = gather(prompts, [x for x in ok if x.model == TARGET], scores) if method == "wrpo" else None
        want_rows, want_report = build_configs(sources, target, r.pairs)
        got_rows, got_report = build_configs(*candidates(st, r), r.pairs)
        assert json.dumps(got_report) == json.dumps(want_report)
        assert {c: list(rows) for c, rows in got_rows.items()} == want_rows
        assert sum(len(v) for v in want_rows.values()) > 5
        a = write_run_dataset(st, r, want_rows, want_report, out=tmp_path / "from-lists")
        b = write_run_dataset(st, r, got_rows, got_report)
    assert a.counts == b.counts
    assert (a.folder / "README.md").read_text() == (b.folder / "README.md").read_text()
    shards = sorted(p.relative_to(a.folder) for p in a.folder.rglob("*.parquet"))
    assert shards == sorted(p.relative_to(b.folder) for p in b.folder.rglob("*.parquet")) and shards
    for s in shards:
        ta, tb = pq.read_table(a.folder / s), pq.read_table(b.folder / s)
        assert ta.schema == tb.schema and ta.to_pylist() == tb.to_pylist()
        assert pq.ParquetFile(b.folder / s).metadata.num_row_groups == math.ceil(tb.num_rows / 7)


def test_folder_name_hashes_the_canonical_json_of_all_rows(tmp_path):
    parts = {"sft": {"train": [{"b": 1, "a": [{"role": "user", "content": "é"}]}], "test": []},
             "dpo": {"train": [{"x": 0.1}, {"x": None}], "test": [{"y": True}]}, "empty": {}}
    digest = hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:8]
    assert folder_name("My Run", "wrpo", parts) == f"my-run-wrpo-{digest}"
    spooled = {c: {s: publish.RowSpool(tmp_path) for s in p} for c, p in parts.items()}
    for c, p in parts.items():
        for s, rows in p.items():
            spooled[c][s].extend(rows)
    assert folder_name("My Run", "wrpo", spooled) == f"my-run-wrpo-{digest}"


def test_scoring_sends_pending_work_in_key_order_chunks(tmp_path, small_pages):
    class Recorder:
        def __init__(self):
            self.chunks = []

        def map(self, make_worker, chunks, resources=None):
            assert len(chunks) == math.ceil(st.count_unscored("math", ["math"]) / 3)
            for c in chunks:
                self.chunks.append([r.key for r, _ in c])
                yield [Score(*r.key, "math", 1.0, "correct") for r, _ in c]

    cfg = parse_scoring({"reward": {"kind": "none"}, "domains": {"math": ["math"], "code": []}, "batch_size": 3})
    with fill(tmp_path, 30) as st:
        domain = {p.id: p.domain for p in st.prompts()}
        done = st.scored_keys("math")
        want = sorted(r.key for r in st.responses(ok_only=True) if domain.get(r.prompt_id) == "math"
                      and r.key not in done)
        rec = Recorder()
        rep = score_run(st, cfg, QUIET, rec)
        assert [k for c in rec.chunks for k in c] == want and all(len(c) == 3 for c in rec.chunks[:-1])
        assert rep.new == {"math": len(want)} and st.count_unscored("math", ["math"]) == 0
        assert any("has no gold answer" in e for e in rep.errors)


# -- memory ---------------------------------------------------------------------------------------

def _stages(folder: Path) -> None:
    """Score (a stand-in scorer: the store reads are what is measured), pairs, inspect."""
    class Instant:
        def map(self, make_worker, chunks, resources=None):
            for c in chunks:
                yield [Score(*r.key, "code", 1.0, "passed") for r, _ in c]

    with RunStore(folder) as st:
        cfg = parse_scoring({"reward": {"kind": "none"}, "domains": {"code": ["code"]}, "batch_size": 8})
        score_run(st, cfg, QUIET, Instant())
        domain_stats(st)
        r = recipe("wrpo")
        configs, report = build_configs(*candidates(st, r), r.pairs)
        write_run_dataset(st, r, configs, report)
        inspect_run(st)
        examples(st, 2)


def _peak(folder: Path) -> int:
    tracemalloc.start()
    try:
        _stages(folder)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stages_hold_a_page_not_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(RunStore, "PROMPT_PAGE", 4)
    monkeypatch.setattr(RunStore, "RESPONSE_PAGE", 32)
    monkeypatch.setattr(RunStore, "ROW_PAGE", 16)
    monkeypatch.setattr(publish, "SPOOL_CHUNK", 8)
    monkeypatch.setattr(publish, "ROW_GROUP", 16)
    for name, n in (("warm", 8), ("n", 150), ("4n", 600)):  # 8 responses of ~2 KB per prompt
        fill(tmp_path / name, n, text_chars=2000).close()
    _stages(tmp_path / "warm")  # lazy imports and first-use caches are not the run's memory
    small, large = _peak(tmp_path / "n"), _peak(tmp_path / "4n")
    # Holding every response text would make this about 4 (2.4 MB against 9.6 MB of text).
    assert large / small < 1.5, (small, large)


def test_median_is_the_statistics_median_bit_for_bit():
    from array import array
    from statistics import median as reference

    from fusedata.pairs import median

    rng = random.Random(3)
    for n in (1, 2, 5, 6, 101):
        values = [rng.choice([0.0, -0.0, 0.1, 0.2, 1e-300, -3.5, rng.random()]) for _ in range(n)]
        half = n // 2
        got = median(array("d", values[:half]), array("d", values[half:]))
        assert math.copysign(1, got) == math.copysign(1, reference(values)) and got == reference(values)
