"""Eval loop speed: greedy ProgressAwareAgent episodes on fixed dev entries, prefix KV cache off vs on.

One student (``ModelConfig()``: the embedded 0.5B in this CPU's default dtype) serves two LMs, one
without the prefix cache (old) and one with it (new). Each entry is played by both, old first on
even entries and new first on odd ones, so that load from other processes falls on both alike.
Reports dev turns per minute of each, their ratio (``eval_speedup``), whether every module call's
output text is identical, the share of prompt tokens the cache served, peak RSS, and the machine,
CPU and load. Entries are the first dev-split BFCL base entries, in index order.

    python bench/loop.py                 # 2 entries, 4 steps a turn, 64 tokens a call: ~10-15 min, 2 quiet cores
    python bench/loop.py --entries 5     # the full figure
"""

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import torch  # noqa: E402
from lm_speed import cpu_model  # noqa: E402

from parlmt.envs import load_task  # noqa: E402
from parlmt.envs.splits import split_indices  # noqa: E402
from parlmt.models import ModelConfig, TransformersLM, load_model  # noqa: E402
from parlmt.models.loading import default_dtype  # noqa: E402
from parlmt.programs import ProgressAwareAgent  # noqa: E402

BFCL_BASE_ENTRIES = 200


def play(lm: TransformersLM, task_id: str, max_steps: int) -> dict:
    """One greedy episode: its wall time, turns played and every module call's output text."""
    first = len(lm.samples)
    started = time.perf_counter()
    with dspy.context(lm=lm):
        result = ProgressAwareAgent(max_steps=max_steps)(task=load_task(task_id))
    return {"wall_s": time.perf_counter() - started, "turns": len(result.trajectory.turns),
            "texts": [sample.text for sample in lm.samples[first:]]}


def figures(runs: list[dict]) -> dict:
    wall = sum(run["wall_s"] for run in runs)
    turns = sum(run["turns"] for run in runs)
    return {"wall_s": round(wall, 1), "turns": turns, "module_calls": sum(len(run["texts"]) for run in runs),
            "turns_per_min": round(60 * turns / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2, help="first dev-split BFCL base entries to play")
    parser.add_argument("--max-steps-per-turn", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64, help="completion cap per module call")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loop.json")
    args = parser.parse_args()

    load_at_start = round(os.getloadavg()[0], 2)
    model, tokenizer = load_model(ModelConfig())
    lms = {name: TransformersLM(model=model, tokenizer=tokenizer, max_tokens=args.max_tokens, temperature=0.0,
                                record_samples=True, prefix_cache=name == "new") for name in ("old", "new")}
    for lm in lms.values():  # the first call pays one-off allocation costs
        lm.generate([{"role": "user", "content": "Hi."}], max_tokens=2)
        lm.samples.clear()
    prefixes = lms["new"].prefixes
    served_before, prompted_before = prefixes.reused_tokens, prefixes.prompt_tokens
    tasks = [f"bfcl:base:{index}" for index in split_indices(BFCL_BASE_ENTRIES)["dev"][: args.entries]]
    runs = {name: [] for name in lms}
    for number, task_id in enumerate(tasks):
        for name in ("old", "new") if number % 2 == 0 else ("new", "old"):
            runs[name].append(play(lms[name], task_id, args.max_steps_per_turn))
            print(f"{task_id} {name}: {runs[name][-1]['turns']} turns in {runs[name][-1]['wall_s']:.1f} s", flush=True)
    old, new = figures(runs["old"]), figures(runs["new"])
    report = {
        "benchmark": "loop", "model": "embedded:student (Qwen2.5-Coder-0.5B-Instruct)", "dtype": str(model.dtype),
        "program": "ProgressAwareAgent, greedy", "tasks": tasks, "max_steps_per_turn": args.max_steps_per_turn,
        "max_tokens": args.max_tokens, "old": old, "new": new,
        "eval_speedup": round(new["turns_per_min"] / old["turns_per_min"], 3),
        "outputs_identical": [run["texts"] for run in runs["old"]] == [run["texts"] for run in runs["new"]],
        "prompt_tokens_from_cache": round((prefixes.reused_tokens - served_before)
                                          / (prefixes.prompt_tokens - prompted_before), 3),
        "cache_mb_at_end": round(sum(t.nbytes for states in prefixes.entries.values() for kv in states for t in kv)
                                 / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "default_dtype_reason": default_dtype()[1],
        "load_avg_at_start": load_at_start, "load_avg_at_end": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
