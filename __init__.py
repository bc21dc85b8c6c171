"""parl-mt: progress-aware multi-turn function-calling agents (PARL-MT, arXiv 2509.23206).

Subpackages, one per pipeline stage: ``envs`` (tool environments), ``signatures`` and
``programs`` (the DSPy agent), ``optimize`` (teacher prompts + PAG data), ``rl`` (SFT and
PAG-RL), ``models`` (embedded open models and LM adapters).
"""

import os

# Both libraries reach for the network at import time unless told otherwise, and this
# project must run offline: set the defaults before any submodule imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
