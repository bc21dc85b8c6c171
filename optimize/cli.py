"""``parlmt optimize`` (and ``python optimize.py``): bootstrap a verified PAG dataset with a teacher."""

import argparse
import dataclasses
import json
import sys

from parlmt.envs.tooldocs import TOOL_DOCS
from parlmt.optimize.config import OPTIMIZERS, PAGConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("optimize", help="optimize teacher prompts and bootstrap the PAG dataset",
                                   description=PAGConfig.__doc__)
    defaults = PAGConfig()
    parser.add_argument("--teacher", default=defaults.teacher,
                        help="reference (ground-truth oracle), embedded:teacher, embedded:student, or a litellm "
                             "model string (openai/gpt-4o-mini, anthropic/..., openai/<name> with --api-base)")
    parser.add_argument("--api-base", help="OpenAI-compatible endpoint for the teacher (vLLM, llama.cpp server)")
    parser.add_argument("--api-key-env", help="environment variable that holds the teacher's API key")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer,
                        help="prompt optimizer run on the train split first")
    parser.add_argument("--program", default=defaults.program, help="progress, or a saved program .json")
    parser.add_argument("--refresh", choices=("turn", "step"), default=defaults.refresh)
    parser.add_argument("--tool-docs", choices=TOOL_DOCS, default=defaults.tool_docs,
                        help="full (every parameter described) or brief (signatures, one line each) tool docs")
    parser.add_argument("--no-guidance", dest="guidance", action="store_false",
                        help="LM teachers plan without seeing the turn's ground-truth calls")
    parser.add_argument("--categories", default=",".join(defaults.categories),
                        help="comma-separated BFCL categories: base, miss_func, miss_param, long_context")
    parser.add_argument("--split", choices=("train", "dev"), default=defaults.split)
    parser.add_argument("--limit", type=int, help="tasks per category (default: the whole split)")
    parser.add_argument("--dev-limit", type=int, default=defaults.dev_limit,
                        help="dev tasks per category for before/after optimizer scores")
    parser.add_argument("--no-verify-student", dest="verify_student", action="store_false",
                        help="skip model-aware verification (faster; keeps every step whose turn passed)")
    parser.add_argument("--student", default=defaults.student, help="target model for model-aware verification")
    parser.add_argument("--teacher-max-tokens", type=int, default=defaults.teacher_max_tokens)
    parser.add_argument("--teacher-temperature", type=float, default=defaults.teacher_temperature)
    parser.add_argument("--timeout", dest="timeout_s", type=float, default=defaults.timeout_s,
                        help="seconds before a teacher request fails")
    parser.add_argument("--retries", type=int, default=defaults.retries, help="attempts per task on teacher errors")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="tasks run in parallel")
    parser.add_argument("--out", default=defaults.out, help="output folder (re-running resumes it)")
    parser.add_argument("--mlruns", dest="mlflow_root", help="MLflow folder (default: the repository's mlruns/)")
    parser.add_argument("--experiment", default=defaults.experiment, help="MLflow experiment name")
    parser.set_defaults(func=run_optimize)


def config_from_args(args: argparse.Namespace) -> PAGConfig:
    names = {f.name for f in dataclasses.fields(PAGConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["categories"] = [c.strip() for c in args.categories.split(",") if c.strip()]
    return PAGConfig(**values)


def run_optimize(args: argparse.Namespace) -> int:
    from dspy.utils.exceptions import LMConfigurationError

    from parlmt.optimize.pag import SETUP_ERRORS
    from parlmt.optimize.pipeline import run

    try:
        config = config_from_args(args)
        config.check()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = run(config)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished tasks are saved in {config.out}; run the same command to resume",
              file=sys.stderr)
        return 130
    except (LMConfigurationError, *SETUP_ERRORS) as error:  # every task would fail alike: none is recorded
        print(f"error: the teacher cannot be used: {error}\nfix --teacher, --api-base or --api-key-env; finished "
              f"tasks are kept in {config.out}: run the same command to resume", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    print(f"dataset written to {config.out} (card: {config.out}/README.md)")
    return 0
