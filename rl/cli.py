"""``parlmt train``: ``data`` (reference PAG rows from ground truth), ``sft`` (warm-up) and ``rl`` (PAG-RL).

Every ``DataConfig`` / ``SFTWarmupConfig`` / ``PAGRLConfig`` field is an option whose help is the
field's doc; for ``sft`` and ``rl``, ``--preset`` picks a starting point and explicit options override
it. Ablations are options: ``--program fullhistory`` is the MT-GRPO baseline, and leaving ``--adapter``
unset skips the SFT warm-up ("w/o PAG").
"""

import argparse
import sys

from parlmt.options import add_command, add_options, given_options
from parlmt.rl.config import DataConfig, PAGRLConfig, SFTWarmupConfig, StageConfig
from parlmt.rl.rewards import REWARD_TERMS


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="SFT warm-up and PAG-RL (TRL + PEFT LoRA), logged to MLflow")
    stages = train.add_subparsers(dest="stage", required=True, metavar="STAGE")

    add_command(stages, "data", DataConfig, run_data,
                help="write reference PAG rows (ground-truth calls, plans, summaries)")

    sft = stages.add_parser("sft", help="SFT warm-up on a PAG dataset (TRL SFTTrainer, LoRA)")
    add_config_arguments(sft, SFTWarmupConfig)
    sft.set_defaults(func=run_sft)

    rl = stages.add_parser("rl", help="PAG-RL: GRPO over rollouts of the whole program (TRL GRPOTrainer, LoRA)")
    add_config_arguments(rl, PAGRLConfig)
    rl.set_defaults(func=run_rl)


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[StageConfig]) -> None:
    """``--preset`` and one ``--option`` per config field (``options.add_options``)."""
    parser.add_argument("--preset", choices=sorted(config_class.PRESETS), help="starting values (see --help)")
    add_options(parser, config_class)
    presets = "; ".join(f"{name}: {values}" for name, values in config_class.PRESETS.items())
    parser.epilog = f"presets: {presets}".replace("%", "%%")


def config_from_args(config_class: type[StageConfig], args: argparse.Namespace) -> StageConfig:
    """The config of ``args``: the preset (if any) with the options given on top."""
    return config_class.from_preset(args.preset, **given_options(config_class, args))


def run_data(args: argparse.Namespace) -> int:
    from parlmt.envs import select_tasks
    from parlmt.rl.data import write_reference_rows

    config = DataConfig(**given_options(DataConfig, args))
    try:  # the options, the sources and the split are checked before any task is played
        config.check()
        tasks = select_tasks(config.categories, config.split, config.limit)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        path, counts = write_reference_rows(config, tasks)
    except ValueError as error:
        print(f"error: {error}: raise --limit or add categories", file=sys.stderr)
        return 1
    print(f"{sum(counts.values())} rows from {len(tasks)} tasks {counts} -> {path}")
    return 0


def run_sft(args: argparse.Namespace) -> int:
    from parlmt.rl.sft import train_sft

    config = config_from_args(SFTWarmupConfig, args)
    if not config.dataset:
        raise SystemExit("--dataset is required (a PAG dataset; `parlmt train data` writes a reference one)")
    result = train_sft(config)
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    if losses:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps")
    print(f"adapter: {result.adapter}  mlflow run: {result.run_id}")
    return 0


def run_rl(args: argparse.Namespace) -> int:
    from parlmt.rl.grpo import train_rl

    config = config_from_args(PAGRLConfig, args)
    result = train_rl(config)
    if result.run_id is None:  # another process than the main one of `accelerate launch`, which reports
        return 0
    steps = [entry for entry in result.log_history if "pag/reward" in entry]
    terms = [name for name, term in REWARD_TERMS.items() if term.module is None]
    print(f"{'step':>5} {'reward':>8}" + "".join(f" {name[:7]:>7}" for name in terms)
          + f" {'samples':>8} {'loss':>9} {'s/step':>7}")
    for entry in steps:
        figures = "".join(f" {entry[f'pag/{name}']:>7.3f}" for name in terms)
        print(f"{entry['step']:>5} {entry['pag/reward']:>8.3f}{figures}"
              + f" {entry['pag/samples']:>8.0f} {entry['loss']:>9.4f} {entry['step_time']:>7.1f}")
    dev = [entry for entry in result.log_history if "dev/accuracy" in entry]
    if dev:
        print(f"dev accuracy (greedy, replayed-turn states) at step {dev[-1]['step']}: {dev[-1]['dev/accuracy']:.3f}")
    print(f"adapter: {result.adapter}  mlflow run: {result.run_id}")
    return 0
