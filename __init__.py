"""parl-mt: progress-aware multi-turn function-calling agents (PARL-MT, arXiv 2509.23206).

Subpackages, one per pipeline stage: ``envs`` (tool environments), ``signatures`` and
``programs`` (the DSPy agent), ``optimize`` (teacher prompts + PAG data), ``rl`` (SFT and
PAG-RL), ``models`` (embedded open models and LM adapters).
"""

import importlib
import os
from collections.abc import Callable

# Both libraries reach for the network at import time unless told otherwise, and this
# project must run offline: set the defaults before any submodule imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A PEP 562 ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule) on
    first use, so that ``parlmt --help`` does not load torch or DSPy."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
