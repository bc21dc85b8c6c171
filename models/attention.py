"""Attention for decoding grouped-query models: transformers' SDPA, with a lone query token's heads packed
onto the key/value heads whether or not a mask is given.

Given no mask (one unpadded row, or rows of equal length), transformers' SDPA path has torch expand the
key/value heads (``enable_gqa=True``). For a single query token, torch's CPU kernel then runs 10-20x
slower in bfloat16 than the same attention with the query heads of each key/value head stacked as its
queries, the layout transformers already uses when there is a mask: the student's whole decode step takes
about 1.4x as long at batch 1 and several times as long at batch 8 (``bench/attention.py``). Same
attention, another kernel: outputs agree to rounding.
"""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_packed"


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa_attention_forward``, except that one unmasked query token of a grouped-query
    layer attends as its key/value heads' stacked queries (``[batch, kv_heads, groups, dim]``)."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if length != 1 or groups == 1 or attention_mask is not None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    output = torch.nn.functional.scaled_dot_product_attention(
        query.reshape(batch, heads // groups, groups, dim), key, value, dropout_p=dropout, scale=scaling)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, packed_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_packed_attention(model) -> None:
    """Switch ``model`` (and its sub-models) from transformers' SDPA to ``packed_sdpa_attention``; models
    on another attention implementation (eager, flash) keep it."""
    if model.config.get_text_config()._attn_implementation == "sdpa":
        model.set_attn_implementation(NAME)
