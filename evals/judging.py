"""From stored answers to judge calls: which items each bench judges, and sending what is missing.

Every judged item is a ``Judgment`` pointing at the hash of its ``JudgeRequest``; the request is
rebuilt from the stored answers on every run, so a changed answer, prompt or judge setting gets
a new key and a new call, while an unchanged one is served from the store. Each reply is committed
the moment it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fusedata.errors import FusekitError
from fusedata.judge import Judge, JudgeReply, JudgeRequest, JudgeSettings, as_sent

from .answers import EvalModel
from .benches import get_bench
from .judges.prompts import UPSTREAM, JudgePrompt, resolve
from .records import Answer, Judgment, Question
from .store import EvalStore


@dataclass(frozen=True)
class Item:
    judgment: Judgment
    request: JudgeRequest | None  # None: decided without a call (AlpacaEval identical outputs)


@dataclass
class Planner:
    """What a bench's judge protocol (``Bench.plan``) reads and fills: the stored answers per model,
    the run's grading settings, and the items planned so far."""

    bench: str
    judge: JudgeSettings
    answers: dict[str, dict[tuple[str, int], Answer]]
    mode: str = "single"
    pairwise_baseline: str | None = None
    prompt: str = UPSTREAM  # a prompt set (upstream, fusekit-1) or one shipped prompt's name
    data_dir: str | None = None  # a checkout to read upstream prompts from (evals.judges.upstream)
    items: list[Item] = field(default_factory=list)
    prompt_sources: dict[str, dict[str, str]] = field(default_factory=dict)

    def judge_prompt(self, role: str) -> JudgePrompt:
        """The prompt this run uses where the protocol's ``role`` prompt goes; where it came from is kept
        for the manifest."""
        prompt, source = resolve(role, self.prompt, self.data_dir)
        self.prompt_sources.setdefault(role, source)
        return prompt

    def texts(self, model: str, q: Question, upto: int) -> list[str] | None:
        """``model``'s answers to turns 1..``upto`` of ``q``, or None until all of them succeeded."""
        have = self.answers.get(model)
        if have is None:
            return None
        got = [have.get((q.id, t)) for t in range(1, upto + 1)]
        texts = [a.text for a in got if a is not None and a.ok and a.text is not None]
        return texts if len(texts) == upto else None

    def add(self, model: str, q: Question, turn: int, game: int, mode: str, req: JudgeRequest | None,
            baseline: str | None = None, swapped: bool = False) -> None:
        """One judged item; ``req`` None when it is decided without a call."""
        req = as_sent(req, self.judge) if req is not None else None
        key = req.key(self.judge.name) if req is not None else ""
        judgment = Judgment(self.bench, self.judge.name, model, q.id, turn, game, mode, key, baseline, swapped)
        self.items.append(Item(judgment, req))


def plan(bench: str, questions: list[Question], models: list[EvalModel], judge: JudgeSettings, store: EvalStore,
         *, mode: str = "single", pairwise_baseline: str | None = None, prompt: str = UPSTREAM,
         data_dir: str | None = None) -> Planner:
    """Every (model, question, turn, game) whose answers exist, with the request that judges it
    (``Planner.items``), and the prompts used (``Planner.prompt_sources``)."""
    answers = {m.name: store.answers(bench, m.name, m.settings_hash(bench)) for m in models}
    stored = store.models(bench)
    if pairwise_baseline and pairwise_baseline not in answers and pairwise_baseline in stored:
        # The baseline's answers may come from an earlier run into the same directory.
        answers[pairwise_baseline] = store.answers(bench, pairwise_baseline, stored[pairwise_baseline][0])
    planner = Planner(bench, judge, answers, mode, pairwise_baseline, prompt, data_dir)
    protocol = get_bench(bench).plan
    for m in models:
        for q in questions:
            protocol(planner, m.name, q)
    return planner


def pending(items: list[Item], store: EvalStore) -> list[JudgeRequest]:
    """The distinct requests that have no successful reply yet (failed ones are retried)."""
    done = store.done_keys(i.judgment.key for i in items if i.request is not None)
    out: dict[str, JudgeRequest] = {}
    for i in items:
        if i.request is not None and i.judgment.key not in done:
            out.setdefault(i.judgment.key, i.request)
    return list(out.values())


def send(judge: Judge, requests: list[JudgeRequest], store: EvalStore,
         on_reply: Callable[[JudgeRequest, JudgeReply], None] | None = None) -> dict[str, int]:
    """Send ``requests`` through ``judge``, committing each reply the moment it arrives, so that a
    killed run loses only the calls in flight."""
    counts = {"ok": 0, "failed": 0}

    def keep(i: int, reply: JudgeReply) -> None:
        store.put_calls(judge.name, [(requests[i], reply)])
        counts["ok" if reply.ok else "failed"] += 1
        if on_reply:
            on_reply(requests[i], reply)

    judge.complete(requests, keep)
    return counts


def preflight_logprobs(judge: Judge, request: JudgeRequest, store: EvalStore) -> None:
    """AlpacaEval's weighted judge reads log-probs: stop before judging 805 items with a judge
    that returns none. The probe's reply is stored like any other."""
    replies: list[JudgeReply] = []
    judge.complete([request], lambda i, r: replies.append(r))
    store.put_calls(judge.name, [(request, replies[0])])
    reply = replies[0]
    if reply.ok and reply.top_logprobs is None:
        raise FusekitError(
            f"judge {judge.name} returned no logprobs; AlpacaEval's weighted judge reads the preference from the "
            "first token's top_logprobs. Use a judge that returns them (OpenAI gpt-4-turbo class, vllm serve, "
            "llama.cpp server) or the in-process judge."
        )
