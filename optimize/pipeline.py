"""One PAG run end to end, as one MLflow run: teacher LM, optional prompt optimization, verified
bootstrapping, the dataset on disk."""

import logging
import os
import time
from pathlib import Path

import dspy

from parlmt.envs import select_tasks
from parlmt.optimize.config import PAGConfig
from parlmt.optimize.dataset import write_dataset
from parlmt.optimize.pag import StudentCheck, bootstrap
from parlmt.optimize.prompts import compile_program, score

log = logging.getLogger(__name__)


def make_teacher_lm(config: PAGConfig) -> dspy.BaseLM | None:
    """The teacher LM (None for the reference oracle). Our retry loop owns retries, so DSPy's is off."""
    if config.teacher == "reference":
        return None
    from parlmt.models.lm import make_lm

    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise ValueError(f"environment variable {config.api_key_env} (the teacher's API key) is not set")
    return make_lm(config.teacher, config.teacher_max_tokens, config.teacher_temperature, api_base=config.api_base,
                   api_key=api_key, timeout=config.timeout_s, num_retries=0)


def load_teacher_program(config: PAGConfig) -> dspy.Module | None:
    if config.teacher == "reference":
        return None
    from parlmt.programs import build_program, load_program

    if config.program.endswith(".json"):
        return load_program(config.program)
    return build_program(config.program, max_steps_per_turn=config.max_steps_per_turn, refresh=config.refresh,
                         tool_docs=config.tool_docs)


def student_check(config: PAGConfig) -> StudentCheck | None:
    if not config.verify_student:
        return None
    from parlmt.models import ModelConfig, TransformersLM

    return StudentCheck(TransformersLM(ModelConfig(model=config.student), max_tokens=config.student_max_tokens))


def run(config: PAGConfig, lm: dspy.BaseLM | None = None, check: StudentCheck | None = None,
        **bootstrap_options) -> dict:
    """Bootstrap the PAG dataset described by ``config``; returns the dataset statistics and the MLflow run id.

    ``lm`` and ``check`` stand in for the teacher LM and the student verifier the config describes
    (an LM already loaded, a scripted one); ``bootstrap_options`` go to ``pag.bootstrap``.
    """
    import mlflow

    from parlmt import tracking

    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = lm or make_teacher_lm(config)
    program = load_teacher_program(config)
    check = check if check is not None else student_check(config)
    tracking.experiment(config.experiment, root=config.mlruns)
    started = time.perf_counter()
    name = config.run_name or f"pag-{config.teacher}-{config.optimizer}-{config.categories.replace(',', '+')}"
    tags = {"stage": "optimize", "teacher": config.teacher, "optimizer": config.optimizer, "dataset": str(out)}
    with mlflow.start_run(run_name=name, nested=True, tags=tags) as mlflow_run:
        mlflow.log_params({k: str(v) for k, v in config.to_dict().items()})
        extra = {}
        if config.optimizer != "none":
            mlflow.dspy.autolog(log_compiles=True, log_evals=True)
            dev_ids = [t.id for t in select_tasks(config.categories, "dev", config.dev_limit)]
            train_ids = [t.id for t in select_tasks(config.categories, config.split, config.limit)]
            extra["dev_turn_accuracy_before"] = score(program, lm, dev_ids, config.threads)
            program = compile_program(program, config.optimizer, lm, train_ids, config.threads)
            extra["dev_turn_accuracy_after"] = score(program, lm, dev_ids, config.threads)
            program.save(str(out / "program.json"))
            mlflow.log_artifact(str(out / "program.json"))
            log.info("dev turn accuracy %.3f -> %.3f", extra["dev_turn_accuracy_before"],
                     extra["dev_turn_accuracy_after"])
        entries = bootstrap(config, program, lm, check, **bootstrap_options)
        wall_s = time.perf_counter() - started
        steps = sum(len(entry["steps"]) for entry in entries.values())
        extra |= {"wall_s": round(wall_s, 1), "steps_per_minute": round(steps / wall_s * 60, 1)}
        summary = write_dataset(entries, config, extra)
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
        mlflow.log_dict(summary["rejected_by_reason"], "rejected_by_reason.json")
        for name in ("README.md", "stats.json", "pag-train.parquet", "pag-rejected.parquet", "sft.parquet"):
            mlflow.log_artifact(str(out / name), artifact_path="dataset")
    return {**summary, "mlflow_run_id": mlflow_run.info.run_id}
