"""Training data: dataset rows → tokenized response groups → padded or packed micro-batches.

Every method trains on the same unit, an :class:`Example`: one prompt and the R responses
the loss compares, run in ONE forward per micro-batch.

=========  ===========================================  ===============================
method     responses (in this order)                    ``weights``
=========  ===========================================  ===============================
sft        [y]                                          [row weight, default 1]
fusesft    the prompt's responses (rows grouped by id)  per response (softmax of reward)
dpo/simpo  [chosen, rejected]                           [1]
wrpo       [y_ws (source), y_wt (target), y_l]          [1]
fusepo     [chosen_1, rejected_1, chosen_2, ...]        per source pair
rloo       the prompt's K responses                     per response reward
=========  ===========================================  ===============================

Columns read (TRL conversational or standard formats, and fusedata's configs):

* SFT: ``messages`` (the last message is the response), or ``prompt`` + ``completion``;
  optional ``weight``; fusesft/rloo group rows by ``prompt_id`` and rloo reads ``score``.
  rloo also reads ``prompt`` + ``completions`` + ``rewards`` lists.
* Preference: ``prompt`` + ``chosen`` + ``rejected`` (explicit prompt), or ``chosen`` +
  ``rejected`` full conversations (implicit prompt: the shared leading messages).
  fusepo groups rows by ``prompt_id`` and reads ``weight``.
* WRPO: ``prompt`` + ``chosen_source`` + ``chosen_target`` + ``rejected`` (fusedata), or the
  WRPO code's ``prompt`` + ``chosen`` [y_ws, y_wt] + ``rejected`` [y_l].

Tokenization renders the prompt with the model's chat template (generation prompt on) and
each response as the text the template adds after it, ending at the end-of-turn token; the
two are tokenized **separately** and their ids concatenated, so no BPE merge across the
boundary can move it. Truncation keeps the end of a long prompt (``max_prompt_length``) and
then cuts responses to fit ``max_length``; a response left empty is an error (or dropped).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from fusedata.errors import FusekitError

Messages = list[dict[str, Any]]

# Which dataset config a fusedata folder offers for each method.
DEFAULT_CONFIG = {"sft": "sft", "fusesft": "fuserl_sft", "dpo": "dpo", "simpo": "dpo", "wrpo": "wrpo",
                  "fusepo": "fuserl_po", "rloo": "fuserl_sft"}


@dataclass
class Example:
    """One prompt and the responses one loss term compares (see the module table)."""

    index: int
    prompt_ids: list[int]
    responses: list[list[int]]
    weights: list[float] = field(default_factory=lambda: [1.0])
    truncated: int = 0  # responses cut by max_length (their EOS is gone)

    @property
    def n_tokens(self) -> int:
        return sum(len(self.prompt_ids) + len(r) for r in self.responses)


@dataclass
class TokenizeReport:
    rows: int = 0
    examples: int = 0
    dropped_empty: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    template_fallbacks: int = 0


# --------------------------------------------------------------------------- #
# loading rows (I/O edge)
# --------------------------------------------------------------------------- #


# `datasets` caches a local folder's prepared Arrow data under the folder's *name* and config
# (datasets 5.2: two different folders both called `dataset` share one cache entry, and a folder
# rewritten in place keeps serving its old rows), so local data is always re-read from its files.
# The recorded split sizes belong to whichever folder filled the cache first, so they are not checked.
FRESH = {"download_mode": "force_redownload", "verification_mode": "no_checks"}


def load_rows(path: str, config: str | None, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a fusedata dataset folder, a ``save_to_disk`` folder, a parquet/json(l) file or a Hub id."""
    import datasets

    p = Path(path).expanduser()
    try:
        if p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "dataset_info.json").is_file()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise FusekitError(f"{path}: no split {split!r} (has {', '.join(ds)})")
                ds = ds[split]
        elif p.is_file():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(p.suffix)
            if kind is None:
                raise FusekitError(f"{path}: expected a .parquet, .jsonl or .json file")
            ds = datasets.load_dataset(kind, data_files=str(p), split="train", **FRESH)
        elif p.is_dir():
            ds = _load_folder(p, config, split)
        elif path.startswith((".", "/", "~")) or p.suffix in (".parquet", ".jsonl", ".json"):
            raise FusekitError(f"dataset not found: {path}")
        else:
            ds = datasets.load_dataset(path, config, split=split)
    except FusekitError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure is bad input here
        raise FusekitError(f"cannot load dataset {path} (config {config}, split {split}): "
                           f"{type(e).__name__}: {e}") from e
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def _load_folder(p: Path, config: str | None, split: str):
    import datasets

    configs = datasets.get_dataset_config_names(str(p))
    if config is not None and config not in configs:
        raise FusekitError(f"{p}: no dataset config {config!r} (has {', '.join(configs)})")
    try:
        return datasets.load_dataset(str(p), config, split=split, **FRESH)
    except ValueError as e:
        if "split" in str(e).lower():
            raise FusekitError(f"{p}: config {config!r} has no split {split!r}") from e
        raise


def dataset_config(method: str, path: str, config: str | None) -> str | None:
    """The config to read: the recipe's, else the method's fusedata config when the folder has it."""
    if config is not None:
        return config
    p = Path(path).expanduser()
    if p.is_dir() and (p / "README.md").is_file() and (p / "data").is_dir():
        return DEFAULT_CONFIG[method]
    return None


# --------------------------------------------------------------------------- #
# rows → (prompt, responses, weights) in text/messages form (pure)
# --------------------------------------------------------------------------- #


def _need(row: dict[str, Any], cols: Iterable[str], method: str, i: int) -> None:
    missing = [c for c in cols if c not in row or row[c] is None]
    if missing:
        raise FusekitError(f"row {i}: method {method} needs column(s) {', '.join(missing)}; "
                           f"the dataset has {', '.join(sorted(row)) or 'none'}")


def _as_messages(value: Any, role: str) -> Messages | str:
    """A message list, or a plain string (TRL standard format)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return value
    raise FusekitError(f"expected a string or {role} messages, got {type(value).__name__}")


def _response(value: Any) -> dict[str, Any] | str:
    v = _as_messages(value, "assistant")
    if isinstance(v, str):
        return v
    if not v:
        raise FusekitError("empty response message list")
    return v[-1]


def _implicit(chosen: Messages, rejected: Messages) -> tuple[Messages, dict, dict]:
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    return chosen[:n], chosen[-1], rejected[-1]


Group = tuple[Any, list[Any], list[float]]  # (prompt, responses, weights)


def _group_by_prompt(rows: list[dict[str, Any]], method: str) -> "OrderedDict[str, list[tuple[int, dict]]]":
    groups: OrderedDict[str, list[tuple[int, dict]]] = OrderedDict()
    for i, row in enumerate(rows):
        _need(row, ["prompt_id"], method, i)
        groups.setdefault(str(row["prompt_id"]), []).append((i, row))
    return groups


def _sft_parts(row: dict[str, Any], method: str, i: int) -> tuple[Any, Any]:
    if "messages" in row and row["messages"] is not None:
        msgs = _as_messages(row["messages"], "chat")
        if isinstance(msgs, str) or len(msgs) < 2 or msgs[-1].get("role") != "assistant":
            raise FusekitError(f"row {i}: 'messages' must end with an assistant message after the prompt")
        return msgs[:-1], msgs[-1]
    _need(row, ["prompt", "completion"], method, i)
    return _as_messages(row["prompt"], "user"), _response(row["completion"])


def to_groups(rows: list[dict[str, Any]], method: str) -> list[Group]:
    """Rows → (prompt, responses, weights) per training example, in the module table's layout."""
    if not rows:
        raise FusekitError("the dataset is empty")
    out: list[Group] = []
    if method == "sft":
        for i, row in enumerate(rows):
            prompt, resp = _sft_parts(row, method, i)
            out.append((prompt, [resp], [float(row.get("weight") or 1.0)]))
    elif method in ("fusesft", "rloo") and not (method == "rloo" and "completions" in rows[0]):
        key = "score" if method == "rloo" else "weight"
        for pid, members in _group_by_prompt(rows, method).items():
            parts = [_sft_parts(r, method, i) for i, r in members]
            for i, r in members:
                _need(r, [key], method, i)
            out.append((parts[0][0], [p[1] for p in parts], [float(r[key]) for _, r in members]))
    elif method == "rloo":
        for i, row in enumerate(rows):
            _need(row, ["prompt", "completions", "rewards"], method, i)
            if len(row["completions"]) != len(row["rewards"]):
                raise FusekitError(f"row {i}: {len(row['completions'])} completions but {len(row['rewards'])} rewards")
            out.append((_as_messages(row["prompt"], "user"), [_response(c) for c in row["completions"]],
                        [float(r) for r in row["rewards"]]))
    elif method in ("dpo", "simpo"):
        for i, row in enumerate(rows):
            prompt, pair = _pair(row, method, i)
            out.append((prompt, pair, [1.0]))
    elif method == "wrpo":
        for i, row in enumerate(rows):
            if "chosen_source" in row:
                _need(row, ["prompt", "chosen_source", "chosen_target", "rejected"], method, i)
                resp = [_response(row["chosen_source"]), _response(row["chosen_target"]), _response(row["rejected"])]
            else:
                _need(row, ["prompt", "chosen", "rejected"], method, i)
                chosen = row["chosen"]
                if not isinstance(chosen, list) or len(chosen) != 2:
                    raise FusekitError(f"row {i}: WRPO needs 'chosen' = [y_ws, y_wt] (2 responses) or the columns "
                                       "chosen_source/chosen_target")
                resp = [_response(chosen[0]), _response(chosen[1]), _response(row["rejected"])]
            out.append((_as_messages(row["prompt"], "user"), resp, [1.0]))
    elif method == "fusepo":
        for pid, members in _group_by_prompt(rows, method).items():
            prompt, resp, weights = None, [], []
            for i, r in members:
                p, pair = _pair(r, method, i)
                prompt = p if prompt is None else prompt
                resp.extend(pair)
                weights.append(float(r.get("weight") if r.get("weight") is not None else 1.0))
            out.append((prompt, resp, weights))
    else:
        raise FusekitError(f"unknown method {method!r}")
    return out


def _pair(row: dict[str, Any], method: str, i: int) -> tuple[Any, list[Any]]:
    _need(row, ["chosen", "rejected"], method, i)
    if row.get("prompt") is not None:
        return _as_messages(row["prompt"], "user"), [_response(row["chosen"]), _response(row["rejected"])]
    chosen, rejected = _as_messages(row["chosen"], "chat"), _as_messages(row["rejected"], "chat")
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise FusekitError(f"row {i}: no 'prompt' column and chosen/rejected are not conversations")
    prompt, c, r = _implicit(chosen, rejected)
    if not prompt:
        raise FusekitError(f"row {i}: chosen and rejected share no prompt messages")
    return prompt, [c, r]


# --------------------------------------------------------------------------- #
# tokenization (pure given a tokenizer)
# --------------------------------------------------------------------------- #


class Encoder:
    """Prompt and response ids for one tokenizer and chat template."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.eos = tokenizer.eos_token
        self.fallbacks = 0
        if tokenizer.eos_token_id is None:
            raise FusekitError("the tokenizer has no EOS token; set one before training")

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def prompt_text(self, prompt: Messages | str) -> str:
        if isinstance(prompt, str):
            return prompt
        if not self.tok.chat_template:
            raise FusekitError("the tokenizer has no chat template, so conversational data cannot be rendered")
        return self.tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)

    def response_text(self, prompt: Messages | str, prompt_text: str, response: dict | str) -> str:
        content = response if isinstance(response, str) else str(response.get("content") or "")
        if isinstance(prompt, str) or isinstance(response, str):
            return content + self.eos
        full = self.tok.apply_chat_template(list(prompt) + [response], tokenize=False)
        if not full.startswith(prompt_text):
            # Templates that rewrite earlier turns (e.g. dropping <think> blocks) break the
            # prefix property; train on the content plus EOS rather than a shifted boundary.
            self.fallbacks += 1
            return content + self.eos
        text = full[len(prompt_text):]
        cut = text.rfind(self.eos) if self.eos else -1
        # End at the end-of-turn token: what follows (a newline) is never generated.
        return text[:cut + len(self.eos)] if cut >= 0 else text + self.eos

    def encode(self, prompt: Messages | str, responses: list[Any]) -> tuple[list[int], list[list[int]]]:
        ptext = self.prompt_text(prompt)
        return self._ids(ptext), [self._ids(self.response_text(prompt, ptext, r)) for r in responses]


def truncate(prompt: list[int], responses: list[list[int]], max_length: int, max_prompt_length: int
             ) -> tuple[list[int], list[list[int]], bool, int]:
    """Keep the prompt's end (up to ``max_prompt_length``) when prompt + longest response is too long,
    then cut responses to fit. Returns (prompt, responses, prompt_cut, n_responses_cut)."""
    longest = max(len(r) for r in responses)
    cut_prompt = False
    if len(prompt) + longest > max_length and len(prompt) > max_prompt_length:
        prompt, cut_prompt = prompt[-max_prompt_length:], True
    room = max_length - len(prompt)
    cut = sum(len(r) > room for r in responses)
    return prompt, [r[:max(room, 0)] for r in responses], cut_prompt, cut


def tokenize(groups: list[Group], tokenizer: Any, max_length: int, max_prompt_length: int,
             on_empty: str = "error") -> tuple[list[Example], TokenizeReport]:
    """Groups → :class:`Example` list; raises on an empty response unless ``on_empty='drop'``."""
    enc = Encoder(tokenizer)
    rep = TokenizeReport(rows=len(groups))
    examples: list[Example] = []
    for gi, (prompt, responses, weights) in enumerate(groups):
        p_ids, r_ids = enc.encode(prompt, responses)
        p_ids, r_ids, pcut, rcut = truncate(p_ids, r_ids, max_length, max_prompt_length)
        if any(len(r) == 0 for r in r_ids):
            if on_empty == "drop":
                rep.dropped_empty += 1
                continue
            raise FusekitError(f"example {gi}: a response truncates to nothing (prompt {len(p_ids)} tokens, "
                               f"max_length {max_length}); raise data.max_length, lower data.max_prompt_length "
                               "or set data.on_empty: drop")
        rep.truncated_prompts += pcut
        rep.truncated_responses += rcut
        examples.append(Example(len(examples), p_ids, r_ids, list(weights), rcut))
    rep.examples = len(examples)
    rep.template_fallbacks = enc.fallbacks
    if not examples:
        raise FusekitError("no training examples left after tokenization")
    return examples, rep


def fingerprint(examples: list[Example]) -> str:
    """sha256 over every example's token ids: the identity of the tokenized dataset."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(repr((ex.prompt_ids, ex.responses)).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- #
# collation
# --------------------------------------------------------------------------- #


@dataclass
class Batch:
    """A micro-batch: every response of every example as one sequence (prompt + response).

    Sequences are ordered example by example, responses in their order. ``gather_index``
    picks, from the flattened ``[rows * T]`` hidden states, the positions that predict a
    response token; ``targets`` are those tokens and ``segment`` the sequence each belongs to.
    Padded: ``input_ids`` is ``[S, T]`` with ``attention_mask``. Packed: ``[1, ΣT]`` with
    ``position_ids`` restarting at 0 per sequence and no attention mask.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    gather_index: torch.Tensor
    targets: torch.Tensor
    segment: torch.Tensor
    n_seqs: int
    examples: list[Example]
    n_tokens: int  # non-pad tokens

    def inputs(self) -> dict[str, Any]:
        """Keyword arguments of ``SequenceLogps.forward``."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids,
                "gather_index": self.gather_index, "targets": self.targets, "segment": self.segment,
                "n_seqs": self.n_seqs}

    def to(self, device: torch.device | str) -> "Batch":
        def mv(t):
            return None if t is None else t.to(device, non_blocking=True)
        return Batch(mv(self.input_ids), mv(self.attention_mask), mv(self.position_ids), mv(self.gather_index),
                     mv(self.targets), mv(self.segment), self.n_seqs, self.examples, self.n_tokens)


def collate(examples: list[Example], pad_id: int, packing: bool = False) -> Batch:
    seqs = [(ex.prompt_ids, r) for ex in examples for r in ex.responses]
    lengths = [len(p) + len(r) for p, r in seqs]
    gather, targets, segment = [], [], []
    if packing:
        ids, pos, offset = [], [], 0
        for s, (p, r) in enumerate(seqs):
            full = p + r
            ids.extend(full)
            pos.extend(range(len(full)))
            # position j predicts token j+1; response tokens are full[len(p):]
            for j in range(len(p) - 1, len(full) - 1):
                gather.append(offset + j)
                targets.append(full[j + 1])
                segment.append(s)
            offset += len(full)
        input_ids = torch.tensor([ids], dtype=torch.long)
        attention_mask, position_ids = None, torch.tensor([pos], dtype=torch.long)
    else:
        width = max(lengths)
        input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for s, (p, r) in enumerate(seqs):
            full = p + r
            input_ids[s, :len(full)] = torch.tensor(full)
            attention_mask[s, :len(full)] = 1
            for j in range(len(p) - 1, len(full) - 1):
                gather.append(s * width + j)
                targets.append(full[j + 1])
                segment.append(s)
        position_ids = None
    return Batch(input_ids, attention_mask, position_ids, torch.tensor(gather, dtype=torch.long),
                 torch.tensor(targets, dtype=torch.long), torch.tensor(segment, dtype=torch.long),
                 len(seqs), list(examples), sum(lengths))
