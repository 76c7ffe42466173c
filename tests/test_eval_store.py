"""The eval store's guarantees: keyed rows, failures retried and replaced, successes never overwritten."""

from __future__ import annotations

from evals.records import Answer, Judgment, Question
from evals.store import EvalStore
from fusedata.judge import JudgeReply, JudgeRequest


def _req(text: str = "rate this") -> JudgeRequest:
    return JudgeRequest([{"role": "user", "content": text}], "single-v1", "fusekit-1", 0.0, 2048)


def test_answers_failure_is_retried_and_success_is_final(tmp_path):
    with EvalStore(tmp_path) as s:
        s.put_answers([Answer("mt-bench", "81", "m", "h", 1, None, error="HTTP 503")])
        got = s.answers("mt-bench", "m", "h")[("81", 1)]
        assert not got.ok and got.error == "HTTP 503"
        s.put_answers([Answer("mt-bench", "81", "m", "h", 1, "first answer", n_output_tokens=3)])
        s.put_answers([Answer("mt-bench", "81", "m", "h", 1, None, error="late failure")])
        s.put_answers([Answer("mt-bench", "81", "m", "h", 1, "second answer")])
        got = s.answers("mt-bench", "m", "h")[("81", 1)]
        assert got.text == "first answer" and got.ok and got.n_output_tokens == 3
        attempts = s.db.execute("SELECT attempts FROM answers WHERE question_id = '81' AND turn = 1").fetchone()[0]
        assert attempts == 2
        # another settings hash is another answer
        assert s.answers("mt-bench", "m", "other") == {}


def test_calls_keyed_by_request_hash(tmp_path):
    a, b = _req("one"), _req("two")
    assert a.key("judge-x") != a.key("judge-y")  # the judge is part of the key
    assert a.key("j") == _req("one").key("j")
    capped = JudgeRequest(a.messages, a.prompt, a.prompt_version, a.temperature, 64)
    assert capped.key("j") != a.key("j")  # so is max_tokens
    with EvalStore(tmp_path) as s:
        s.put_calls("j", [(a, JudgeReply(None, error="HTTP 429")), (b, JudgeReply("Rating: [[7]]", None, 10, 4))])
        assert s.done_keys([a.key("j"), b.key("j")]) == {b.key("j")}
        s.put_calls("j", [(a, JudgeReply("Rating: [[3]]", {"R": -0.1}, 11, 5))])
        s.put_calls("j", [(a, JudgeReply(None, error="must not replace"))])
        replies = s.replies([a.key("j"), b.key("j"), "missing"])
        reply, attempts = replies[a.key("j")]
        assert reply.text == "Rating: [[3]]" and reply.top_logprobs == {"R": -0.1} and attempts == 2
        assert replies[b.key("j")][1] == 1 and "missing" not in replies
        assert s.prompt_versions([a.key("j")]) == {"single-v1": "fusekit-1"}
        n = s.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        assert n == 2


def test_judgments_repoint_and_questions_roundtrip(tmp_path):
    q = Question("mt-bench", "81", "writing", ["t1", "t2"], meta={"x": 1})
    with EvalStore(tmp_path) as s:
        s.put_questions([q, q])
        assert s.questions("mt-bench") == [q]
        j = Judgment("mt-bench", "judge", "m", "81", 1, 0, "single", "k1")
        s.put_judgments([j])
        s.put_judgments([Judgment("mt-bench", "judge", "m", "81", 1, 0, "single", "k2")])
        assert [x.key for x in s.judgments("mt-bench")] == ["k2"]
        s.set_model("mt-bench", "m", "h1", {"model": "a"})
        s.set_model("mt-bench", "m", "h2", {"model": "b"})
        assert s.models("mt-bench") == {"m": ("h2", {"model": "b"})}
        assert s.benches() == ["mt-bench"] and s.judges("mt-bench") == ["judge"]


def test_model_folder_fingerprint_changes_the_settings_hash(tmp_path):
    from evals.answers import EvalModel
    from fusedata.endpoint import EndpointSettings
    from fusedata.engines import EngineConfig

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    spec = EvalModel(EngineConfig("m", str(folder)))
    before = spec.settings_hash("mt-bench")
    assert spec.settings_hash("mt-bench") == before
    (folder / "model.safetensors").write_bytes(b"weights v2, retrained")
    assert spec.settings_hash("mt-bench") != before  # retraining into the same folder is new answers
    served = EvalModel(EngineConfig("m", str(folder), engine="openai",
                                    endpoint=EndpointSettings("http://127.0.0.1:1/v1", str(folder))))
    assert served.settings(bench="mt-bench")["weights"] is None
