"""``parlmt optimize`` (and ``python optimize.py``): bootstrap a verified PAG dataset with a teacher.
Every ``PAGConfig`` field is an option whose help is the field's doc."""

import argparse
import json
import sys

from parlmt.optimize.config import PAGConfig
from parlmt.options import add_command, given_options


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "optimize", PAGConfig, run_optimize,
                help="optimize teacher prompts and bootstrap the PAG dataset")


def run_optimize(args: argparse.Namespace) -> int:
    from dspy.utils.exceptions import LMConfigurationError

    from parlmt.optimize.pag import SETUP_ERRORS
    from parlmt.optimize.pipeline import run

    config = PAGConfig(**given_options(PAGConfig, args))
    try:
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
