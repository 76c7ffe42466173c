"""Shared records and the SQLite run store."""

from __future__ import annotations

import sqlite3

from fusedata.records import Pair, Prompt, Response, SamplingParams, Score, from_row, prompt_id_for, to_row
from fusedata.store import RunStore


def test_prompt_id_normalises_whitespace_and_unicode():
    a = prompt_id_for([{"role": "user", "content": "What is  2+2?\n"}])
    b = prompt_id_for([{"role": "user", "content": "What is 2+2?"}])
    c = prompt_id_for([{"role": "user", "content": "What is 2+3?"}])
    full_width = prompt_id_for([{"role": "user", "content": "What is ２+２?"}])  # NFKC folds full-width digits
    assert a == b == full_width
    assert a != c and len(a) == 64


def test_sampling_hash_ignores_n_but_not_temperature():
    base = SamplingParams(temperature=0.8, n=2)
    assert base.hash() == SamplingParams(temperature=0.8, n=8).hash()
    assert base.hash() != SamplingParams(temperature=0.7, n=2).hash()
    assert base.hash() != SamplingParams(temperature=0.8, seed=1).hash()


def test_records_round_trip_through_rows():
    p = Prompt.make("math", "embedded:math", [{"role": "user", "content": "1+1?"}], gold="2", meta={"k": 1})
    r = Response(p.id, "m", "h", 0, "2", "stop", 5, 1)
    s = Score(p.id, "m", "h", 0, "math", 1.0, "correct", {"extracted": "2"})
    pair = Pair(p.id, "math", "dpo", p.messages, [{"role": "assistant", "content": "2"}],
                [{"role": "assistant", "content": "3"}], ["m"], ["m"], [1.0], [0.0])
    for rec, cls in ((p, Prompt), (r, Response), (s, Score), (pair, Pair)):
        row = to_row(rec)
        back = from_row(cls, {**row, "not_a_field": 1})
        assert back == rec
    assert to_row(s)["detail"] == '{"extracted":"2"}'  # dict fields travel as canonical JSON text


def test_store_failure_is_retried_and_success_is_final(tmp_path):
    with RunStore(tmp_path) as st:
        st.put_responses([Response("p1", "m", "h", 0, None, error="HTTP 503: busy"),
                          Response("p1", "m", "h", 1, "first", "stop", 3, 2)])
        assert st.done_keys("m", "h") == {("p1", 1)}
        (fail, attempts), = st.failures()
        assert fail.error == "HTTP 503: busy" and attempts == 1
        # The retry succeeds; the success may not be overwritten by a later write of the same key.
        st.put_responses([Response("p1", "m", "h", 0, "retried", "stop", 3, 4)])
        st.put_responses([Response("p1", "m", "h", 1, "second", "stop", 3, 9)])
        texts = {r.sample_idx: r.text for r in st.responses()}
        assert texts == {0: "retried", 1: "first"}
        assert st.failures() == []
        stats = st.response_stats()["m"]
        assert stats["responses"] == 2 and stats["failures"] == 0 and stats["output_tokens"] == 6
    # One row per key: the primary key makes duplicates impossible.
    rows = sqlite3.connect(tmp_path / "run.sqlite").execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert rows == 2


def test_store_scores_and_prompts(tmp_path):
    p = Prompt.make("code", "x", [{"role": "user", "content": "write add"}], tests="assert add(1,2)==3")
    with RunStore(tmp_path) as st:
        st.put_prompts([p, p])
        assert st.prompts() == [p]
        st.put_scores([Score(p.id, "m", "h", 0, "code", None, "timeout", {}, error="timeout")])
        assert st.scored_keys("code") == set()
        st.put_scores([Score(p.id, "m", "h", 0, "code", 1.0, "passed", {"tests_passed": 1})])
        assert st.scored_keys("code") == {(p.id, "m", "h", 0)}
        assert st.scores("code")[0].detail == {"tests_passed": 1}
        st.set_meta("recipe", {"a": [1, 2]})
        assert st.get_meta("recipe") == {"a": [1, 2]}
