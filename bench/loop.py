"""Eval loop speed: greedy episodes on fixed dev entries, the old path (no prefix cache, one episode at a
time) against the new one (prefix cache, ``--batch`` episodes in lockstep lanes), for each program.
Whole entries (the official metric's episodes), or with ``--states`` every (entry, turn) state of them,
the earlier turns replayed from the ground truth: the evaluation of ``parlmt experiment`` and the demo.

One student (``ModelConfig()``: the embedded 0.5B in this CPU's default dtype) serves both paths through
``programs.evaluate.run_episodes``, exactly as ``parlmt eval`` plays them. Per program it reports dev
turns per minute of each path, their ratio (``eval_speedup``), whether every module call's output text
is identical, the share of prompt tokens the cache served, and peak RSS; with the machine, CPU and load.
Entries are the first dev-split BFCL base entries, in index order.

    python bench/loop.py                                    # 2 entries, both programs: ~20-30 min, 2 quiet cores
    python bench/loop.py --entries 5 --programs progress    # the issue's figure
    python bench/loop.py --entries 5 --states --batch 8      # the same entries' 18 states, replayed
"""

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import torch  # noqa: E402
from lm_speed import cpu_model  # noqa: E402

from parlmt.envs import load_task  # noqa: E402
from parlmt.envs.splits import split_indices  # noqa: E402
from parlmt.models import ModelConfig, TransformersLM, load_model  # noqa: E402
from parlmt.models.loading import default_dtype  # noqa: E402
from parlmt.programs import build_program  # noqa: E402
from parlmt.programs.evaluate import run_episodes  # noqa: E402
from parlmt.programs.metrics import turn_states  # noqa: E402

BFCL_BASE_ENTRIES = 200


def timed(program: str, tasks: list, lm: TransformersLM, batch: int, max_steps_per_turn: int) -> tuple[dict, list]:
    """Play every task as ``parlmt eval`` does; the path's figures and each episode's module-call texts."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trajectories = run_episodes(build_program(program, max_steps_per_turn=max_steps_per_turn), tasks, lm,
                                    Path(folder) / "episodes.jsonl", threads=batch)
        wall = time.perf_counter() - started
    turns = sum(not record.replayed for t in trajectories for record in t.turns)
    texts = [[call.completion for call in t.module_calls] for t in trajectories]
    figures = {"wall_s": round(wall, 1), "turns": turns, "module_calls": sum(map(len, texts)),
               "turns_per_min": round(60 * turns / wall, 3)}
    return figures, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2, help="first dev-split BFCL base entries to play")
    parser.add_argument("--programs", default="progress,fullhistory")
    parser.add_argument("--batch", type=int, default=4, help="episodes the new path plays at once")
    parser.add_argument("--states", action="store_true", help="play every (entry, turn) state, earlier turns "
                        "replayed (the recipe's evaluation), instead of whole entries")
    parser.add_argument("--max-steps-per-turn", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64, help="completion cap per module call")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loop.json")
    args = parser.parse_args()

    load_at_start = round(os.getloadavg()[0], 2)
    model, tokenizer = load_model(ModelConfig())
    lms = {name: TransformersLM(model=model, tokenizer=tokenizer, max_tokens=args.max_tokens, temperature=0.0,
                                prefix_cache=name == "new") for name in ("old", "new")}
    for lm in lms.values():  # the first call pays one-off allocation costs
        lm.generate([{"role": "user", "content": "Hi."}], max_tokens=2)
    prefixes = lms["new"].prefixes
    tasks = [load_task(f"bfcl:base:{index}") for index in split_indices(BFCL_BASE_ENTRIES)["dev"][: args.entries]]
    entries = [task.id for task in tasks]
    if args.states:
        tasks = turn_states(tasks)
    programs = {}
    for number, program in enumerate(args.programs.split(",")):
        served, prompted = prefixes.reused_tokens, prefixes.prompt_tokens
        runs = {}
        for name in ("old", "new") if number % 2 == 0 else ("new", "old"):  # load falls on both paths alike
            runs[name] = timed(program, tasks, lms[name], args.batch if name == "new" else 1,
                               args.max_steps_per_turn)
            print(f"{program} {name}: {runs[name][0]}", flush=True)
        (old, old_texts), (new, new_texts) = runs["old"], runs["new"]
        differing = sum(a != b for x, y in zip(old_texts, new_texts, strict=True) for a, b in zip(x, y, strict=False))
        differing += sum(abs(len(x) - len(y)) for x, y in zip(old_texts, new_texts, strict=True))
        programs[program] = {
            "old": old, "new": new, "eval_speedup": round(new["turns_per_min"] / old["turns_per_min"], 3),
            "outputs_identical": old_texts == new_texts, "calls_differing": differing,
            "prompt_tokens_from_cache": round((prefixes.reused_tokens - served) / (prefixes.prompt_tokens - prompted),
                                              3),
        }
    first = programs[next(iter(programs))]
    report = {
        "benchmark": "loop", "model": "embedded:student (Qwen2.5-Coder-0.5B-Instruct)", "dtype": str(model.dtype),
        "old_path": "no prefix cache, one episode at a time",
        "new_path": f"prefix cache, --batch {args.batch}",
        "tasks": entries, "episodes": "every (entry, turn) state, earlier turns replayed" if args.states
        else "whole entries", "max_steps_per_turn": args.max_steps_per_turn,
        "max_tokens": args.max_tokens,
        "eval_speedup": first["eval_speedup"], "outputs_identical": all(p["outputs_identical"]
                                                                        for p in programs.values()),
        "programs": programs,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "default_dtype_reason": default_dtype()[1],
        "load_avg_at_start": load_at_start, "load_avg_at_end": round(os.getloadavg()[0], 2),
        "command": "python bench/loop.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                      if k not in ("out", "states")) + " --states" * args.states,
    }
    # bench/rl.py writes its figures (rl_step_ratio, vs_plain_trl, rl_sources) into the same file: keep them.
    # Replayed states go beside the whole entries' figures, under their own keys.
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.states:
        report = {"replayed_states": report, "eval_speedup_replayed_states": report["eval_speedup"],
                  "outputs_identical_replayed_states": report["outputs_identical"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous | report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
