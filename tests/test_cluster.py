"""ray.data.llm output rows → stored responses (the vLLM-on-Ray path; the mapping runs without Ray or vLLM)."""

from __future__ import annotations

import math

from fusedata.cluster import response_from_llm_row


def _row(**kw):
    return {"prompt_id": "p1", "sample_idx": 2, "generated_text": " 42 ", "num_input_tokens": 9,
            "num_generated_tokens": 3, "__inference_error__": "", **kw}


def test_finish_reason_comes_from_the_token_counts():
    r = response_from_llm_row(_row(), "m", "h", max_tokens=16)
    assert (r.prompt_id, r.model, r.settings_hash, r.sample_idx) == ("p1", "m", "h", 2)
    assert (r.text, r.finish_reason, r.n_input_tokens, r.n_output_tokens, r.error) == ("42", "stop", 9, 3, None)
    # hitting max_tokens is vLLM's "length": the truncation filter must see it
    assert response_from_llm_row(_row(num_generated_tokens=16), "m", "h", max_tokens=16).finish_reason == "length"
    assert response_from_llm_row(_row(num_generated_tokens=15), "m", "h", max_tokens=16).finish_reason == "stop"
    # so is running into the context window, when the recipe sets it
    full = _row(num_input_tokens=2040, num_generated_tokens=8)
    assert response_from_llm_row(full, "m", "h", 512, max_model_len=2048).finish_reason == "length"
    assert response_from_llm_row(full, "m", "h", 512, max_model_len=4096).finish_reason == "stop"


def test_failed_and_empty_rows_are_stored_failures():
    # a failed row skips postprocess: it arrives with the whole data dict and NaN where columns are missing
    failed = _row(__inference_error__="ValueError: prompt too long", generated_text="",
                  num_input_tokens=math.nan, num_generated_tokens=None, sample_idx=2.0)
    r = response_from_llm_row(failed, "m", "h", 16)
    assert r.text is None and r.error == "vLLM on Ray: ValueError: prompt too long" and r.sample_idx == 2
    empty = response_from_llm_row(_row(generated_text="  \n"), "m", "h", 16)
    assert empty.text is None and empty.error == "vLLM on Ray returned no text"
    missing = response_from_llm_row(_row(generated_text=math.nan), "m", "h", 16)
    assert missing.error == "vLLM on Ray returned no text"
