"""``parlmt eval``: run a program on tasks with an LM, score it, and log the run to MLflow."""

import argparse
import hashlib
import re
import sys
from pathlib import Path

from parlmt.envs.tooldocs import TOOL_DOCS

TABLE_COLUMNS = [("episodes", "n", "{:.0f}"), ("entries", "entries", "{:.0f}"), ("accuracy", "accuracy", "{:.3f}"),
                 ("accuracy_low", "95% low", "{:.3f}"), ("accuracy_high", "95% high", "{:.3f}"),
                 ("turn_accuracy", "turn acc", "{:.3f}"), ("steps_per_turn", "steps/turn", "{:.2f}"),
                 ("act_prompt_tokens", "act prompt tok", "{:.0f}"), ("format_validity", "format ok", "{:.3f}")]
# Options that change an episode's result besides the program, LM, adapter and tasks, with their defaults:
# those given another value name the run (so its own file), and all are recorded beside the file.
RESULT_DEFAULTS = {"max_steps_per_turn": 20, "refresh": "turn", "tool_docs": "full", "max_tokens": 256,
                   "temperature": 0.0, "api_base": None, "replayed_turns": False}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a program on tasks (official checker), log to MLflow")
    parser.add_argument("--program", default="progress", help="progress, fullhistory, or a saved program .json")
    parser.add_argument("--lm", default="embedded:student",
                        help="embedded:student, embedded:teacher, a model folder/.gguf, or a litellm model string "
                             "(openai/gpt-4o-mini, anthropic/..., ollama_chat/..., hosted_vllm/...)")
    parser.add_argument("--api-base", help="endpoint of an OpenAI-compatible server (vLLM, llama.cpp, Ollama)")
    parser.add_argument("--adapter", help="PEFT adapter folder applied to an in-process model")
    parser.add_argument("--categories", default="base",
                        help="comma-separated task sources: base, miss_func, miss_param, long_context, py:todo ...")
    parser.add_argument("--tasks", help="comma-separated task ids (bfcl:base:3,py:todo:0), instead of --categories")
    parser.add_argument("--split", choices=("train", "dev", "test"), help="only tasks of this split")
    parser.add_argument("--limit", type=int, help="at most this many tasks per category")
    parser.add_argument("--replayed-turns", action="store_true",
                        help="score every (entry, turn) state on its own, the earlier turns replayed from the ground "
                             "truth: accuracy is then the replayed-turn accuracy, which does not compound errors")
    parser.add_argument("--batch", "--threads", dest="threads", type=int, default=4,
                        help="episodes played at once: an in-process model batches their calls into one generate, "
                             "a remote LM gets parallel requests")
    parser.add_argument("--max-steps-per-turn", type=int, default=RESULT_DEFAULTS["max_steps_per_turn"],
                        help="Act steps per turn (BFCL: 20)")
    parser.add_argument("--refresh", choices=("turn", "step"), default=RESULT_DEFAULTS["refresh"],
                        help="progress program: summarize and plan every turn, or every step")
    parser.add_argument("--tool-docs", choices=TOOL_DOCS, default=RESULT_DEFAULTS["tool_docs"],
                        help="full (every parameter described) or brief (signatures, one line each) tool docs; "
                             "use what the model was trained on")
    parser.add_argument("--max-tokens", type=int, default=RESULT_DEFAULTS["max_tokens"],
                        help="LM completion cap per module call")
    parser.add_argument("--temperature", type=float, default=RESULT_DEFAULTS["temperature"])
    parser.add_argument("--out", type=Path, help="trajectories JSONL (default: outputs/eval/<run name>.jsonl); "
                                                 "an existing file is resumed if it was run with the same settings")
    parser.add_argument("--restart", action="store_true",
                        help="delete the trajectories file (and its settings and summary) first instead of resuming")
    parser.add_argument("--mlruns", type=Path, help="MLflow folder (default: the repository's mlruns/)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<mlruns>/mlflow.db)")
    parser.add_argument("--experiment", default="parlmt-eval", help="MLflow experiment name")
    parser.add_argument("--no-traces", action="store_true", help="do not record DSPy traces (mlflow.dspy.autolog)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_eval)

    ui = subparsers.add_parser("ui", help="open the MLflow UI over mlruns/ (every eval, optimize and train run)")
    ui.add_argument("--mlruns", type=Path, help="MLflow folder (default: the repository's mlruns/)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=run_ui)


def run_name(args: argparse.Namespace) -> str:
    """A file-safe name that is the same for the same evaluation, so a rerun resumes it: the program,
    LM, tasks and adapter, and each option of ``RESULT_DEFAULTS`` given another value."""
    program = Path(args.program).stem if args.program.endswith(".json") else args.program
    changed = [f"{key}={getattr(args, key)}" for key, default in RESULT_DEFAULTS.items()
               if getattr(args, key) != default]
    parts = [program, args.lm, args.tasks or args.categories, args.split or "all",
             f"n{args.limit}" if args.limit else "", Path(args.adapter).name if args.adapter else "", *changed]
    return re.sub(r"[^\w.-]+", "_", "-".join(p for p in parts if p))


def run_eval(args: argparse.Namespace) -> int:
    from parlmt.envs import load_task, load_tasks
    from parlmt.models.lm import make_lm
    from parlmt.programs.agents import build_program, load_program
    from parlmt.programs.evaluate import ResumeError, check_settings, evaluate, settings_file
    from parlmt.programs.metrics import turn_states
    from parlmt.programs.tracking import experiment

    if args.program.endswith(".json"):
        program = load_program(args.program)
    else:
        program = build_program(args.program, max_steps_per_turn=args.max_steps_per_turn, refresh=args.refresh,
                                tool_docs=args.tool_docs)
    if args.tasks:
        tasks = [load_task(task_id.strip()) for task_id in args.tasks.split(",")]
    else:
        tasks = [task for category in args.categories.split(",")
                 for task in load_tasks(category.strip(), split=args.split)[: args.limit]]
    if args.replayed_turns:
        tasks = turn_states(tasks)
    name = run_name(args)
    out = args.out or Path("outputs/eval") / f"{name}.jsonl"
    settings = {"lm": args.lm, "api_base": args.api_base, "adapter": args.adapter, "max_tokens": args.max_tokens,
                "temperature": args.temperature, "replayed_turns": args.replayed_turns,
                **program.config()}  # config: the program's max_steps_per_turn, refresh, tool_docs
    if args.program.endswith(".json"):  # a program optimized again into the same file acts differently
        settings["program_sha256"] = hashlib.sha256(Path(args.program).read_bytes()).hexdigest()
    if args.restart:
        for path in (out, settings_file(out), out.with_suffix(".summary.json")):
            path.unlink(missing_ok=True)
    try:
        check_settings(out, settings)  # before the LM loads: a refused resume costs nothing
    except ResumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lm = make_lm(args.lm, args.max_tokens, args.temperature, args.adapter, args.api_base)
    experiment(args.experiment, args.mlruns, args.tracking_uri)
    params = {"program": args.program, "lm": args.lm, "api_base": args.api_base, "adapter": args.adapter,
              "categories": args.categories, "split": args.split, "limit": args.limit, "threads": args.threads,
              "replayed_turns": args.replayed_turns,
              "max_tokens": args.max_tokens, "temperature": args.temperature}
    result = evaluate(program, tasks, lm, out, name, params=params,
                      tags={"program": args.program, "model": args.lm, "adapter": args.adapter or ""},
                      threads=args.threads, traces=not args.no_traces, progress=not args.no_progress)
    if args.replayed_turns:
        print("each episode plays one (entry, turn) state, earlier turns replayed: accuracy = replayed-turn accuracy")
    print(format_table(result.table, result.wall_s))
    print(f"trajectories: {result.out}  summary: {result.out.with_suffix('.summary.json')}")
    return 0


def run_ui(args: argparse.Namespace) -> int:
    from parlmt.programs.tracking import UIServer
    from parlmt.server import run_until_stopped

    try:
        server = UIServer(args.mlruns, args.port)
        return run_until_stopped(server, f"MLflow UI at {server.url}  (store: {server.root}; Ctrl-C to stop)")
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def format_table(table: dict, wall_s: float) -> str:
    """The per-category figures as a fixed-width table, with the wall time."""
    widths = [max(9, len(title) + 2) for _, title, _ in TABLE_COLUMNS]
    titles = [f"{title:>{w}}" for (_, title, _), w in zip(TABLE_COLUMNS, widths, strict=True)]
    rows = [f"{'category':<14}" + "".join(titles)]
    for category, figures in table.items():
        rows.append(f"{category:<14}" + "".join(f"{fmt.format(figures[key]):>{w}}"
                                               for (key, _, fmt), w in zip(TABLE_COLUMNS, widths, strict=True)))
    rows.append(f"wall time {wall_s:.1f} s")
    return "\n".join(rows)
