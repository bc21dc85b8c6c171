"""Packed decode attention (``models.attention``): what transformers' SDPA computes, on every path a decode
step takes (one row, equal rows without a mask, padded rows with one). Float64 on a tiny grouped-query model
(6 query heads on 2 key/value heads: groups of 3, so that a packing of the wrong axis shows), so the two
kernels agree to rounding on every CPU."""

import torch

from parlmt.models import ModelConfig, load_model, load_tokenizer
from parlmt.models.attention import NAME


def grouped_model_dir(folder):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("embedded:student")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=6, num_key_value_heads=2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def decode_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """Logits of a prefill and ``steps`` greedy decode steps, one query token each."""
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True)
        cache, logits = out.cache, [out.logits[:, -1]]
        for _ in range(steps):
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(input_ids), 1)], 1)
            out = model(input_ids=logits[-1].argmax(-1, keepdim=True), attention_mask=attention_mask,
                        cache=cache, use_cache=True)
            logits.append(out.logits[:, -1])
    return torch.stack(logits, 1)


def test_packed_decode_attention_computes_what_sdpa_does(tmp_path):
    model, _ = load_model(ModelConfig(model=str(grouped_model_dir(tmp_path)), dtype="float64"))
    assert model.config._attn_implementation == NAME  # load_model switches it on
    torch.manual_seed(0)
    ids = torch.randint(100, 5000, (3, 40))
    padded = torch.ones_like(ids)
    padded[1, :7] = 0
    for rows, mask in ((ids[:1], torch.ones_like(ids[:1])), (ids, torch.ones_like(ids)), (ids, padded)):
        packed = decode_logits(model, rows, mask)
        model.set_attn_implementation("sdpa")
        plain = decode_logits(model, rows, mask)
        model.set_attn_implementation(NAME)
        torch.testing.assert_close(packed, plain, rtol=1e-12, atol=1e-12)
