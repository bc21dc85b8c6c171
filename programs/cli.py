"""``parlmt eval``: run a program on tasks with an LM, score it, and log the run to MLflow."""

import argparse
import hashlib
import sys
from pathlib import Path

from parlmt.options import add_command, given_options
from parlmt.programs.config import EvalConfig, check_user_options

TABLE_COLUMNS = [("episodes", "n", "{:.0f}"), ("entries", "entries", "{:.0f}"), ("accuracy", "accuracy", "{:.3f}"),
                 ("accuracy_low", "95% low", "{:.3f}"), ("accuracy_high", "95% high", "{:.3f}"),
                 ("turn_accuracy", "turn acc", "{:.3f}"), ("steps_per_turn", "steps/turn", "{:.2f}"),
                 ("act_prompt_tokens", "act prompt tok", "{:.0f}"), ("format_validity", "format ok", "{:.3f}")]


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "eval", EvalConfig, run_eval,
                help="evaluate a program on tasks (official checker), log to MLflow")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(**given_options(EvalConfig, args))


def run_eval(args: argparse.Namespace) -> int:
    from parlmt.envs import select_tasks
    from parlmt.models.lm import make_lm
    from parlmt.programs.agents import build_program, load_program
    from parlmt.programs.evaluate import ResumeError, check_settings, evaluate, settings_file
    from parlmt.programs.metrics import trials, turn_states
    from parlmt.programs.user import require_simulated_user
    from parlmt.tracking import experiment

    config = config_from_args(args)
    try:  # the program and the task selection check their options (refresh, tool docs, sources, split)
        if config.program.endswith(".json"):
            program = load_program(config.program)
        else:
            program = build_program(config.program, max_steps_per_turn=config.max_steps_per_turn,
                                    refresh=config.refresh, tool_docs=config.tool_docs)
        tasks = select_tasks(config.categories, config.split, config.limit, config.tasks)
        if config.user_lm:
            require_simulated_user(tasks)
        check_user_options(config.user_lm, config.user_temperature, config.max_user_turns)
        if config.trials > 1 and config.temperature <= 0:  # greedy decoding would play k identical trials
            raise ValueError(f"--trials {config.trials} needs --temperature above 0 (it samples the agent and the "
                             "user alike), or every trial plays the same")
        if config.states_per_entry and not config.replayed_turns:
            raise ValueError("--states-per-entry picks replayed-turn states: add --replayed-turns")
        tasks = trials(turn_states(tasks, config.states_per_entry) if config.replayed_turns else tasks, config.trials)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = config.run_name()
    out = Path(config.out) if config.out else Path("outputs/eval") / f"{name}.jsonl"
    settings = {"lm": config.lm, "api_base": config.api_base, "adapter": config.adapter,
                "max_tokens": config.max_tokens, "temperature": config.temperature,
                "replayed_turns": config.replayed_turns,
                **program.config()}  # config: the program's max_steps_per_turn, refresh, tool_docs
    if config.states_per_entry:  # only then, as for the user below: older files resume as they were
        settings["states_per_entry"] = config.states_per_entry
    if config.user_lm:  # only then: files recorded before there was a user resume as they were
        settings |= {"user_lm": config.user_lm, "user_api_base": config.user_api_base,
                     "max_user_turns": config.max_user_turns}
        if config.user_temperature is not None:
            settings["user_temperature"] = config.user_temperature
    if config.program.endswith(".json"):  # a program optimized again into the same file acts differently
        settings["program_sha256"] = hashlib.sha256(Path(config.program).read_bytes()).hexdigest()
    if config.restart:
        for path in (out, settings_file(out), out.with_suffix(".summary.json")):
            path.unlink(missing_ok=True)
    try:
        check_settings(out, settings)  # before the LM loads: a refused resume costs nothing
    except ResumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lm = make_lm(config.lm, config.max_tokens, config.temperature, config.adapter, config.api_base)
    user_lm = None
    if config.user_lm:  # the agent's own LM when it is the same model (without an adapter): loaded once
        same = (config.user_lm, config.user_api_base) == (config.lm, config.api_base) and not config.adapter
        user_lm = lm if same else make_lm(config.user_lm, config.max_tokens, config.temperature,
                                          api_base=config.user_api_base)
    experiment(config.experiment, config.mlruns, config.tracking_uri)
    params = {"program": config.program, "lm": config.lm, "api_base": config.api_base, "adapter": config.adapter,
              "categories": config.categories, "split": config.split, "limit": config.limit,
              "threads": config.threads, "replayed_turns": config.replayed_turns,
              "states_per_entry": config.states_per_entry,
              "max_tokens": config.max_tokens, "temperature": config.temperature, "user_lm": config.user_lm,
              "user_api_base": config.user_api_base, "max_user_turns": config.max_user_turns,
              "user_temperature": config.user_temperature, "trials": config.trials}
    result = evaluate(program, tasks, lm, out, name, params=params,
                      tags={"program": config.program, "model": config.lm, "adapter": config.adapter or ""},
                      threads=config.threads, traces=config.traces, progress=config.progress, user_lm=user_lm,
                      max_user_turns=config.max_user_turns, user_temperature=config.user_temperature)
    if config.replayed_turns:
        print("each episode plays one (entry, turn) state, earlier turns replayed: accuracy = replayed-turn accuracy")
    print(format_table(result.table, result.wall_s))
    print(f"trajectories: {result.out}  summary: {result.out.with_suffix('.summary.json')}")
    return 0


def format_table(table: dict, wall_s: float) -> str:
    """The per-category figures as a fixed-width table, with the wall time."""
    widths = [max(9, len(title) + 2) for _, title, _ in TABLE_COLUMNS]
    titles = [f"{title:>{w}}" for (_, title, _), w in zip(TABLE_COLUMNS, widths, strict=True)]
    rows = [f"{'category':<14}" + "".join(titles)]
    for category, figures in table.items():
        rows.append(f"{category:<14}" + "".join(f"{fmt.format(figures[key]):>{w}}"
                                               for (key, _, fmt), w in zip(TABLE_COLUMNS, widths, strict=True)))
    for category, figures in table.items():  # tau2's pass^k, where tasks were played in trials
        passes = [f"pass^{key.rpartition('_')[2]} {value:.3f}" for key, value in figures.items()
                  if key.startswith("pass_hat_")]
        if passes:
            rows.append(f"{category:<14}" + "  ".join(passes))
    rows.append(f"wall time {wall_s:.1f} s")
    return "\n".join(rows)
