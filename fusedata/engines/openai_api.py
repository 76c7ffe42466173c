"""Any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, llama.cpp server, TGI…).

A prompt's missing samples go in one request with ``n`` (vLLM computes the prompt's prefill once
for all of them), seeded from the first missing sample, so a resumed prompt is asked exactly what an
uninterrupted run asked. Servers that answer ``n > 1`` with a single choice (llama.cpp) or refuse it
are noticed at the first such reply: from then on this model sends one request per sample, each with
its own seed, and the samples still missing are asked again that way. ``n_per_request: false`` in the
recipe starts there. Concurrency, the sliding window, retries and failure records are
``fusedata.endpoint``'s: a failure is returned as a ``Response`` with ``error`` set, so the run store
keeps it and the next run retries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..endpoint import ChatReply, ChatRequest, Endpoint
from ..errors import FusekitError
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed

# What a server that cannot do n > 1 answers instead (vLLM and OpenAI accept it).
_NO_N_STATUS = ("HTTP 400", "HTTP 422")


class OpenAIEngine:
    def __init__(self, config: EngineConfig):
        if config.endpoint is None:
            raise FusekitError(f"model '{config.name}': engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.endpoint = Endpoint(config.endpoint, f"model '{config.name}'")
        self.n_per_request = config.n_per_request is not False

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        out = {(r.prompt_id, r.sample_idx): r for done in self.stream(requests, params) for r in done}
        return [out[(req.prompt.id, i)] for req in requests for i in req.sample_indices]

    def stream(self, requests: Iterable[GenRequest], params: SamplingParams) -> Iterator[list[Response]]:
        """Every (request, sample index) answered, yielded in groups as the replies arrive."""
        retry: list[GenRequest] = []
        for done in self.endpoint.stream(self._chats(requests, params)):
            out = []
            for (req, n), replies in done:
                ok = self._accept(n, replies)
                out += [self._response(req, idx, params, reply) for idx, reply in zip(req.sample_indices, ok)]
                if len(ok) < len(req.sample_indices):
                    retry.append(GenRequest(req.prompt, req.sample_indices[len(ok):], req.prefill))
            if out:
                yield out
        if retry:  # the server showed it cannot do n > 1: ask the rest one sample per request
            yield from self.stream(retry, params)

    def _chats(self, requests: Iterable[GenRequest], params: SamplingParams) -> Iterator[tuple[tuple, ChatRequest]]:
        """((request, n), chat) to send: all of a prompt's samples at once, or one request per sample."""
        for req in requests:
            if self.n_per_request:
                yield (req, len(req.sample_indices)), self._chat(req, params)
            else:
                for idx in req.sample_indices:
                    one = GenRequest(req.prompt, (idx,), req.prefill)
                    yield (one, 1), self._chat(one, params)

    def _chat(self, req: GenRequest, params: SamplingParams) -> ChatRequest:
        extra = None
        if params.repetition_penalty != 1.0:
            # Not in the OpenAI API; vLLM reads repetition_penalty, llama.cpp repeat_penalty.
            extra = {"repetition_penalty": params.repetition_penalty, "repeat_penalty": params.repetition_penalty}
        return ChatRequest(chat_messages(req.prompt, self.config), params.max_tokens, params.temperature,
                           params.top_p, sample_seed(params, req.prompt.id, req.sample_indices[0]), self.config.stop,
                           extra_body=extra, n=len(req.sample_indices))

    def _accept(self, n: int, replies: list[ChatReply]) -> list[ChatReply]:
        """The replies that answer a request for ``n`` samples; fewer when the server showed that it
        cannot do n > 1 (one choice back, or the request refused as invalid)."""
        if len(replies) >= n:
            return replies[:n]
        refused = len(replies) == 1 and (replies[0].error or "").startswith(_NO_N_STATUS)
        if refused or replies[0].ok:
            self.n_per_request = False
            return [] if refused else replies
        return replies[:1] * n  # a failed request: every sample it asked for failed

    def _response(self, req: GenRequest, idx: int, params: SamplingParams, reply: ChatReply) -> Response:
        if not reply.ok:  # no seconds: the store sums them as generation time
            return Response(req.prompt.id, self.config.name, params.hash(), idx, None, error=reply.error)
        return Response(req.prompt.id, self.config.name, params.hash(), idx, reply.text.strip(), reply.finish_reason,
                        reply.prompt_tokens, reply.completion_tokens, None, reply.seconds)

    def close(self) -> None:
        self.endpoint.close()
