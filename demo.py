"""``parlmt demo``: the whole PARL-MT pipeline on the embedded defaults, each stage an MLflow run
nested under one parent, then a table comparing the stages.

Stages, in order (``STAGES``): evaluate the base student on fixed dev states (one (entry, turn)
state of each of the first dev entries, earlier turns replayed: the replayed-turn accuracy), build
PAG data from the reference teacher on train entries, the SFT warm-up, evaluate it, a few PAG-RL
steps from it, evaluate them. Each trained evaluation reports its gain over the base student on the
same states, with a paired 95% interval (bootstrap over entries).

Re-running resumes: ``<out>/state.json`` records every finished stage (skipped next time) and the
parent run; an interrupted stage continues from what it saved (episodes, checkpoints), and its
unfinished MLflow run is deleted so the UI shows one run per stage.
"""

import argparse
import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from parlmt.options import add_options, given_options, option

log = logging.getLogger(__name__)

STAGES = ("eval-base", "data", "sft", "eval-sft", "rl", "eval-rl")
EVALS = {"eval-base": None, "eval-sft": "sft", "eval-rl": "rl"}  # stage -> the stage whose adapter it evaluates
COLUMNS = [("episodes", "n", "{:.0f}"), ("accuracy", "accuracy", "{:.3f}"), ("accuracy_low", "95% low", "{:.3f}"),
           ("accuracy_high", "95% high", "{:.3f}"), ("gain", "gain", "{:+.3f}"), ("gain_low", "gain low", "{:+.3f}"),
           ("gain_high", "gain high", "{:+.3f}"), ("format_validity", "format ok", "{:.3f}"),
           ("act_prompt_tokens", "act prompt tok", "{:.0f}"), ("steps_per_turn", "steps/turn", "{:.2f}"),
           ("wall_s", "wall s", "{:.0f}")]


@dataclass
class DemoConfig:
    """What the demo runs on; every field is a ``parlmt demo`` option. The defaults are the settings
    measured to raise the 0.5B student's accuracy (bench/README.md, Efficacy)."""

    model: str = option("The student every stage uses: embedded:student, a .gguf file or a HF model folder.",
                       "embedded:student")
    program: str = option("The agent every stage trains and evaluates: fullhistory (Act on the transcript) or "
                         "progress (Summarize -> Plan -> Act).", "fullhistory")
    categories: str = option("BFCL categories of the train and dev entries, comma-separated.", "base")
    dev_limit: int = option("First dev entries per category the evaluations play.", 20)
    states_per_entry: int | None = option("Replayed-turn states of each dev entry (turns chosen by a fixed hash); "
                                         "unset: every turn.", 1)
    train_limit: int = option("First train entries per category for the PAG data and the RL states.", 40)
    replies: float = option("Share of the Act rows that end a turn (a reply, no call) kept in the data; with all of "
                           "them the small student learns to reply at once.", 0.25)
    tool_docs: str = option("Tool docs in every prompt: brief (signatures, one line each) or full.", "brief")
    max_steps_per_turn: int = option("Act steps per turn, in training and evaluation.", 2)
    max_tokens: int = option("Completion cap per module call, in RL rollouts and evaluation.", 96)
    batch: int = option("Dev episodes each evaluation plays at once, their LM calls batched into one generate.", 4)
    sft_steps: int = option("SFT warm-up optimizer steps (2 rows each).", 20)
    sft_learning_rate: float = option("SFT peak learning rate.", 2e-4)
    rl_steps: int = option("PAG-RL optimizer steps (one state, 2 rollouts each).", 2)
    rl_learning_rate: float = option("PAG-RL learning rate. Adam's first steps move every LoRA weight by about this "
                                    "much whatever the gradient's size: at 5e-5, two steps on one state each turned "
                                    "the SFT student into one that replies at once (0.40 -> 0.00; 1e-5: 0.25).", 1e-5)
    out: str = option("Folder of the demo's data, adapters, trajectories and state (re-running resumes it).",
                     "outputs/demo")
    mlruns: str | None = option("MLflow folder (default: the repository's mlruns/).", None)
    experiment: str = option("MLflow experiment of the parent run and its stage runs.", "parlmt-demo")

    QUICK = {"dev_limit": 2, "train_limit": 4, "sft_steps": 2, "rl_steps": 1, "out": "outputs/demo-quick"}

    def settings(self) -> dict:
        """What a resumed demo must share with the one it continues (where things are logged may differ)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "mlruns", "experiment")}


class DemoError(RuntimeError):
    """A demo that cannot go on; the message says what to do."""


# ---------------------------------------------------------------------- stages


def _evaluate(name: str, config: DemoConfig, state: dict) -> dict:
    import mlflow

    from parlmt.envs import select_tasks
    from parlmt.models import make_lm
    from parlmt.programs import build_program
    from parlmt.programs.evaluate import evaluate
    from parlmt.programs.metrics import paired_gain, turn_states
    from parlmt.programs.trajectory import read_jsonl

    trained_by = EVALS[name]
    adapter = state["stages"][trained_by]["adapter"] if trained_by else None
    program = build_program(config.program, max_steps_per_turn=config.max_steps_per_turn, tool_docs=config.tool_docs)
    tasks = turn_states(select_tasks(config.categories, "dev", config.dev_limit), config.states_per_entry)
    lm = make_lm(config.model, config.max_tokens, 0.0, adapter)
    tags = {"program": config.program, "model": config.model, "adapter": adapter or "",
            "dataset": state.get("dataset_version", "") if trained_by else ""}
    params = {"lm": config.model, "adapter": adapter, "max_tokens": config.max_tokens, "temperature": 0.0,
              "replayed_turns": True, "states_per_entry": config.states_per_entry}
    result = evaluate(program, tasks, lm, Path(config.out) / f"{name}.jsonl", name, params=params, tags=tags,
                      threads=config.batch)
    row = {"run_id": result.run_id, **{key: result.table["all"][key] for key, *_ in COLUMNS if key in
                                       result.table["all"]}}
    if trained_by:
        base = read_jsonl(Path(config.out) / "eval-base.jsonl")
        row["gain"], row["gain_low"], row["gain_high"] = paired_gain(base, result.trajectories)
        mlflow.log_metrics({"gain": row["gain"], "gain_low": row["gain_low"], "gain_high": row["gain_high"]},
                           run_id=result.run_id)
    return row


def _data(name: str, config: DemoConfig, state: dict) -> dict:
    import mlflow

    from parlmt.envs import select_tasks
    from parlmt.rl import data
    from parlmt.rl.config import DataConfig

    options = DataConfig(program=config.program, tool_docs=config.tool_docs, out=str(Path(config.out) / "data.parquet"),
                         categories=config.categories, limit=config.train_limit, replies=config.replies,
                         max_steps_per_turn=config.max_steps_per_turn)
    tasks = select_tasks(options.categories, options.split, options.limit)
    with mlflow.start_run(run_name=name, nested=True, tags={"stage": "data", "teacher": "reference"}) as run:
        try:
            path, modules = data.write_reference_rows(options, tasks)
        except ValueError as error:
            raise DemoError(f"{error}: raise --train-limit") from error
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        rows = sum(modules.values())
        mlflow.log_params({"tasks": len(tasks), "program": config.program, "replies": config.replies,
                           "tool_docs": config.tool_docs})
        mlflow.log_metrics({"sft_rows": rows, **{f"rows_{m}": n for m, n in modules.items()}})
        mlflow.set_tag("dataset", version)
        mlflow.log_artifact(str(path))
    state["dataset_version"] = version
    return {"run_id": run.info.run_id, "dataset": str(path), "dataset_version": version,
            "note": f"PAG rows from the reference teacher: {rows} {modules} from {len(tasks)} entries "
                    f"(v {version})"}


def _sft(name: str, config: DemoConfig, state: dict) -> dict:
    from parlmt.rl.config import SFTWarmupConfig
    from parlmt.rl.sft import train_sft

    output = Path(config.out) / "sft"
    result = train_sft(SFTWarmupConfig.from_preset(
        "cpu-smoke", model=config.model, dataset=state["stages"]["data"]["dataset"], max_steps=config.sft_steps,
        learning_rate=config.sft_learning_rate, save_steps=5, output_dir=str(output), resume=_checkpoint(output),
        mlruns=config.mlruns, experiment=config.experiment, run_name=name), tags={"dataset": state["dataset_version"]})
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    note = f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""
    return {"run_id": result.run_id, "adapter": str(result.adapter), "note": note}


def _rl(name: str, config: DemoConfig, state: dict) -> dict:
    from parlmt.rl.config import PAGRLConfig
    from parlmt.rl.grpo import train_rl

    output = Path(config.out) / "rl"
    result = train_rl(PAGRLConfig.from_preset(
        "cpu-smoke", model=config.model, adapter=state["stages"]["sft"]["adapter"], program=config.program,
        tool_docs=config.tool_docs, categories=config.categories, limit=config.train_limit,
        max_steps_per_turn=config.max_steps_per_turn, max_completion_tokens=config.max_tokens,
        max_steps=config.rl_steps, learning_rate=config.rl_learning_rate, save_steps=1, output_dir=str(output),
        resume=_checkpoint(output), mlruns=config.mlruns, experiment=config.experiment, run_name=name),
        tags={"dataset": state["dataset_version"]})
    rewards = [entry["pag/reward"] for entry in result.log_history if "pag/reward" in entry]
    note = f"reward {rewards[0]:.3f} -> {rewards[-1]:.3f}" if rewards else ""
    return {"run_id": result.run_id, "adapter": str(result.adapter), "note": note}


STAGE_FUNCTIONS = {**{name: _evaluate for name in EVALS}, "data": _data, "sft": _sft, "rl": _rl}


def _checkpoint(output: Path) -> str | None:
    """``latest`` when an interrupted training left a checkpoint to continue."""
    return "latest" if any(output.glob("checkpoint-*")) else None


# ---------------------------------------------------------------------- the pipeline


def run_demo(config: DemoConfig) -> list[dict]:
    """Run (or resume) every stage; returns one row per stage with its figures and wall time."""
    import mlflow

    from parlmt.models.loading import resolve
    from parlmt.tracking import experiment

    out = Path(config.out)
    state = _load_state(out, config)
    resolve(config.model)  # a missing or corrupt model fails here, before any stage
    experiment_id = experiment(config.experiment, config.mlruns)
    parent_id = state.get("parent_run_id")
    tags = {"stage": "demo", "model": config.model, "program": config.program}
    with mlflow.start_run(run_id=parent_id, run_name=None if parent_id else Path(config.out).name, tags=tags) as parent:
        if parent_id is None:
            state["parent_run_id"] = parent.info.run_id
            mlflow.log_params(config.settings())
            _save_state(out, state)
        for number, name in enumerate(STAGES, 1):
            if name in state["stages"]:
                log.info("[%d/%d] %s: done in an earlier run", number, len(STAGES), name)
                continue
            log.info("[%d/%d] %s", number, len(STAGES), name)
            _delete_unfinished(experiment_id, parent.info.run_id, name, out)
            started = time.perf_counter()
            row = STAGE_FUNCTIONS[name](name, config, state)
            state["stages"][name] = {**row, "wall_s": time.perf_counter() - started}
            state["summarized"] = False
            _save_state(out, state)
        rows = [{"stage": name, **state["stages"][name]} for name in STAGES]
        if not state.get("summarized"):  # once: MLflow appends to a logged table
            _log_summary(rows, out)
            state["summarized"] = True
            _save_state(out, state)
    return rows


def _load_state(out: Path, config: DemoConfig) -> dict:
    path = out / "state.json"
    if not path.is_file():
        return {"settings": config.settings(), "stages": {}}
    state = json.loads(path.read_text())
    if state["settings"] != config.settings():
        changed = sorted(k for k in config.settings() if state["settings"].get(k) != config.settings()[k])
        raise DemoError(f"{out} holds a demo run with other settings ({', '.join(changed)}): "
                        f"pass --restart to start it over, or --out for a separate demo")
    return state


def _save_state(out: Path, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "state.json.partial"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(out / "state.json")  # a crash mid-write never leaves a torn state


def _delete_unfinished(experiment_id: str, parent_id: str, name: str, out: Path) -> None:
    """Hide the runs an interrupted attempt at this stage left, except the one a training resumes."""
    import mlflow

    from parlmt.rl.tracking import RUN_ID_FILE

    recorded = out / name / RUN_ID_FILE
    continued = recorded.read_text().strip() if _checkpoint(out / name) and recorded.is_file() else None
    query = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.run_name = '{name}'"
    for run in mlflow.search_runs([experiment_id], query, output_format="list"):
        if run.info.status != "FINISHED" and run.info.run_id != continued:
            mlflow.delete_run(run.info.run_id)


def _log_summary(rows: list[dict], out: Path) -> None:
    """The per-stage figures on the parent run (``<stage>/<figure>``), as a table and as a plot."""
    import mlflow

    for row in rows:
        mlflow.log_metrics({f"{row['stage']}/{key}": float(row[key]) for key, *_ in COLUMNS if key in row})
    columns = ["stage", *(key for key, *_ in COLUMNS), "note"]
    mlflow.log_table({c: [row.get(c, "") if c in ("stage", "note") else row.get(c) for row in rows]
                      for c in columns}, artifact_file="stages.json")
    mlflow.log_figure(_accuracy_plot([row for row in rows if row["stage"] in EVALS]), "accuracy_by_stage.png")
    (out / "table.txt").write_text(format_table(rows) + "\n")


def _accuracy_plot(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    accuracy = [row["accuracy"] for row in rows]
    errors = [[a - row.get("accuracy_low", a) for a, row in zip(accuracy, rows, strict=True)],
              [row.get("accuracy_high", a) - a for a, row in zip(accuracy, rows, strict=True)]]
    axes.bar(range(len(rows)), accuracy, yerr=errors, capsize=6)
    axes.set_xticks(list(range(len(rows))), [row["stage"] for row in rows])
    axes.set(ylim=(0, 1), ylabel="accuracy (95% interval over entries)",
             title="Accuracy per stage (same dev states)")
    figure.tight_layout()
    plt.close(figure)
    return figure


def format_table(rows: list[dict]) -> str:
    """Stage, episodes, accuracy with its interval, turn accuracy, format validity, prompt tokens per Act
    call, steps per turn, wall time, note."""
    widths = [max(8, len(title) + 2) for _, title, _ in COLUMNS]
    header = f"{'stage':<18}" + "".join(f"{title:>{w}}" for (_, title, _), w in zip(COLUMNS, widths, strict=True))
    header += "  note"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{fmt.format(row[key]) if key in row else '-':>{w}}"
                        for (key, _, fmt), w in zip(COLUMNS, widths, strict=True))
        lines.append(f"{row['stage']:<18}{cells}  {row.get('note', '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole pipeline on the embedded defaults (eval, PAG, SFT, RL, "
                                                "eval), nested MLflow runs and a comparison table")
    parser.add_argument("--quick", action="store_true", help=f"a shorter demo: {DemoConfig.QUICK}")
    parser.add_argument("--restart", action="store_true", help="delete the demo folder first instead of resuming")
    add_options(parser, DemoConfig)
    parser.set_defaults(func=run_demo_command)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(**{**(DemoConfig.QUICK if args.quick else {}), **given_options(DemoConfig, args)})


def run_demo_command(args: argparse.Namespace) -> int:
    from parlmt.models.embedded import ModelPartsError

    config = config_from_args(args)
    if args.restart:
        shutil.rmtree(config.out, ignore_errors=True)
    started = time.perf_counter()
    try:
        rows = run_demo(config)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished stages and saved progress are in {config.out}; run the same command to "
              "continue", file=sys.stderr)
        return 130
    except (DemoError, ModelPartsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, most often: nothing finished is lost
        print(f"error: {error}\nfree the space (or fix the path) and run the same command to continue; finished "
              f"stages are kept in {config.out}", file=sys.stderr)
        return 1
    print(format_table(rows))
    print(f"demo: {time.perf_counter() - started:.0f} s this run; table: {Path(config.out) / 'table.txt'}; "
          "see every run with `parlmt ui`")
    return 0
