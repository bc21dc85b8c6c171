"""Shared fixtures: the real embedded student, a tiny random model with the student's tokenizer, and
``ScriptedPolicy``, a policy LM that answers from a script."""

import itertools

import pytest
import torch

from parlmt.models import ModelConfig, Sample, TransformersLM, load_model, load_tokenizer


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


class ScriptedPolicy(TransformersLM):
    """A policy LM (``trainer.policy_lm``) whose completions come from ``script`` instead of sampling: a random
    tiny model never writes a parseable call, so its rollouts' rewards would not differ. ``script`` maps an
    output field (``summary``, ``plan``, ``calls``, ...) to the texts written, in turn and cycled, whenever a
    prompt asks for that field. Prompts are rendered by the real chat template, so the trainer scores the
    real token ids."""

    def __init__(self, model, tokenizer, script: dict[str, list[str]]):
        super().__init__(model=model, tokenizer=tokenizer, temperature=1.0, max_tokens=40, record_samples=True)
        self.cycles = {field: itertools.cycle(texts) for field, texts in script.items()}

    def generate(self, messages, **options) -> Sample:
        outputs = messages[0]["content"].split("Your output fields are:")[1].split("All interactions")[0]
        field = next(f for f in self.cycles if f"`{f}` (str)" in outputs)
        text = next(self.cycles[field])
        prompt_ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                        return_dict=True)["input_ids"]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        sample = Sample(messages, list(prompt_ids), ids, [0.0] * len(ids), text, "stop")
        self.samples.append(sample)
        return sample


@pytest.fixture(scope="session")
def scripted_trainer():
    """``scripted_trainer(config, script)``: the PAG-RL trainer of ``config`` generating through a
    ``ScriptedPolicy`` answering from ``script``."""

    def build(config, script: dict[str, list[str]]):
        from parlmt.rl.grpo import build_trainer

        trainer = build_trainer(config)
        trainer.policy_lm = ScriptedPolicy(trainer.model, trainer.processing_class, script)
        return trainer

    return build


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
