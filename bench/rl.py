"""PAG-RL speed: seconds per step (rollouts and update apart) and per generated token of the PAG-RL loop
against plain TRL GRPO on the same model and prompts, the same loop on the old path (no prefix KV cache in
rollouts, no shared prefixes in the update), peak RSS of each, and tokens per sample of ProgressAware vs
FullHistory rollouts.

Each measurement runs in its own process (peak RSS is per process). Writes bench/results/<name>.json, and
``rl_step_ratio`` (PAG-RL s/step, new path / old) and ``vs_plain_trl`` (PAG-RL / plain TRL GRPO, s per
generated token) into bench/results/loop.json.

    python bench/rl.py                       # embedded student, the CPU's default dtype, py:todo states
    python bench/rl.py --name rl-bfcl --tasks bfcl:base:1,bfcl:base:3 --program fullhistory --g 4 \
        --tokens 96 --max-steps-per-turn 2 --micro-batch-size 1 --beta 0.01    # the recipe's RL shape
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

RESULTS = Path(__file__).parent / "results"
LOOP_RESULTS = RESULTS / "loop.json"
TASKS = "py:todo:0,py:todo:1"  # train-split tasks with short prompts (~600 tokens): a CPU bench in minutes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pag_config(args, output_dir: str):
    from parlmt.rl.config import PAGRLConfig

    program = {"program": args.program} if args.program else {}
    return PAGRLConfig(model=args.model, dtype=args.dtype, tasks=args.tasks, start_turns="0", num_generations=args.g,
                       states_per_step=1, max_completion_tokens=args.tokens, max_steps_per_turn=args.max_steps_per_turn,
                       micro_batch_size=args.micro_batch_size, max_steps=args.steps, save_steps=0, eval_steps=0,
                       beta=args.beta, output_dir=output_dir, mlruns=str(Path(output_dir) / "mlruns"), **program)


class StepClock:
    """A TrainerCallback recording wall seconds per optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                clock.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                clock.seconds.append(time.perf_counter() - clock.started)

        self.seconds: list[float] = []
        self.callback = Callback()


def run_pag(args, new_path: bool = True) -> dict:
    """PAG-RL steps; the old path has no prefix KV cache in rollouts and forwards every row whole in the update."""
    from dataclasses import replace

    from parlmt.rl.grpo import build_trainer

    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(replace(pag_config(args, folder), share_prefixes=new_path, merge_adapter=new_path))
        trainer.policy_lm.prefix_cache = new_path
        clock = StepClock()
        trainer.add_callback(clock.callback)
        trainer.train()
        history = [e for e in trainer.state.log_history if "pag/samples" in e]
        prompts = trainer.pop_table()
    tokens = [e["completions/mean_length"] * e["pag/samples"] for e in history]
    return {"step_s": clock.seconds, "rollout_s": [e["pag/rollout_s"] for e in history], "generated_tokens": tokens,
            "samples": [e["pag/samples"] for e in history],
            "update_tokens_spared": [e.get("pag/update_tokens_spared", 0.0) for e in history],
            "prompt_tokens_mean": mean(r["prompt_tokens"] for r in prompts), "peak_rss_mb": peak_rss_mb()}


def run_plain(args) -> dict:
    """Stock GRPOTrainer on the same model: the Act prompts of the same tasks (rendered by the agent's
    adapter), G completions each, as many prompts per step as the PAG loop has samples per rollout."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from parlmt.envs import load_task
    from parlmt.models import ModelConfig, load_model
    from parlmt.rl.data import reference_rows
    from parlmt.rl.fused_head import completion_tokens_only

    tasks = [load_task(t) for t in args.tasks.split(",")]
    rows = [r for r in reference_rows(tasks, modules=["plan", "act"]) if r["turn"] == 0 and r["step"] == 0]
    model, tokenizer = load_model(ModelConfig(args.model, args.dtype), trainable=True)
    per_step = args.prompts_per_step
    config = GRPOConfig(
        # as in the PAG loop: one generation round per optimizer step, every completion trained on in that step
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.g, gradient_accumulation_steps=per_step,
        steps_per_generation=per_step, num_generations=args.g, max_completion_length=args.tokens,
        temperature=1.0, beta=0.0, max_steps=args.steps, logging_steps=1, save_strategy="no",
        report_to="none", bf16=args.dtype == "bfloat16", use_cpu=True, gradient_checkpointing=False, seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **_: [len(str(c)) / 100 for c in completions]],
                          args=config, train_dataset=Dataset.from_list([{"prompt": r["prompt"]} for r in rows]),
                          processing_class=tokenizer,
                          peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    clock = StepClock()
    trainer.add_callback(clock.callback)
    with completion_tokens_only():  # the same CPU fix the PAG trainers use, so the comparison is fair
        trainer.train()
    history = [e for e in trainer.state.log_history if "completions/mean_length" in e]
    tokens = [e["completions/mean_length"] * args.g * per_step for e in history]
    return {"step_s": clock.seconds, "generated_tokens": tokens, "samples": [args.g * per_step] * len(history),
            "peak_rss_mb": peak_rss_mb()}


def run_tokens(args) -> dict:
    """Mean prompt/completion tokens per module-call sample, ProgressAware vs FullHistory, at turn 1
    (turn 0 replayed from the ground truth, so FullHistory's transcript and Summarize have something to read)."""
    from parlmt.envs import load_task
    from parlmt.models import ModelConfig, TransformersLM, load_model
    from parlmt.programs.agents import ProgressAwareAgent
    from parlmt.programs.trajectory import ACT
    from parlmt.rl.rollout import play

    model, tokenizer = load_model(ModelConfig(args.model, args.dtype))
    lm = TransformersLM(model=model, tokenizer=tokenizer, temperature=1.0, max_tokens=args.tokens,
                        record_samples=True)
    figures = {}
    for program in ("progress", "fullhistory"):
        samples = []
        for task_id in args.tasks.split(","):
            samples += play(program, load_task(task_id), 1, lm, max_steps_per_turn=2).samples
        acts = [s for s in samples if s.tags["module"] == ACT]
        figures[program] = {
            "samples": len(samples),
            "prompt_tokens_per_sample": mean(len(s.prompt_ids) for s in samples),
            "completion_tokens_per_sample": mean(len(s.completion_ids) for s in samples),
            "act_prompt_tokens": mean(len(s.prompt_ids) for s in acts),
            "by_module": {m: sum(s.tags["module"] == m for s in samples) for m in ProgressAwareAgent.module_names()},
        }
    return figures


PARTS = {"pag": run_pag, "pag_old": lambda args: run_pag(args, new_path=False), "plain": run_plain,
         "tokens": run_tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="rl", help="results file: bench/results/<name>.json")
    parser.add_argument("--model", default="embedded:student")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 where the CPU computes it natively, else "
                                                        "float32")
    parser.add_argument("--tasks", default=TASKS, help="train states (turn 0 of each), comma-separated task ids")
    parser.add_argument("--program", default=None, help="agent program (default: PAGRLConfig's)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per trainer (the first is warm-up)")
    parser.add_argument("--g", type=int, default=2, help="rollouts (generations) per state/prompt")
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per module call / completion")
    parser.add_argument("--max-steps-per-turn", type=int, default=1, help="Act steps per turn in rollouts")
    parser.add_argument("--micro-batch-size", type=int, default=2, help="PAGRLConfig.micro_batch_size")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference forward)")
    parser.add_argument("--prompts-per-step", type=int, default=2,
                        help="plain GRPO prompts per step (PAG: Plan + Act per rollout at turn 0 = 2)")
    parser.add_argument("--parts", default="pag,pag_old,plain,tokens", help="parts to measure")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from parlmt.models.loading import default_dtype, resolve_dtype
    from parlmt.tracking import cpu_model

    args.dtype = resolve_dtype(args.dtype)
    if args.part:
        print(json.dumps(PARTS[args.part](args)))
        return 0
    load_at_start = os.getloadavg()[0]
    parts = {}
    for part in args.parts.split(","):
        argv = [sys.executable, __file__, "--part", part]
        for key, value in vars(args).items():
            if key not in ("part", "parts", "name") and value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        started = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        parts[part] = json.loads(out.strip().splitlines()[-1])
        print(f"{part}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    summary = {}
    for name in ("pag", "pag_old", "plain"):
        if name not in parts:
            continue
        measured = parts[name]
        steps = measured["step_s"][1:]  # the first step pays one-off costs
        tokens = measured["generated_tokens"][1:]
        if len(steps) != len(tokens) or not steps:
            raise RuntimeError(f"{name}: {len(steps)} timed steps but {len(tokens)} generation rounds after warm-up")
        summary[name] = {"s_per_step": mean(steps), "s_per_generated_token": sum(steps) / sum(tokens),
                         "generated_tokens_per_step": mean(tokens), "peak_rss_mb": measured["peak_rss_mb"],
                         "raw": measured}
        if "rollout_s" in measured:
            rollouts = measured["rollout_s"][1:]
            summary[name]["rollout_s_per_step"] = mean(rollouts)
            summary[name]["update_s_per_step"] = mean(s - r for s, r in zip(steps, rollouts, strict=True))
    if {"pag", "pag_old"} <= summary.keys():
        summary["rl_step_ratio"] = summary["pag"]["s_per_step"] / summary["pag_old"]["s_per_step"]
        summary["update_ratio"] = summary["pag"]["update_s_per_step"] / summary["pag_old"]["update_s_per_step"]
        summary["rollout_ratio"] = summary["pag"]["rollout_s_per_step"] / summary["pag_old"]["rollout_s_per_step"]
        summary["peak_rss_ratio"] = summary["pag"]["peak_rss_mb"] / summary["pag_old"]["peak_rss_mb"]
    if {"pag", "plain"} <= summary.keys():
        summary["vs_plain_trl"] = summary["pag"]["s_per_generated_token"] / summary["plain"]["s_per_generated_token"]
    if "tokens" in parts:
        summary["tokens_per_sample"] = parts["tokens"]
    summary["setup"] = {key: value for key, value in vars(args).items() if key not in ("part", "name")}
    summary["machine"] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
                          "dtype_reason": default_dtype()[1], "load_avg_at_start": load_at_start,
                          "load_avg_at_end": os.getloadavg()[0]}
    summary["command"] = "python bench/rl.py " + " ".join(sys.argv[1:])
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    ratios = {key: round(summary[key], 3) for key in ("rl_step_ratio", "vs_plain_trl") if key in summary}
    if ratios:  # each figure with the run that measured it: one run may leave the other figure as it was
        loop = json.loads(LOOP_RESULTS.read_text()) if LOOP_RESULTS.exists() else {}
        sources = loop.setdefault("rl_sources", {})
        for key, value in ratios.items():
            loop[key] = value
            sources[key] = {field: summary[field] for field in ("command", "setup", "machine")}
        LOOP_RESULTS.write_text(json.dumps(loop, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "tokens_per_sample"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
