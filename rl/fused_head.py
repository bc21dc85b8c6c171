"""TRL's fused log-prob LM head, made to score only labelled (completion) tokens on every device.

TRL 1.16 computes the training log-probs without materialising the full logits (a chunked LM head).
On Triton devices it scores only the labelled positions; elsewhere it scores every position, prompt
included, to keep tile shapes static for compiled backends such as Neuron. On CPU that multiplies
the LM-head work by prompt/completion length: ~100x for a 2k-token Act prompt with 16 new tokens,
and an SFT step on 8 short rows of the tiny test model went from ~1 s to ~40 s. The CPU tiles accept
any shape, so the compact path is safe there. Both trainers (SFT and GRPO) run inside this context.
"""

import contextlib
from collections.abc import Iterator

from trl.trainer import utils as trl_utils


@contextlib.contextmanager
def completion_tokens_only() -> Iterator[None]:
    """Within the block, TRL's fused head scores only positions that have a label."""
    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original
