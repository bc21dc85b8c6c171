"""Efficacy: does training raise the student's replayed-turn accuracy on held-out dev entries?

A sequence of ``parlmt`` commands, each printed before it runs and each resumable (a stage whose
output exists is skipped; an evaluation resumes its trajectories file; SFT resumes its latest
checkpoint):

1. ``parlmt train data``: reference Act rows (ground-truth calls, then the reply) from the train split;
2. ``parlmt eval --replayed-turns`` of the base student on dev states (every (entry, turn) of the
   first ``--dev-limit`` dev entries, earlier turns replayed);
3. ``parlmt train sft``: the SFT warm-up (LoRA) on the rows (``--replies``: the share of reply rows kept);
4. the same evaluation with the SFT adapter.

Writes ``bench/results/efficacy.json``: per variant and category the replayed-turn accuracy, its
95% interval (bootstrap over entries), the states and entries, wall time, and the commands, commit
and machine.

    python bench/efficacy.py --out outputs/efficacy --dev-limit 10 --max-steps-per-turn 2 --batch 1
    python bench/efficacy.py --out outputs/efficacy-calls --replies 0 --sft-steps 20 --dev-limit 10 \
        --max-steps-per-turn 2 --batch 1 --result bench/results/efficacy-calls.json
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from lm_speed import cpu_model

from parlmt.envs.tooldocs import TOOL_DOCS

REPO = Path(__file__).resolve().parents[1]
PARLMT = [sys.executable, "-m", "parlmt.cli"]


def run(command: list[str], log: Path) -> float:
    """Run one ``parlmt`` command (printed first), its output teed to ``log``; its wall seconds."""
    print("$ parlmt " + shlex.join(command), flush=True)
    started = time.perf_counter()
    with log.open("a") as sink:
        process = subprocess.Popen([*PARLMT, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   cwd=REPO)
        for line in process.stdout:
            sink.write(line)
            sys.stdout.write(line)
    if process.wait():
        raise SystemExit(f"stage failed (exit {process.returncode}); see {log}; rerun the same command to resume")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/efficacy"), help="experiment folder")
    parser.add_argument("--categories", default="base")
    parser.add_argument("--program", default="fullhistory", choices=("fullhistory", "progress"))
    parser.add_argument("--modules", default="act", help="modules whose reference rows train")
    parser.add_argument("--replies", type=float, default=1.0,
                        help="share of Act reply rows kept in the data (0: only the rows that make calls)")
    parser.add_argument("--tool-docs", choices=TOOL_DOCS, default="full",
                        help="tool docs in data and evaluation prompts")
    parser.add_argument("--train-limit", type=int, default=40, help="train entries per category")
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--grad-accum", type=int, default=2, help="rows per SFT optimizer step")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2 r)")
    parser.add_argument("--dev-limit", type=int, default=20, help="dev entries per category (all of their turns)")
    parser.add_argument("--max-steps-per-turn", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--result", type=Path, default=REPO / "bench/results/efficacy.json",
                        help="results file (a run with other settings writes its own, e.g. efficacy-calls.json)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    commands, wall = {}, {}

    data = out / "data.parquet"
    commands["data"] = ["train", "data", "--out", str(data), "--categories", args.categories, "--split", "train",
                        "--limit", str(args.train_limit), "--program", args.program, "--modules", args.modules,
                        "--replies", str(args.replies), "--tool-docs", args.tool_docs]
    if not data.exists():
        wall["data"] = run(commands["data"], log)

    adapter = out / "sft" / "adapter"
    results = {}

    def evaluate(name: str, *extra: str) -> None:
        target = out / f"eval-{name}.jsonl"
        commands[f"eval_{name}"] = ["eval", "--program", args.program, "--categories", args.categories, "--split",
                                    "dev", "--limit", str(args.dev_limit), "--replayed-turns", "--max-steps-per-turn",
                                    str(args.max_steps_per_turn), "--tool-docs", args.tool_docs,
                                    "--max-tokens", str(args.max_tokens), "--batch",
                                    str(args.batch), "--out", str(target), "--mlruns", str(out / "mlruns"),
                                    "--experiment", "efficacy", "--no-progress", *extra]
        summary = target.with_suffix(".summary.json")
        if not summary.exists():
            wall[f"eval_{name}"] = run(commands[f"eval_{name}"], log)
        results[name] = json.loads(summary.read_text())["categories"]

    evaluate("base")
    commands["sft"] = ["train", "sft", "--dataset", str(data), "--max-steps", str(args.sft_steps),
                       "--learning-rate", str(args.learning_rate), "--grad-accum", str(args.grad_accum),
                       "--lora-r", str(args.lora_r), "--lora-alpha", str(2 * args.lora_r), "--save-steps", "10",
                       "--output-dir", str(out / "sft"), "--mlruns", str(out / "mlruns"),
                       "--experiment", "efficacy"]
    if not adapter.exists():
        resume = ["--resume", "latest"] if any((out / "sft").glob("checkpoint-*")) else []
        wall["sft"] = run([*commands["sft"], *resume], log)
    evaluate("sft", "--adapter", str(adapter))

    keep = ("accuracy", "accuracy_low", "accuracy_high", "episodes", "entries", "format_validity", "steps_per_turn")
    report = {
        "what": "replayed-turn accuracy (each dev (entry, turn) state played alone, earlier turns replayed from the "
                "ground truth; official BFCL checker), 95% interval by bootstrap over entries",
        "program": args.program, "categories": args.categories, "train_entries_per_category": args.train_limit,
        "replies": args.replies, "tool_docs": args.tool_docs, "sft_steps": args.sft_steps,
        "grad_accum": args.grad_accum, "learning_rate": args.learning_rate, "lora_r": args.lora_r,
        "modules": args.modules,
        "variants": {name: {category: {key: figures[key] for key in keep} for category, figures in table.items()}
                     for name, table in results.items()},
        "gain": {category: results["sft"][category]["accuracy"] - results["base"][category]["accuracy"]
                 for category in results["base"]},
        "wall_s_this_run": wall,
        "commands": {stage: "parlmt " + shlex.join(command) for stage, command in commands.items()},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    args.result.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["variants"], indent=1))
    print(f"gain (sft - base, replayed-turn accuracy): {report['gain']}  -> {args.result}")


if __name__ == "__main__":
    main()
