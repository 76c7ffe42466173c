"""From stored answers to judge calls: which items each bench judges, and sending what is missing.

Every judged item is a ``Judgment`` pointing at the hash of its ``JudgeRequest``; the request is
rebuilt from the stored answers on every run, so a changed answer, prompt or judge setting gets
a new key and a new call, while an unchanged one is served from the store. Each reply is committed
the moment it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fusedata.errors import FusekitError

from .answers import ModelSpec
from .judges import alpaca_eval, arena_hard, mt_bench
from .judges.client import JudgeSpec, as_sent
from .records import JudgeReply, JudgeRequest, Judgment, Question
from .store import EvalStore

MODES = ("single", "pairwise")


@dataclass(frozen=True)
class Item:
    judgment: Judgment
    request: JudgeRequest | None  # None: decided without a call (AlpacaEval identical outputs)


def plan(bench: str, questions: list[Question], models: list[ModelSpec], judge: JudgeSpec, store: EvalStore,
         *, mode: str = "single", pairwise_baseline: str | None = None, prompt: str | None = None) -> list[Item]:
    """Every (model, question, turn, game) whose answers exist, with the request that judges it."""
    items: list[Item] = []
    answers = {m.name: store.answers(bench, m.name, m.settings_hash(bench)) for m in models}
    stored = store.models(bench)
    if pairwise_baseline and pairwise_baseline not in answers and pairwise_baseline in stored:
        # The baseline's answers may come from an earlier run into the same directory.
        answers[pairwise_baseline] = store.answers(bench, pairwise_baseline, stored[pairwise_baseline][0])

    def texts(model: str, q: Question, upto: int) -> list[str] | None:
        got = [answers[model].get((q.id, t)) for t in range(1, upto + 1)]
        return [a.text for a in got] if all(a is not None and a.ok for a in got) else None  # type: ignore[misc]

    def add(model: str, q: Question, turn: int, game: int, mode_: str, req: JudgeRequest | None,
            baseline: str | None = None, swapped: bool = False) -> None:
        req = as_sent(req, judge) if req is not None else None
        key = req.key(judge.name) if req is not None else ""
        items.append(Item(Judgment(bench, judge.name, model, q.id, turn, game, mode_, key, baseline, swapped), req))

    for m in models:
        if bench == "mt-bench" and mode == "pairwise":
            if m.name == pairwise_baseline:
                continue
            for q in questions:
                for turn in range(1, len(q.turns) + 1):
                    mine = texts(m.name, q, turn)
                    theirs = texts(pairwise_baseline, q, turn) if pairwise_baseline in answers else None
                    if mine is None or theirs is None:
                        continue
                    g1, g2 = mt_bench.pair_requests(q, mine, theirs, turn)
                    add(m.name, q, turn, 1, "pairwise", g1, pairwise_baseline, False)
                    add(m.name, q, turn, 2, "pairwise", g2, pairwise_baseline, True)
        elif bench == "mt-bench":
            for q in questions:
                for turn in range(1, len(q.turns) + 1):
                    mine = texts(m.name, q, turn)
                    if mine is not None:
                        add(m.name, q, turn, 0, "single", mt_bench.single_request(q, mine, turn, prompt))
        elif bench.startswith("arena-hard"):
            for q in questions:
                mine = texts(m.name, q, 1)
                if mine is not None:
                    g1, g2 = arena_hard.requests(q, mine[0], prompt)
                    add(m.name, q, 1, 1, "pairwise", g1, q.baseline, False)
                    add(m.name, q, 1, 2, "pairwise", g2, q.baseline, True)
        elif bench == "alpaca-eval":
            for q in questions:
                mine = texts(m.name, q, 1)
                if mine is None:
                    continue
                if alpaca_eval.identical(q, mine[0]):
                    add(m.name, q, 1, 0, "identical", None, q.baseline)
                else:
                    req, swapped = alpaca_eval.request(q, mine[0], prompt or "alpaca-eval-weighted")
                    add(m.name, q, 1, 0, "weighted", req, q.baseline, swapped)
        else:
            raise FusekitError(f"no judging protocol for bench {bench!r}")
    return items


def pending(items: list[Item], store: EvalStore) -> list[JudgeRequest]:
    """The distinct requests that have no successful reply yet (failed ones are retried)."""
    done = store.done_keys(i.judgment.key for i in items if i.request is not None)
    out: dict[str, JudgeRequest] = {}
    for i in items:
        if i.request is not None and i.judgment.key not in done:
            out.setdefault(i.judgment.key, i.request)
    return list(out.values())


def send(judge, requests: list[JudgeRequest], store: EvalStore,
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


def preflight_logprobs(judge, request: JudgeRequest, store: EvalStore) -> None:
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
