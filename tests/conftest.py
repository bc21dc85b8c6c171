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


# A short `parlmt demo`: every stage on the tiny model, one dev entry, a few tokens per module call.
SHORT_DEMO = ["--quick", "--max-tokens", "16", "--max-steps-per-turn", "1", "--train-limit", "2", "--sft-steps", "2"]


@pytest.fixture(scope="session")
def demo_cli(tiny_model_dir):
    """``parlmt demo`` (short, on the tiny model unless ``model`` says otherwise) into ``folder``/demo and
    ``folder``/mlruns, as a function returning the exit code, stdout and stderr."""
    import contextlib
    import io

    from parlmt.cli import main

    def run(folder, *extra: str, model=tiny_model_dir) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["demo", *SHORT_DEMO, "--model", str(model), "--out", str(folder / "demo"),
                         "--mlruns", str(folder / "mlruns"), *extra])
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def demo_run(demo_cli, tmp_path_factory):
    """One finished short demo: its folder (``demo/``, ``mlruns/``) and printed table."""
    folder = tmp_path_factory.mktemp("demo")
    code, stdout, stderr = demo_cli(folder)
    assert code == 0, stderr[-3000:]
    return folder, stdout
