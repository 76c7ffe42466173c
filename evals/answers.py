"""The evaluated model's answers, generated through fusedata's engines and kept in the eval store.

Each bench brings its generation settings per question (MT-Bench's per-category temperatures,
Arena-Hard's greedy decoding, AlpacaEval's 0.7); ``--temperature``/``--max-tokens`` override
them for every question. The model sees its own chat template and, when given, a system prompt.
MT-Bench's second turn is conditioned on the model's *own* first answer, so it is generated only
once that answer exists. Work already in the store (same model label and settings hash) is not
redone; failures are stored with their error and retried by the next run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fusedata.engines import EngineConfig, GenRequest, make_engine
from fusedata.records import Message, Prompt, SamplingParams, canonical_json, sha256_hex

from .benches import generation_settings
from .records import Answer, Question
from .store import EvalStore


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: ``engine`` says how to run it (its ``name`` labels the model in every
    table; its ``model`` is a model reference, or the served model's name behind ``endpoint``),
    ``temperature`` / ``max_tokens`` override the bench's decoding for every question."""

    engine: EngineConfig
    temperature: float | None = None
    max_tokens: int | None = None

    @property
    def name(self) -> str:
        return self.engine.name

    def settings(self, bench: str) -> dict:
        """What determines the answers (not the label, batch size or concurrency)."""
        e = self.engine
        return {
            "bench": bench, "model": e.model, "engine": e.engine,
            "base_url": e.endpoint.base_url if e.endpoint else None,
            "system_prompt": e.system_prompt, "temperature": self.temperature, "max_tokens": self.max_tokens,
            "weights": weights_fingerprint(e.model) if e.engine != "openai" else None,
        }

    def settings_hash(self, bench: str) -> str:
        return sha256_hex(canonical_json(self.settings(bench)))[:16]


def weights_fingerprint(model: str) -> str | None:
    """For a local model folder or file: a hash of its files' names, sizes and mtimes, so that
    retraining into the same folder generates anew instead of reusing stale answers."""
    path = Path(model)
    if not path.exists():
        return None
    files = sorted(p for p in ([path] if path.is_file() else path.iterdir()) if p.is_file())
    return sha256_hex(canonical_json([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]))[:16]


def turn_messages(question: Question, turn: int, earlier: list[str], system_prompt: str | None) -> list[Message]:
    """The conversation the model answers at ``turn``: its own earlier answers in between."""
    msgs: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for t in range(turn - 1):
        msgs += [{"role": "user", "content": question.turns[t]}, {"role": "assistant", "content": earlier[t]}]
    return msgs + [{"role": "user", "content": question.turns[turn - 1]}]


@dataclass
class AnswerReport:
    generated: int = 0
    reused: int = 0
    failed: int = 0


def missing_turns(questions: list[Question], have: dict[tuple[str, int], Answer], turn: int) -> list[Question]:
    """Questions whose ``turn`` still lacks a good answer and whose earlier turns all have one."""
    out = []
    for q in questions:
        if len(q.turns) < turn:
            continue
        if (q.id, turn) in have and have[(q.id, turn)].ok:
            continue
        if all((q.id, t) in have and have[(q.id, t)].ok for t in range(1, turn)):
            out.append(q)
    return out


def generate_answers(
    bench: str,
    questions: list[Question],
    model: EvalModel,
    store: EvalStore,
    *,
    on_batch: Callable[[int], None] | None = None,
    engine_factory: Callable[[EngineConfig], object] = make_engine,
) -> AnswerReport:
    """Fill the store with every turn of every question for ``model``; returns what happened."""
    h = model.settings_hash(bench)
    store.set_model(bench, model.name, h, {**model.settings(bench), "name": model.name})
    have = store.answers(bench, model.name, h)
    report = AnswerReport(reused=sum(1 for a in have.values() if a.ok))
    n_turns = max((len(q.turns) for q in questions), default=0)
    if not any(missing_turns(questions, have, t) for t in range(1, n_turns + 1)):
        return report
    engine = engine_factory(model.engine)
    size = model.engine.chunk_size
    try:
        for turn in range(1, n_turns + 1):
            todo = missing_turns(questions, have, turn)
            groups: dict[tuple[float, int], list[Question]] = {}
            for q in todo:
                gs = generation_settings(bench, q, model.temperature, model.max_tokens)
                groups.setdefault((gs.temperature, gs.max_tokens), []).append(q)
            for (temperature, max_tokens), qs in groups.items():
                # top_p 1: the benches sample from the full distribution at their temperature.
                params = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_tokens, n=1, seed=0)
                for start in range(0, len(qs), size):
                    chunk = qs[start:start + size]
                    reqs = []
                    for q in chunk:
                        earlier = [have[(q.id, t)].text or "" for t in range(1, turn)]
                        msgs = turn_messages(q, turn, earlier, model.engine.system_prompt)
                        reqs.append(GenRequest(Prompt.make("instruction", bench, msgs), (0,)))
                    responses = engine.generate(reqs, params)
                    answers = [
                        Answer(bench, q.id, model.name, h, turn, r.text if r.ok else None,
                               None if r.ok else (r.error or "empty response"), r.n_output_tokens,
                               0.0 if math.isnan(r.seconds) else r.seconds)
                        for q, r in zip(chunk, responses)
                    ]
                    store.put_answers(answers)
                    for a in answers:
                        have[(a.question_id, a.turn)] = a
                        report.generated += a.ok
                        report.failed += not a.ok
                    if on_batch:
                        on_batch(len(answers))
    finally:
        engine.close()
    return report


def count_work(bench: str, questions: list[Question], model: EvalModel, store: EvalStore) -> int:
    """Turns still to generate (an upper bound: later turns wait on earlier ones)."""
    have = store.answers(bench, model.name, model.settings_hash(bench))
    return sum(1 for q in questions for t in range(1, len(q.turns) + 1)
               if not ((q.id, t) in have and have[(q.id, t)].ok))

