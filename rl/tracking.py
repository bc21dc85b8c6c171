"""MLflow for the training stages: one explicit run per stage (continued on resume), every logged
metric, the sample completions table and the final adapter.

``mlflow.dspy.autolog`` makes no run for training and TRL's ``report_to="mlflow"`` drops the
completions table, so runs are started here and a ``TrainerCallback`` forwards the trainer's logs.
The store is the one every stage shares (``programs.tracking``: SQLite + artifacts under mlruns/).
"""

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from parlmt.programs.tracking import experiment

RUN_ID_FILE = "mlflow_run_id"  # in output_dir: a resumed training continues its run


@contextmanager
def stage_run(config, stage: str) -> Iterator[str]:
    """An MLflow run for a training stage with the config as params; yields the run id.

    A resumed training (``config.resume``) continues the run recorded in its output folder.
    """
    import mlflow

    experiment(config.experiment, config.mlruns, config.tracking_uri)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    recorded = output / RUN_ID_FILE
    run_id = recorded.read_text().strip() if config.resume and recorded.is_file() else None
    name = config.run_name or f"{stage}-{Path(config.model).name}"
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name) as run:
        recorded.write_text(run.info.run_id)
        if run_id is None:
            mlflow.log_params({key: _param(value) for key, value in dataclasses.asdict(config).items()})
            mlflow.set_tag("parlmt.stage", stage)
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


def _metric_name(key: str) -> str:
    # MLflow allows letters, digits, _ - . / and spaces; TRL keys such as "rewards/format/mean" pass as they are.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _param(value) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
