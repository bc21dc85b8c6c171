"""MLflow for the training stages: one explicit run per stage (continued on resume), every logged
metric, the sample completions table and the final adapter.

``mlflow.dspy.autolog`` makes no run for training and TRL's ``report_to="mlflow"`` drops the
completions table, so runs are started here and a ``TrainerCallback`` forwards the trainer's logs.
The store is the one every stage shares (``parlmt.tracking``: SQLite + artifacts under mlruns/).
"""

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from parlmt.tracking import experiment

RUN_ID_FILE = "mlflow_run_id"  # in output_dir: a resumed training continues its run


@contextmanager
def stage_run(config, stage: str, tags: dict | None = None) -> Iterator[str]:
    """An MLflow run for a training stage (nested under the active run, if any) with the config as
    params and ``stage``/``model``/``adapter`` tags plus ``tags``; yields the run id.

    A resumed training (``config.resume``) continues the run recorded in its output folder.
    """
    import mlflow

    experiment(config.experiment, config.mlruns, config.tracking_uri)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    recorded = output / RUN_ID_FILE
    run_id = recorded.read_text().strip() if config.resume and recorded.is_file() else None
    name = config.run_name or f"{stage}-{Path(config.model).name}"
    tags = {"stage": stage, "model": config.model, "adapter": config.adapter or "", **(tags or {})}
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name, nested=True, tags=tags) as run:
        recorded.write_text(run.info.run_id)
        if run_id is None:
            mlflow.log_params({key: _param(value) for key, value in dataclasses.asdict(config).items()})
        yield run.info.run_id


class MlflowLogger(TrainerCallback):
    """Forwards every numeric value the trainer logs, at its global step, to the active MLflow run;
    after each step logs the rows ``table()`` returns (if any) into ``completions.json``."""

    def __init__(self, table: Callable[[], list[dict]] | None = None):
        self.table = table

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        metrics = {
            _metric_name(key): float(value)
            for key, value in (logs or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        }
        if metrics and state.is_world_process_zero:
            mlflow.log_metrics(metrics, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        import mlflow

        rows = self.table() if self.table else []
        if rows and state.is_world_process_zero:
            columns = {key: [row[key] for row in rows] for key in rows[0]}
            mlflow.log_table(columns, artifact_file="completions.json")


def log_adapter(folder: str | Path) -> None:
    """The final adapter as the run's ``adapter/`` artifacts."""
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path="adapter")


def log_reward_plot(log_history: list[dict], terms: list[str], path: str = "reward_terms.png") -> None:
    """Each reward term's mean (and the composite reward) per RL step, as a PNG artifact of the active run."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt
    import mlflow

    steps = [entry for entry in log_history if "pag/reward" in entry]
    if not steps:
        return
    figure, axes = plt.subplots(figsize=(7, 4))
    for name in ["reward", *terms]:
        logged = [e for e in steps if f"pag/{name}" in e]  # a module's term: steps that sampled that module
        axes.plot([e["step"] for e in logged], [e[f"pag/{name}"] for e in logged], marker="o",
                  label=name, linewidth=2.5 if name == "reward" else 1.2)
    axes.set(xlabel="RL step", ylabel="mean over played turns (or samples)", title="PAG-RL reward terms")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    mlflow.log_figure(figure, path)
    plt.close(figure)


def _metric_name(key: str) -> str:
    # MLflow allows letters, digits, _ - . / and spaces; TRL keys such as "rewards/format/mean" pass as they are.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _param(value) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
