"""The datasets fusedata writes go through TRL's own DPOTrainer / SFTTrainer data paths unchanged."""

from __future__ import annotations

import datasets
import pytest

from fusedata.pairs import to_trl_rows
from fusedata.publish import write_dataset
from fusedata.records import Pair

trl = pytest.importorskip("trl", reason="trl is in the dev extra installed by `make install`")

PROMPT = [{"role": "user", "content": "What is 7 + 5?"}]


def _pairs() -> list[Pair]:
    return [
        Pair(f"p{i}", "math", "fusechat3", PROMPT, [{"role": "assistant", "content": f"It is 12. ({i})"}],
             [{"role": "assistant", "content": f"It is 13. ({i})"}], ["a"], ["a"], [0.9], [0.2], [],
             {"source_dataset": "embedded:math"})
        for i in range(4)
    ]


def test_dpo_and_sft_configs_tokenize_in_trl(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    pairs = _pairs()
    folder = write_dataset(tmp_path / "ds", {"dpo": {"train": to_trl_rows(pairs, "preference")},
                                             "sft": {"train": to_trl_rows(pairs, "sft")}},
                           card_info={"pretty_name": "trl check"})
    dpo = datasets.load_dataset(str(folder), "dpo", split="train")
    sft = datasets.load_dataset(str(folder), "sft", split="train")
    assert trl.data_utils.is_conversational(dpo[0]) and trl.data_utils.is_conversational(sft[0])

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    common = dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                  use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=dpo, processing_class=tok)
    row = trainer.train_dataset[0]
    # TRL tokenised prompt and completions from our message lists; the prompt is not repeated in them.
    prompt_text = tok.decode(row["prompt_ids"])
    assert "What is 7 + 5?" in prompt_text
    assert "It is 12." in tok.decode(row["chosen_ids"]) and "What is 7" not in tok.decode(row["chosen_ids"])
    trainer.train()  # one real step through TRL's loss on our data

    sft_trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=sft, processing_class=tok)
    assert "It is 12." in tok.decode(sft_trainer.train_dataset[0]["input_ids"])
