"""The one OpenAI-compatible endpoint client of fusekit (fusedata engines, reward judge, evals).

Settings live in one type, :class:`EndpointSettings`; every path that talks to an
OpenAI-compatible server (``vllm serve``, llama.cpp server, TGI, the OpenAI API) takes one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointSettings:
    """How to reach one served model."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 4
