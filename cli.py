"""The ``parlmt`` command line. Each stage's subcommands live beside that stage's code.

Command modules expose ``register(subparsers)``; they import heavy libraries only inside
the functions they run, so ``parlmt --help`` stays fast.
"""

import argparse
import logging
import sys

from parlmt import experiment, tracking
from parlmt.envs import cli as envs_cli
from parlmt.models import cli as models_cli
from parlmt.optimize import cli as optimize_cli
from parlmt.programs import cli as programs_cli
from parlmt.rl import cli as rl_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parlmt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models_cli.register(subparsers)
    envs_cli.register(subparsers)
    programs_cli.register(subparsers)
    tracking.register(subparsers)
    optimize_cli.register(subparsers)
    rl_cli.register(subparsers)
    experiment.register(subparsers)
    return parser


class ShowOnce(logging.Filter):
    """Lets each distinct message through once: DSPy warns on every module call that hits the token
    cap, hundreds of times in an evaluation or a training run."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.seen:
            return False
        self.seen.add(record.msg)
        record.msg = f"{record.msg} (shown once)"
        return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    dspy_lm = logging.getLogger("dspy.clients.lm")
    if not args.verbose and not any(isinstance(f, ShowOnce) for f in dspy_lm.filters):
        dspy_lm.addFilter(ShowOnce())
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
