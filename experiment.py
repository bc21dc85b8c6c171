"""``parlmt experiment``: the PARL-MT recipe as one resumable command: PAG data, SFT, PAG-RL and every
evaluation, for each agent program, trained variant and seed; one MLflow parent run with a nested run
per stage, then a table, ``efficacy.json`` and plots comparing the variants. ``parlmt demo`` is the
experiment with the ``demo`` preset: one program, one seed, sized to show a gain within 30 minutes.

The stages (``plan``), for each program: evaluate the base student on fixed dev states (one (entry,
turn) state of each of the first dev entries, earlier turns replayed: the replayed-turn accuracy),
build PAG data from the reference teacher on train entries; then for each seed and variant: the SFT
warm-up and its evaluation (``sft``), PAG-RL from that SFT adapter and its evaluation (``sft+rl``),
PAG-RL from the base model (``rl``). Each trained evaluation reports its gain over the base student on
the same states, with a paired 95% interval (bootstrap over entries).

Re-running resumes: ``<out>/state.json`` records every finished stage (skipped next time) and the
parent run; an interrupted stage continues from what it saved (episodes, checkpoints), and its
unfinished MLflow run is deleted so the UI shows one run per stage.
"""

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from parlmt.options import add_options, given_options, option

log = logging.getLogger(__name__)

VARIANTS = ("sft", "sft+rl", "rl")
COLUMNS = [("episodes", "n", "{:.0f}"), ("accuracy", "accuracy", "{:.3f}"), ("accuracy_low", "95% low", "{:.3f}"),
           ("accuracy_high", "95% high", "{:.3f}"), ("accuracy_ended", "ended acc", "{:.3f}"),
           ("gain", "gain", "{:+.3f}"), ("gain_low", "gain low", "{:+.3f}"),
           ("gain_high", "gain high", "{:+.3f}"), ("entry_accuracy", "entry acc", "{:.3f}"),
           ("format_validity", "format ok", "{:.3f}"),
           ("act_prompt_tokens", "act prompt tok", "{:.0f}"), ("steps_per_turn", "steps/turn", "{:.2f}"),
           ("wall_s", "wall s", "{:.0f}")]
GROWABLE = ("variants", "seeds")  # more of them on an existing folder: its finished stages are kept
CATEGORY_FIGURES = ("accuracy", "accuracy_low", "accuracy_high", "turn_accuracy", "episodes", "entries")


@dataclass
class ExperimentConfig:
    """What an experiment runs; every field is a ``parlmt experiment`` (and ``parlmt demo``) option. The
    defaults are the demo's: the settings measured to raise the 0.5B student's accuracy within 30
    minutes (bench/README.md, Efficacy)."""

    model: str = option("The student every stage uses: embedded:student, a .gguf file or a HF model folder.",
                       "embedded:student")
    program: str = option("Agents to train and evaluate, comma-separated: fullhistory (Act on the transcript) and/or "
                         "progress (Summarize -> Plan -> Act); each gets its own data, training and evaluations.",
                         "fullhistory")
    variants: str = option("Trained variants, comma-separated: sft (SFT on the PAG data), sft+rl (PAG-RL from the SFT "
                          "adapter), rl (PAG-RL from the base model, no SFT). The base student is always evaluated.",
                          "sft,sft+rl")
    seeds: int = option("Seeds of every trained variant (0, 1, ...: LoRA init, data order, rollout sampling).", 1)
    first_seed: int = option("The first of those seeds; the others count up from it. Seeds of one recipe can run on "
                             "several machines: --first-seed 1 on the second.", 0)
    categories: str = option("BFCL categories of the train and dev entries, comma-separated.", "base")
    dev_limit: int = option("First dev entries per category the evaluations play.", 20)
    states_per_entry: int | None = option("Replayed-turn states of each dev entry (turns chosen by a fixed hash); "
                                         "unset: every turn.", 1)
    entry_limit: int = option("Also play the first dev entries per category whole in every evaluation, this many: "
                             "entry accuracy, the official BFCL metric (every turn must pass, a turn's errors carry "
                             "into the next); 0: none.", 0)
    train_limit: int = option("First train entries per category for the PAG data and the RL states.", 40)
    replies: float = option("Share of the Act rows that end a turn (a reply, no call) kept in the data; with all of "
                           "them the small student learns to reply at once.", 0.25)
    tool_docs: str = option("Tool docs in every prompt: brief (signatures, one line each) or full.", "brief")
    max_steps_per_turn: int = option("Act steps per turn, in training and evaluation.", 2)
    max_tokens: int = option("Completion cap per module call, in RL rollouts and evaluation.", 96)
    batch: int = option("Dev episodes each evaluation plays at once, their LM calls batched into one generate.", 4)
    sft_steps: int = option("SFT warm-up optimizer steps (2 rows each).", 20)
    sft_learning_rate: float = option("SFT peak learning rate.", 2e-4)
    rl_steps: int = option("PAG-RL optimizer steps (each rolls out --rl-states-per-step states, --rl-generations "
                           "times each).", 2)
    rl_generations: int = option("G: PAG-RL rollouts per state (GRPO compares them; each costs one rollout).", 2)
    rl_states_per_step: int = option("Train states rolled out per PAG-RL step.", 1)
    rl_learning_rate: float = option("PAG-RL learning rate (with the reward weights below: with the format and "
                                    "efficiency terms, two steps at 5e-5 taught the SFT student to reply at once).",
                                    5e-5)
    rl_reward_weights: str | None = option("PAG-RL reward weights to change (name=value pairs, as `parlmt train rl "
                                          "--reward-weights`). No credit for a well-formed reply or for making no "
                                          "repeated call: both paid the small student to quit its turn "
                                          "(bench/README.md, Efficacy).", "format=0,efficiency=0")
    rl_eval_steps: int = option("Evaluate on the same dev states every this many PAG-RL steps (points of the "
                               "learning curve between the start and the final evaluation); 0: never.", 0)
    out: str = option("Folder of the experiment's data, adapters, trajectories and state (re-running resumes it).",
                     "outputs/demo")
    mlruns: str | None = option("MLflow folder (default: the repository's mlruns/).", None)
    experiment: str = option("MLflow experiment of the parent run and its stage runs.", "parlmt-demo")

    PRESETS = {
        "demo": {},
        "quick": {"dev_limit": 2, "train_limit": 4, "sft_steps": 2, "rl_steps": 1, "out": "outputs/demo-quick"},
        # SFT only, SFT + PAG-RL and PAG-RL alone, two seeds each, on the demo's states (about 2 hours on a 2-core
        # AMD EPYC); seed 0 of SFT and SFT + PAG-RL are the demo's stages.
        "recipe": {"variants": "sft,sft+rl,rl", "seeds": 2, "out": "outputs/recipe", "experiment": "parlmt-recipe"},
    }

    def __post_init__(self):
        unknown = set(self.variant_list()) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be 0 or more, got {self.first_seed}")
        if self.rl_generations < 2:  # checked here too: the RL stage comes after data, SFT and evaluations
            raise ValueError(f"rl_generations must be at least 2 (GRPO compares a state's rollouts), got "
                             f"{self.rl_generations}")
        if self.rl_states_per_step < 1:
            raise ValueError(f"rl_states_per_step must be at least 1, got {self.rl_states_per_step}")
        from parlmt.programs.config import ProgramOptions

        for program in self.programs():
            ProgramOptions(program=program, tool_docs=self.tool_docs).check_program()
        if self.rl_reward_weights:
            from parlmt.rl.rewards import reward_weights

            reward_weights(self.rl_reward_weights)  # a malformed or unknown term fails before any stage

    def programs(self) -> list[str]:
        return [p.strip() for p in self.program.split(",") if p.strip()]

    def variant_list(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    def settings(self) -> dict:
        """What a resumed experiment must share with the one it continues: not where things are logged, nor the
        variants and seeds (``GROWABLE``), which add stages and leave the finished ones valid."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("out", "mlruns", "experiment", *GROWABLE)}


class ExperimentError(RuntimeError):
    """An experiment that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Stage:
    """One stage: what it does (``kind``: eval, data, sft, rl), for which program, variant and seed, and the
    stage it builds on (``source``: the data SFT trains on, the adapter RL continues or an evaluation scores)."""

    name: str
    kind: str
    program: str
    variant: str = "base"
    seed: int = 0
    source: str | None = None


def plan(config: ExperimentConfig) -> list[Stage]:
    """Every stage, in the order they run. Names carry the program when there are several, and the seed
    from seed 1 on (the demo's are eval-base, data, sft, eval-sft, rl, eval-rl; the second seed's sft-s1):
    seed 0's names do not change when ``--seeds`` grows, so its finished stages are kept."""
    programs, variants = config.programs(), config.variant_list()
    stages = []
    for program in programs:
        def name(kind: str, seed: int | None = None, program=program) -> str:
            return (kind + (f"-{program}" if len(programs) > 1 else "")
                    + (f"-s{seed}" if seed else ""))

        stages.append(Stage(name("eval-base"), "eval", program))
        sft_based = {"sft", "sft+rl"} & set(variants)
        if sft_based:
            stages.append(Stage(name("data"), "data", program, "sft"))
        for seed in range(config.first_seed, config.first_seed + config.seeds):
            if sft_based:
                sft = Stage(name("sft", seed), "sft", program, "sft", seed, name("data"))
                stages.append(sft)
                if "sft" in variants:
                    stages.append(Stage(name("eval-sft", seed), "eval", program, "sft", seed, sft.name))
            for variant, kind, source in (("sft+rl", "rl", name("sft", seed)), ("rl", "rl-only", None)):
                if variant in variants:
                    rl = Stage(name(kind, seed), "rl", program, variant, seed, source)
                    stages += [rl, Stage(name(f"eval-{kind}", seed), "eval", program, variant, seed, rl.name)]
    return stages


# ---------------------------------------------------------------------- stages


def _evaluate(stage: Stage, config: ExperimentConfig, state: dict) -> dict:
    import mlflow

    from parlmt.envs import select_tasks
    from parlmt.models import make_lm
    from parlmt.programs import build_program
    from parlmt.programs.evaluate import evaluate
    from parlmt.programs.metrics import paired_gain
    from parlmt.programs.trajectory import read_jsonl

    adapter = state["stages"][stage.source]["adapter"] if stage.source else None
    program = build_program(stage.program, max_steps_per_turn=config.max_steps_per_turn, tool_docs=config.tool_docs)
    dataset = state.get("datasets", {}).get(stage.program, "") if stage.source else ""
    tags = {"program": stage.program, "model": config.model, "adapter": adapter or "", "dataset": dataset,
            "variant": stage.variant, "seed": str(stage.seed)}
    params = {"lm": config.model, "adapter": adapter, "max_tokens": config.max_tokens, "temperature": 0.0,
              "replayed_turns": True, "states_per_entry": config.states_per_entry}
    out = Path(config.out) / f"{stage.name}.jsonl"
    lm = make_lm(config.model, config.max_tokens, 0.0, adapter)
    result = evaluate(program, dev_states(config), lm, out, stage.name, params=params, tags=tags, threads=config.batch)
    row = {"run_id": result.run_id, "trajectories": str(out),
           **{key: result.table["all"][key] for key, *_ in COLUMNS if key in result.table["all"]},
           "categories": {category: {key: figures[key] for key in CATEGORY_FIGURES}
                          for category, figures in result.table.items()}}
    if config.entry_limit:
        entries = evaluate(program, select_tasks(config.categories, "dev", config.entry_limit), lm,
                           out.with_name(f"{stage.name}-entries.jsonl"), f"{stage.name}-entries", tags=tags,
                           params={**params, "replayed_turns": False, "states_per_entry": None}, threads=config.batch)
        row["entries_run_id"] = entries.run_id
        for key in ("accuracy", "accuracy_low", "accuracy_high"):
            row[f"entry_{key}"] = entries.table["all"][key]
        for category, figures in entries.table.items():
            row["categories"][category].update({f"entry_{key}": figures[key] for key in ("accuracy", "entries")})
    if stage.source:
        base = read_jsonl(state["stages"][_base_eval(config, stage.program)]["trajectories"])
        row["gain"], row["gain_low"], row["gain_high"] = paired_gain(base, result.trajectories)
        mlflow.log_metrics({"gain": row["gain"], "gain_low": row["gain_low"], "gain_high": row["gain_high"]},
                           run_id=result.run_id)
    return row


def dev_states(config: ExperimentConfig) -> list:
    """The replayed-turn states every evaluation of the experiment plays (and RL's dev evaluation)."""
    from parlmt.envs import select_tasks
    from parlmt.programs.metrics import turn_states

    return turn_states(select_tasks(config.categories, "dev", config.dev_limit), config.states_per_entry)


def _base_eval(config: ExperimentConfig, program: str) -> str:
    return next(s.name for s in plan(config) if s.kind == "eval" and s.program == program and s.source is None)


def _data(stage: Stage, config: ExperimentConfig, state: dict) -> dict:
    import mlflow

    from parlmt.envs import select_tasks
    from parlmt.rl import data
    from parlmt.rl.config import DataConfig

    options = DataConfig(program=stage.program, tool_docs=config.tool_docs,
                         out=str(Path(config.out) / f"{stage.name}.parquet"), categories=config.categories,
                         limit=config.train_limit, replies=config.replies, max_steps_per_turn=config.max_steps_per_turn)
    tasks = select_tasks(options.categories, options.split, options.limit)
    with mlflow.start_run(run_name=stage.name, nested=True, tags={"stage": "data", "teacher": "reference",
                                                                  "program": stage.program}) as run:
        try:
            path, modules = data.write_reference_rows(options, tasks)
        except ValueError as error:
            raise ExperimentError(f"{error}: raise --train-limit") from error
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        rows = sum(modules.values())
        mlflow.log_params({"tasks": len(tasks), "program": stage.program, "replies": config.replies,
                           "tool_docs": config.tool_docs})
        mlflow.log_metrics({"sft_rows": rows, **{f"rows_{m}": n for m, n in modules.items()}})
        mlflow.set_tag("dataset", version)
        mlflow.log_artifact(str(path))
    state.setdefault("datasets", {})[stage.program] = version
    return {"run_id": run.info.run_id, "dataset": str(path), "dataset_version": version,
            "note": f"PAG rows from the reference teacher: {rows} {modules} from {len(tasks)} entries "
                    f"(v {version})"}


def _sft(stage: Stage, config: ExperimentConfig, state: dict) -> dict:
    from parlmt.rl.config import SFTWarmupConfig
    from parlmt.rl.sft import train_sft

    output = Path(config.out) / stage.name
    result = train_sft(SFTWarmupConfig.from_preset(
        "cpu-smoke", model=config.model, dataset=state["stages"][stage.source]["dataset"], max_steps=config.sft_steps,
        learning_rate=config.sft_learning_rate, seed=stage.seed, save_steps=5, output_dir=str(output),
        resume=_checkpoint(output), mlruns=config.mlruns, experiment=config.experiment, run_name=stage.name),
        tags={"dataset": state["datasets"][stage.program], "variant": stage.variant, "seed": str(stage.seed)})
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    note = f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""
    return {"run_id": result.run_id, "adapter": str(result.adapter), "note": note}


def _rl(stage: Stage, config: ExperimentConfig, state: dict) -> dict:
    from parlmt.rl.config import PAGRLConfig
    from parlmt.rl.grpo import train_rl

    output = Path(config.out) / stage.name
    adapter = state["stages"][stage.source]["adapter"] if stage.source else None
    result = train_rl(PAGRLConfig.from_preset(
        "cpu-smoke", model=config.model, adapter=adapter, program=stage.program, tool_docs=config.tool_docs,
        categories=config.categories, limit=config.train_limit, max_steps_per_turn=config.max_steps_per_turn,
        max_completion_tokens=config.max_tokens, max_steps=config.rl_steps, learning_rate=config.rl_learning_rate,
        num_generations=config.rl_generations, states_per_step=config.rl_states_per_step,
        reward_weights=config.rl_reward_weights, seed=stage.seed, eval_steps=config.rl_eval_steps,
        eval_limit=config.dev_limit, eval_states_per_entry=config.states_per_entry,
        eval_states=len(dev_states(config)),
        save_steps=1, output_dir=str(output), resume=_checkpoint(output), mlruns=config.mlruns,
        experiment=config.experiment, run_name=stage.name),
        tags={"dataset": state.get("datasets", {}).get(stage.program, "") if adapter else "",
              "variant": stage.variant, "seed": str(stage.seed)})
    rewards = [entry["pag/reward"] for entry in result.log_history if "pag/reward" in entry]
    curve = [(entry["step"], entry["dev/accuracy"]) for entry in result.log_history if "dev/accuracy" in entry]
    note = f"reward {rewards[0]:.3f} -> {rewards[-1]:.3f}" if rewards else ""
    return {"run_id": result.run_id, "adapter": str(result.adapter), "note": note, "curve": curve}


STAGE_FUNCTIONS = {"eval": _evaluate, "data": _data, "sft": _sft, "rl": _rl}


def _checkpoint(output: Path) -> str | None:
    """``latest`` when an interrupted training left a checkpoint to continue."""
    return "latest" if any(output.glob("checkpoint-*")) else None


# ---------------------------------------------------------------------- the pipeline


def run_experiment(config: ExperimentConfig) -> list[dict]:
    """Run (or resume) every stage; returns one row per stage with its figures and wall time."""
    import mlflow

    from parlmt.models.loading import resolve
    from parlmt.tracking import experiment

    out = Path(config.out)
    state = _load_state(out, config)
    resolve(config.model)  # a missing or corrupt model fails here, before any stage
    experiment_id = experiment(config.experiment, config.mlruns)
    parent_id = state.get("parent_run_id")
    stages = plan(config)
    tags = {"stage": "experiment", "model": config.model, "program": config.program}
    with mlflow.start_run(run_id=parent_id, run_name=None if parent_id else out.name, tags=tags) as parent:
        if parent_id is None:
            state["parent_run_id"] = parent.info.run_id
            mlflow.log_params(config.settings())
            _save_state(out, state)
        mlflow.set_tags({key: getattr(config, key) for key in GROWABLE})  # tags: they may grow on a resume
        for number, stage in enumerate(stages, 1):
            if stage.name in state["stages"]:
                log.info("[%d/%d] %s: done in an earlier run", number, len(stages), stage.name)
                continue
            log.info("[%d/%d] %s", number, len(stages), stage.name)
            _delete_unfinished(experiment_id, parent.info.run_id, stage.name, out)
            started = time.perf_counter()
            row = STAGE_FUNCTIONS[stage.kind](stage, config, state)
            state["stages"][stage.name] = {**row, "wall_s": time.perf_counter() - started}
            state["summarized"] = False
            _save_state(out, state)
        rows = [{"stage": stage.name, **state["stages"][stage.name]} for stage in stages]
        if not state.get("summarized"):  # once: MLflow appends to a logged table
            _log_summary(rows, efficacy(config, state), out)
            state["summarized"] = True
            _save_state(out, state)
    return rows


def _load_state(out: Path, config: ExperimentConfig) -> dict:
    path = out / "state.json"
    if not path.is_file():
        return {"settings": config.settings(), "stages": {}}
    state = json.loads(path.read_text())
    # An option added since the folder was started counts as its default there.
    defaults = {item.name: item.default for item in dataclasses.fields(ExperimentConfig)}
    changed = sorted(k for k, v in config.settings().items() if state["settings"].get(k, defaults[k]) != v)
    if changed:
        raise ExperimentError(f"{out} holds an experiment with other settings ({', '.join(changed)}): "
                              f"pass --restart to start it over, or --out for a separate one")
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
    for run_name in (name, f"{name}-entries"):
        query = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.run_name = '{run_name}'"
        for run in mlflow.search_runs([experiment_id], query, output_format="list"):
            if run.info.status != "FINISHED" and run.info.run_id != continued:
                mlflow.delete_run(run.info.run_id)


# ---------------------------------------------------------------------- results


def efficacy(config: ExperimentConfig, state: dict) -> dict:
    """The experiment's results: per program and variant, each seed's replayed-turn accuracy (95% interval over
    entries, gain over the base student, per category, wall seconds of the stages that made it) and their
    mean and spread over seeds; per RL stage, its learning curve (dev accuracy against RL step: its start
    adapter's evaluation, RL's own dev evaluations, its final evaluation)."""
    from parlmt.programs.metrics import paired_gain, pooled_paired_gain
    from parlmt.programs.trajectory import read_jsonl
    from parlmt.tracking import cpu_model

    @functools.cache
    def played(stage_name: str) -> list:
        """An evaluation stage's trajectories, read once."""
        return read_jsonl(state["stages"][stage_name]["trajectories"])

    stages = {stage.name: stage for stage in plan(config) if stage.name in state["stages"]}
    results = {}
    for stage in stages.values():
        if stage.kind != "eval":
            continue
        row = state["stages"][stage.name]
        entry = results.setdefault(f"{stage.program}/{stage.variant}", {
            "program": stage.program, "variant": stage.variant, "seeds": []})
        entry["seeds"].append({
            "seed": stage.seed, "stage": stage.name,
            **{key: row[key] for key in ("accuracy", "accuracy_low", "accuracy_high", "gain", "gain_low", "gain_high",
                                         "episodes", "entry_accuracy", "entry_accuracy_low", "entry_accuracy_high")
               if key in row},
            "categories": row["categories"], "wall_s": sum(state["stages"][name]["wall_s"]
                                                           for name in _chain(stage.name, stages)),
            # every state's outcome, so that runs made apart (--first-seed) can be pooled later
            "passed": {t.task_id: int(bool(t.passed)) for t in played(stage.name)}})
    for entry in results.values():
        accuracy = [seed["accuracy"] for seed in entry["seeds"]]
        entry.update(accuracy_mean=statistics.mean(accuracy),
                     accuracy_std=statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
                     accuracy_min=min(accuracy), accuracy_max=max(accuracy),
                     **({"entry_accuracy_mean": statistics.mean(seed["entry_accuracy"] for seed in entry["seeds"])}
                        if "entry_accuracy" in entry["seeds"][0] else {}),
                     categories={category: statistics.mean(seed["categories"][category]["accuracy"]
                                                           for seed in entry["seeds"])
                                 for category in entry["seeds"][0]["categories"]})
    curves, seeds = {}, {seed["stage"]: seed for entry in results.values() for seed in entry["seeds"]}
    for stage in stages.values():
        final = next((s for s in stages.values() if s.kind == "eval" and s.source == stage.name), None)
        start = next((s for s in stages.values() if s.kind == "eval" and s.source == stage.source), None)
        if stage.kind == "rl" and final and start:
            curves[stage.name] = [(0, state["stages"][start.name]["accuracy"]), *state["stages"][stage.name]["curve"],
                                  (config.rl_steps, state["stages"][final.name]["accuracy"])]
            # what RL itself added: paired over the same states against the adapter it started from
            seeds[final.name].update(zip(("rl_gain", "rl_gain_low", "rl_gain_high"),
                                         paired_gain(played(start.name), played(final.name)), strict=True),
                                     rl_start=start.name)
    for entry in results.values():
        if "rl_gain" in entry["seeds"][0]:
            entry["rl_gain_mean"] = statistics.mean(seed["rl_gain"] for seed in entry["seeds"])
            pairs = [(played(seed["rl_start"]), played(seed["stage"])) for seed in entry["seeds"] if "rl_start" in seed]
            if len(pairs) > 1:  # every seed's states in one interval, each entry drawn with all of them
                pooled = pooled_paired_gain(pairs)
                entry.update(zip(("rl_gain_pooled", "rl_gain_pooled_low", "rl_gain_pooled_high"), pooled, strict=True))
    return {"what": "replayed-turn accuracy: each dev (entry, turn) state played alone, earlier turns replayed from "
                    "the ground truth, scored by the official BFCL checker; 95% interval by bootstrap over entries",
            "settings": {**config.settings(), **{key: getattr(config, key) for key in GROWABLE}}, "commit": _commit(),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
            "results": results, "learning_curves": curves}


def _chain(name: str, stages: dict[str, Stage]) -> list[str]:
    """``name`` and every stage it builds on."""
    names = []
    while name is not None and name in stages:
        names.append(name)
        name = stages[name].source
    return names


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _log_summary(rows: list[dict], results: dict, out: Path) -> None:
    """The per-stage figures on the parent run (``<stage>/<figure>``) as a table; the results as
    ``efficacy.json``, a bar chart per variant and the RL learning curves, in ``out`` and on the run."""
    import mlflow

    for row in rows:
        mlflow.log_metrics({f"{row['stage']}/{key}": float(row[key]) for key, *_ in COLUMNS if key in row})
    columns = ["stage", *(key for key, *_ in COLUMNS), "note"]
    mlflow.log_table({c: [row.get(c, "") if c in ("stage", "note") else row.get(c) for row in rows]
                      for c in columns}, artifact_file="stages.json")
    (out / "table.txt").write_text(format_table(rows) + "\n")
    (out / "efficacy.json").write_text(json.dumps(results, indent=2) + "\n")
    mlflow.log_artifact(str(out / "efficacy.json"))
    for name, figure in (("efficacy.png", _variant_plot(results)), ("learning_curve.png", _curve_plot(results))):
        if figure is not None:
            figure.savefig(out / name, dpi=120)
            mlflow.log_figure(figure, name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def _variant_plot(results: dict):
    """Mean accuracy per program and variant (bars), each seed (dots) and the widest 95% interval among them."""
    plt = _pyplot()
    entries = list(results["results"].values())
    figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(entries)), 4))
    for x, entry in enumerate(entries):
        low = min(seed["accuracy_low"] for seed in entry["seeds"])
        high = max(seed["accuracy_high"] for seed in entry["seeds"])
        mean = entry["accuracy_mean"]
        axes.bar(x, mean, color="tab:blue" if entry["variant"] == "base" else "tab:orange", alpha=0.8)
        axes.errorbar(x, mean, yerr=[[mean - low], [high - mean]], color="black", capsize=6)
        axes.scatter([x] * len(entry["seeds"]), [seed["accuracy"] for seed in entry["seeds"]], color="black", zorder=3,
                     s=14)
    axes.set_xticks(list(range(len(entries))), [f"{e['program']}\n{e['variant']} ({len(e['seeds'])} seed"
                                                 f"{'s' if len(e['seeds']) > 1 else ''})" for e in entries])
    axes.set(ylim=(0, 1), ylabel="replayed-turn accuracy, dev")
    axes.set_title("Accuracy on the same dev states; bars: mean over seeds,\ndots: each seed, whiskers: the widest "
                   "95% interval over entries", fontsize=10)
    figure.tight_layout()
    plt.close(figure)
    return figure


def _curve_plot(results: dict):
    """Dev accuracy against PAG-RL step, one line per RL stage; None without RL stages."""
    if not results["learning_curves"]:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, points in results["learning_curves"].items():
        axes.plot([step for step, _ in points], [accuracy for _, accuracy in points], marker="o", label=name)
    axes.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes.set(ylim=(0, 1), xlabel="PAG-RL step", ylabel="replayed-turn accuracy, dev",
             title="Learning curves (step 0: the adapter RL starts from)")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    plt.close(figure)
    return figure


def format_table(rows: list[dict]) -> str:
    """Stage, episodes, accuracy with its interval, gain with its interval, format validity, prompt tokens
    per Act call, steps per turn, wall time, note."""
    widths = [max(8, len(title) + 2) for _, title, _ in COLUMNS]
    first = max(18, *(len(row["stage"]) + 2 for row in rows))
    header = f"{'stage':<{first}}" + "".join(f"{title:>{w}}" for (_, title, _), w in zip(COLUMNS, widths, strict=True))
    header += "  note"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{fmt.format(row[key]) if key in row else '-':>{w}}"
                        for (key, _, fmt), w in zip(COLUMNS, widths, strict=True))
        lines.append(f"{row['stage']:<{first}}{cells}  {row.get('note', '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="the recipe: PAG data, SFT, PAG-RL and every evaluation for "
                                                      "each program, variant and seed; nested MLflow runs, a table, "
                                                      "efficacy.json and plots", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(ExperimentConfig.PRESETS), default="demo",
                        help="starting values the options given override: " + "; ".join(
                            f"{name}: {values or 'the defaults'}" for name, values in ExperimentConfig.PRESETS.items()))
    _add_common(parser)
    demo = subparsers.add_parser("demo", help="the whole pipeline on the embedded defaults (eval, PAG, SFT, RL, eval) "
                                              "in under 30 minutes: `parlmt experiment --preset demo`")
    demo.add_argument("--quick", action="store_const", dest="preset", const="quick", default="demo",
                      help=f"a shorter demo: --preset quick ({ExperimentConfig.PRESETS['quick']})")
    _add_common(demo)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restart", action="store_true", help="delete the experiment folder first instead of "
                                                               "resuming")
    add_options(parser, ExperimentConfig)
    parser.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(**{**ExperimentConfig.PRESETS[args.preset], **given_options(ExperimentConfig, args)})


def run_command(args: argparse.Namespace) -> int:
    from parlmt.models.embedded import ModelPartsError

    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.restart:
        shutil.rmtree(config.out, ignore_errors=True)
    started = time.perf_counter()
    try:
        rows = run_experiment(config)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished stages and saved progress are in {config.out}; run the same command to "
              "continue", file=sys.stderr)
        return 130
    except (ExperimentError, ModelPartsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, most often: nothing finished is lost
        print(f"error: {error}\nfree the space (or fix the path) and run the same command to continue; finished "
              f"stages are kept in {config.out}", file=sys.stderr)
        return 1
    print(format_table(rows))
    out = Path(config.out)
    print(f"{config.experiment}: {time.perf_counter() - started:.0f} s this run; table: {out / 'table.txt'}; results: "
          f"{out / 'efficacy.json'}; see every run with `parlmt ui`")
    return 0
