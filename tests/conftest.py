"""Shared fixtures: the real embedded student, and a tiny random model with the student's tokenizer."""

import pytest
import torch

from parlmt.models import ModelConfig, load_model, load_tokenizer


@pytest.fixture(scope="session")
def student():
    """The embedded Qwen2.5-Coder-0.5B student, loaded once (bf16, CPU)."""
    return load_model(ModelConfig())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised 2-layer Qwen2 saved as a local HF folder (no download)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("embedded:student")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
