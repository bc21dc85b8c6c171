"""Where open models come from and how programs talk to them.

- ``embedded``: the student/teacher GGUF models shipped as PyPI packages (assemble + verify).
- ``loading``: ``ModelConfig`` and ``load_model`` for embedded models, .gguf files, HF folders, hub ids.
- ``lm``: ``TransformersLM``, an in-process ``dspy.BaseLM`` that also returns token ids for RL.
- ``serve``: ``LlamaServer``, llama.cpp's OpenAI-compatible server (optional extra ``serve``).

Names are imported on first use (PEP 562) so that ``parlmt --help`` does not load torch.
"""

from parlmt import lazy_exports

_EXPORTS = {
    "EMBEDDED_MODELS": "embedded", "ModelPartsError": "embedded", "assemble": "embedded",
    "cache_dir": "embedded", "verify_file": "embedded",
    "ModelConfig": "loading", "load_model": "loading", "load_tokenizer": "loading", "default_dtype": "loading",
    "Sample": "lm", "TransformersLM": "lm", "make_lm": "lm",
    "LlamaServer": "serve", "ServerError": "serve",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
