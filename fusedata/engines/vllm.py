"""vLLM offline generation (GPU machines): ``LLM.chat`` with ``SamplingParams(n=…)``.

vLLM is an optional extra (``pip install 'fusekit[vllm]'``) and is imported only here,
only when a recipe names ``engine: vllm``. One ``LLM.chat`` call per batch with n samples
per prompt shares the prompt's prefill across samples.
"""

from __future__ import annotations

import time

from .. import models
from ..errors import FusekitError
from ..records import Response, SamplingParams
from . import EngineConfig, GenRequest, chat_messages, sample_seed


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise FusekitError(
            "engine 'vllm' needs vLLM, which is not installed: pip install 'fusekit[vllm]' (CUDA GPUs only); "
            "or serve the model with `vllm serve` and use engine: openai"
        ) from None
    return vllm


class VLLMEngine:
    def __init__(self, config: EngineConfig):
        vllm = import_vllm()
        self.config = config
        self._vllm = vllm
        ref = models.resolve(config.model)
        self.stop = list(config.stop or ref.stop)
        self.llm = vllm.LLM(model=ref.path, **config.extra.get("engine_kwargs", {}))

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Response]:
        sp = [
            self._vllm.SamplingParams(
                n=len(r.sample_indices), temperature=params.temperature, top_p=params.top_p,
                repetition_penalty=params.repetition_penalty, max_tokens=params.max_tokens,
                seed=sample_seed(params, r.prompt.id, r.sample_indices[0]), stop=self.stop or None,
            )
            for r in requests
        ]
        t0 = time.perf_counter()
        outs = self.llm.chat([chat_messages(r.prompt, self.config) for r in requests], sp, use_tqdm=False)
        secs = (time.perf_counter() - t0) / max(sum(len(r.sample_indices) for r in requests), 1)
        res = []
        for req, out in zip(requests, outs):
            for idx, comp in zip(req.sample_indices, out.outputs):
                res.append(Response(req.prompt.id, self.config.name, params.hash(), idx, comp.text.strip(),
                                    comp.finish_reason, len(out.prompt_token_ids), len(comp.token_ids), None, secs))
        return res

    def close(self) -> None:
        del self.llm
