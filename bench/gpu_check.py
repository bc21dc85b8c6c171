"""GPU check: batched generation on CUDA equals one-by-one, and PAG-RL steps run on CUDA in bf16, with rollouts
one at a time and batched (``batch_rollouts``), micro-batched loss (a random 4-layer Qwen2, the student's tokenizer).
Writes ``$OUT/gpu_check.json`` (copied to ``bench/results/gpu_check.json``).

    python bench/gpu_check.py <tokenizer folder>     # on a CUDA machine with parlmt importable

The device machines lent to sessions have torch, transformers, peft and accelerate but no internet: the run there
carried wheels of trl, datasets, dspy and their dependencies (litellm unpacked, its proxy UI removed: 22 MB as .tar.xz)
and the student's tokenizer files, and put the repository on ``PYTHONPATH`` as ``parlmt``.
"""
import json
import os
import sys
import time

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

out = os.environ.get("OUT", "/tmp")
report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
tok = AutoTokenizer.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else ".gpu/tok")
config = Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                     tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
Qwen2ForCausalLM(config).save_pretrained("/tmp/tiny")
tok.save_pretrained("/tmp/tiny")

from parlmt.models import ModelConfig, TransformersLM  # noqa: E402

lm = TransformersLM(ModelConfig("/tmp/tiny", dtype="float32", device="cuda"), max_tokens=8)
prompts = [tok(t)["input_ids"] for t in ("short", "a much longer prompt than the first one here", "mid one")]
batch = lm.generate_ids(prompts, max_tokens=8)
alone = [lm.generate_ids([p], max_tokens=8)[0] for p in prompts]
pairs = list(zip(batch, alone, strict=True))
report["batched_equals_alone"] = all(b.completion_ids == a.completion_ids for b, a in pairs)
report["max_logprob_diff"] = max(max(abs(x - y) for x, y in zip(b.logprobs, a.logprobs, strict=True)) for b, a in pairs)

from parlmt.rl.config import PAGRLConfig  # noqa: E402
from parlmt.rl.grpo import build_trainer  # noqa: E402

for batched in (False, True):
    cfg = PAGRLConfig(model="/tmp/tiny", dtype="bfloat16", device="cuda", categories="py:todo",
                      tasks="py:todo:0,py:todo:1", start_turns="0", num_generations=8, states_per_step=2,
                      max_completion_tokens=32, max_steps_per_turn=1, max_steps=2, save_steps=0, eval_steps=0,
                      micro_batch_size=4, beta=0.01, batch_rollouts=batched, output_dir=f"/tmp/rl{batched}")
    trainer = build_trainer(cfg)
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    steps = [e for e in trainer.state.log_history if "pag/samples" in e]
    report[f"rl_batch_rollouts_{batched}"] = {
        "wall_s": round(time.perf_counter() - started, 2), "steps": len(steps),
        "samples": [e["pag/samples"] for e in steps], "loss": [e["loss"] for e in steps],
        "step_time": [round(e["step_time"], 3) for e in steps],
        "param_device": str(next(trainer.model.parameters()).device),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20),
    }
print(json.dumps(report, indent=2))
with open(f"{out}/gpu_check.json", "w") as f:
    json.dump(report, f, indent=2)
