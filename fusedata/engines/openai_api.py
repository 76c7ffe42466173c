"""Any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, llama.cpp server, TGI…).

One request per sample: several servers (llama.cpp among them) answer ``n>1`` with a
single choice, and per-sample requests give every sample its own seed and its own
failure record. Concurrency, retries and failure records are ``fusedata.endpoint``'s: a
failure is returned as a ``Response`` with ``error`` set, so the run store keeps it and the
next run retries it.
"""

from __future__ import annotations

from ..endpoint import ChatReply, ChatRequest, Endpoint
from ..errors import FusekitError
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed


class OpenAIEngine:
    def __init__(self, config: EngineConfig):
        if config.endpoint is None:
            raise FusekitError(f"model '{config.name}': engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.endpoint = Endpoint(config.endpoint, f"model '{config.name}'")

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        rows = [(req, i) for req in requests for i in req.sample_indices]
        extra = None
        if params.repetition_penalty != 1.0:
            # Not in the OpenAI API; vLLM reads repetition_penalty, llama.cpp repeat_penalty.
            extra = {"repetition_penalty": params.repetition_penalty, "repeat_penalty": params.repetition_penalty}
        chats = [
            ChatRequest(chat_messages(req.prompt, self.config), params.max_tokens, params.temperature, params.top_p,
                        sample_seed(params, req.prompt.id, idx), self.config.stop, extra_body=extra)
            for req, idx in rows
        ]
        out: list[Response] = [None] * len(rows)  # type: ignore[list-item] - every slot is filled by chat()

        def keep(i: int, reply: ChatReply) -> None:
            out[i] = self._response(rows[i][0], rows[i][1], params, reply)

        self.endpoint.chat(chats, keep)
        return out

    def _response(self, req: GenRequest, idx: int, params: SamplingParams, reply: ChatReply) -> Response:
        if not reply.ok:  # no seconds: the store sums them as generation time
            return Response(req.prompt.id, self.config.name, params.hash(), idx, None, error=reply.error)
        return Response(req.prompt.id, self.config.name, params.hash(), idx, reply.text.strip(), reply.finish_reason,
                        reply.prompt_tokens, reply.completion_tokens, None, reply.seconds)

    def close(self) -> None:
        self.endpoint.close()
