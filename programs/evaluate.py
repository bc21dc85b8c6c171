"""Run a program over tasks, in threads, into a resumable JSON-lines file; score it as one MLflow run;
convert to BFCL results.

Each finished episode is appended to the file at once, so an interrupted run resumes where it
stopped: tasks already in the file are skipped (episodes that crashed are retried).
``check_settings`` records the settings that change an episode's result beside the file
(``<out>.settings.json``) and refuses to resume a file run with other settings.
"""

import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dspy

from parlmt.envs import Task, ToolEnv, make_env
from parlmt.envs.tau2 import MAX_USER_TURNS, USER_ERROR
from parlmt.programs.metrics import PROGRAM_ERROR, by_category
from parlmt.programs.trajectory import Trajectory, append_jsonl, read_jsonl, scalar_meta
from parlmt.programs.user import SimulatedUser, require_simulated_user

log = logging.getLogger(__name__)

BFCL_VERSION_PREFIX = "BFCL_v4"  # result file names: BFCL_v4_multi_turn_<category>_result.json
RETRIED = (PROGRAM_ERROR, USER_ERROR)  # episodes a resumed run plays again: a crash or a user LM outage


class ResumeError(ValueError):
    """An output file that holds another evaluation; the message says what to do."""


def settings_file(out: str | Path) -> Path:
    """Where the settings of the episodes in ``out`` are recorded."""
    return Path(out).with_suffix(".settings.json")


def check_settings(out: str | Path, settings: dict) -> None:
    """Record ``settings`` for a new output file; raise ``ResumeError`` when an existing one was run
    with other (or unrecorded) settings, so that episodes of two evaluations never mix."""
    out, path = Path(out), settings_file(out)
    settings = json.loads(json.dumps(settings))  # as read back: tuples become lists
    if not out.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2, sort_keys=True))
        return
    what_to_do = "pass --restart to start it over, or --out for a separate file"
    if not path.is_file():
        raise ResumeError(f"{out} holds episodes without a record of their settings ({path.name}): {what_to_do}")
    recorded = json.loads(path.read_text())
    changed = [f"{key} {recorded.get(key)!r} -> {settings.get(key)!r}"
               for key in sorted(recorded.keys() | settings.keys()) if recorded.get(key) != settings.get(key)]
    if changed:
        raise ResumeError(f"{out} holds episodes run with other settings ({'; '.join(changed)}): {what_to_do}")


def run_episodes(
    program: dspy.Module,
    tasks: Sequence[Task],
    lm: dspy.BaseLM,
    out: str | Path,
    threads: int = 1,
    on_episode: Callable[[Trajectory], None] | None = None,
    user_lm: dspy.BaseLM | None = None,
    max_user_turns: int = MAX_USER_TURNS,
    user_temperature: float | None = None,
) -> list[Trajectory]:
    """Run ``program`` on every task not already in ``out`` and return all trajectories in task order.

    ``threads`` episodes play at once. With an in-process LM that has ``lanes`` (``TransformersLM``)
    each thread gets a lane, and the threads' LM calls share one padded ``generate`` per pass (decode on
    a CPU is memory-bound, so a batch costs little more than one call); a remote LM gets parallel
    requests. A program that raises is recorded as a failed episode (``error_type``
    ``parlmt:program_error``) instead of stopping the run; ``on_episode`` sees each finished episode.

    With ``user_lm`` (tau2 tasks only) a ``SimulatedUser`` played by it writes every user message, in
    conversations of at most ``max_user_turns`` messages, sampled at ``user_temperature`` (None: the
    user LM's own); given ``lm`` itself, the user's calls take the thread's lane too. Episodes that
    crashed or whose user LM failed are played again on resume.
    """
    if user_lm is not None:
        require_simulated_user(tasks)
    out = Path(out)
    done = {t.task_id: t for t in read_jsonl(out) if t.error_type not in RETRIED} if out.exists() else {}
    lock = threading.Lock()
    todo = [task for task in tasks if task.id not in done]
    if len(todo) < len(tasks):
        log.info("resuming %d episodes from %s; %d to run", len(tasks) - len(todo), out, len(todo))
    pending, played = iter(todo), {}

    def played_on(task: Task, lane: dspy.BaseLM) -> Task | ToolEnv:
        """What the program plays: the task, or its environment with the simulated user (who opens it)."""
        if user_lm is None:
            return task
        user = SimulatedUser(lane if user_lm is lm else user_lm, temperature=user_temperature)
        return make_env(task, max_steps_per_turn=program.max_steps_per_turn, user=user, max_user_turns=max_user_turns)

    def play(task: Task, lm: dspy.BaseLM) -> None:
        with dspy.context(lm=lm):
            try:
                trajectory = program(task=played_on(task, lm)).trajectory
            except Exception as error:  # one broken episode must not end a long evaluation
                trajectory = Trajectory(task.id, getattr(program, "program_name", type(program).__name__),
                                        meta=scalar_meta(task.meta), passed=False, error_type=PROGRAM_ERROR,
                                        reason=f"{type(error).__name__}: {error}")
        with lock:
            append_jsonl(out, trajectory)
            played[task.id] = trajectory
            if on_episode:
                on_episode(trajectory)

    def worker(lm: dspy.BaseLM) -> None:
        try:
            while (task := next_task()) is not None:
                play(task, lm)
        finally:
            if getattr(lm, "batcher", None) is not None:
                lm.batcher.leave()  # the other lanes stop waiting for this one's calls

    def next_task() -> Task | None:
        with lock:
            return next(pending, None)

    count = max(1, min(threads, len(todo)))
    lms = lm.lanes(count) if count > 1 and hasattr(lm, "lanes") else [lm] * count
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(worker, lane) for lane in lms]:
            future.result()
    return [done.get(task.id) or played[task.id] for task in tasks]


# ``bfcl evaluate`` takes each result folder for a registered model (the folder name with every "_"
# read back as "/": eval_runner.runner) and decodes the steps with that model's handler. This
# prompt-mode Qwen is registered with a handler that reads ``[f(a=1)]`` strings as our files write
# them, and scoring needs no key: results filed under it score as ours (the name is a label only).
BFCL_MODEL = "Qwen/Qwen3-0.6B"


def bfcl_results(trajectories: Sequence[Trajectory]) -> dict[str, list[dict]]:
    """Official BFCL result entries by category: ``{"id", "result"}``, per turn played one string
    ``[f(a=1), ...]`` per step that ran calls, holding exactly the calls the environment ran, in full
    (the checker's input). Refused calls, unreadable output and replies are left out: BFCL's checker
    would run a refused call, and skips the rest. A force-quit episode keeps the turns it played,
    fewer than the task has, which BFCL fails as force-terminated. Episodes from a later turn's state
    (``Task.from_turn``) are not entries and are left out."""
    by_category: dict[str, list[dict]] = {}
    for trajectory in trajectories:
        if trajectory.meta.get("source") != "bfcl" or "state_of" in trajectory.meta:  # partial episodes
            continue
        played = trajectory.executed[: len(trajectory.turns)]
        turns = [[f"[{', '.join(calls)}]" for calls in steps] for steps in played]
        entry = {"id": trajectory.meta["official_id"], "result": turns}
        by_category.setdefault(f"multi_turn_{trajectory.meta['category']}", []).append(entry)
    return by_category


def write_bfcl_results(trajectories: Sequence[Trajectory], folder: str | Path, model_name: str = BFCL_MODEL
                       ) -> list[Path]:
    """Write BFCL result files as ``bfcl generate`` lays them out: ``<folder>/<model>/multi_turn/
    BFCL_v4_multi_turn_<category>_result.json`` (JSON lines). Under the default ``BFCL_MODEL``
    ``bfcl evaluate --model Qwen/Qwen3-0.6B --test-category multi_turn --result-dir <folder>
    --partial-eval`` scores them; it refuses names it has not registered."""
    target = Path(folder) / model_name.replace("/", "_") / "multi_turn"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for category, entries in bfcl_results(trajectories).items():
        path = target / f"{BFCL_VERSION_PREFIX}_{category}_result.json"
        entries = sorted(entries, key=lambda e: int(e["id"].rsplit("_", 1)[1]))
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        paths.append(path)
    return paths


@dataclass
class EvalResult:
    """A finished evaluation: figures per category (and ``all``), wall time, the trajectories file, the run."""

    table: dict[str, dict[str, float]]
    wall_s: float
    out: Path
    run_id: str
    trajectories: list[Trajectory]


def evaluate(program: dspy.Module, tasks: Sequence[Task], lm: dspy.BaseLM, out: str | Path, name: str,
             params: dict | None = None, tags: dict | None = None, threads: int = 1, traces: bool = True,
             progress: bool = True, user_lm: dspy.BaseLM | None = None,
             max_user_turns: int = MAX_USER_TURNS, user_temperature: float | None = None) -> EvalResult:
    """``run_episodes`` as an MLflow run named ``name`` in the active experiment (nested under the
    active run, if any): params, the figures of ``metrics.by_category`` (``<category>/<figure>`` and,
    for all tasks, the bare names every stage shares), a per-episode table, the trajectories, a
    summary JSON and the BFCL result files. DSPy traces are recorded unless ``traces`` is off.
    ``user_lm`` plays a simulated user on tau2 tasks (``run_episodes``); tasks expanded with
    ``metrics.trials`` add tau2's pass^k to the figures."""
    import mlflow
    from tqdm import tqdm

    out = Path(out)
    if traces:
        mlflow.dspy.autolog(log_traces=True, silent=True)
    started = time.perf_counter()
    try:
        with mlflow.start_run(run_name=name, nested=True, tags={"stage": "eval", **(tags or {})}) as run:
            mlflow.log_params({**(params or {}), "tasks": len(tasks), **program.config(), "out": str(out)})
            with tqdm(total=len(tasks), desc=name, disable=not progress, file=sys.stderr) as bar:
                trajectories = run_episodes(program, tasks, lm, out, threads, on_episode=lambda _: bar.update(),
                                            user_lm=user_lm, max_user_turns=max_user_turns,
                                            user_temperature=user_temperature)
                bar.update(len(tasks) - bar.n)  # episodes taken from the file count as done
            wall_s = time.perf_counter() - started
            table = by_category(trajectories)
            _log_results(table, trajectories, wall_s, out, name)
    finally:
        if traces:
            mlflow.dspy.autolog(disable=True)
    return EvalResult(table, wall_s, out, run.info.run_id, trajectories)


def _log_results(table: dict, trajectories: list[Trajectory], wall_s: float, out: Path, name: str) -> None:
    import mlflow

    mlflow.log_metric("wall_s", wall_s)
    for category, figures in table.items():
        prefix = "" if category == "all" else f"{category}/"
        mlflow.log_metrics({f"{prefix}{key}": float(value) for key, value in figures.items()})
    mlflow.log_table({
        "task_id": [t.task_id for t in trajectories],
        "category": [t.meta.get("category", "") for t in trajectories],
        "passed": [bool(t.passed) for t in trajectories],
        "turn_accuracy": [t.turn_accuracy for t in trajectories],
        "turns": [len(t.turns) for t in trajectories],
        "act_steps": [len(t.steps) for t in trajectories],
        "format_validity": [t.format_validity for t in trajectories],
        "error_type": [t.error_type or "" for t in trajectories],
        "reason": [t.reason[:500] for t in trajectories],
        "wall_s": [t.wall_s for t in trajectories],
    }, artifact_file="episodes.json")
    mlflow.log_artifact(str(out), artifact_path="trajectories")
    summary = out.with_suffix(".summary.json")
    summary.write_text(json.dumps({"run": name, "wall_s": wall_s, "categories": table}, indent=2))
    mlflow.log_artifact(str(summary))
    with tempfile.TemporaryDirectory() as folder:
        if write_bfcl_results(trajectories, Path(folder) / "bfcl"):  # filed under BFCL_MODEL: bfcl evaluate scores it
            mlflow.log_artifacts(str(Path(folder) / "bfcl"), artifact_path="bfcl_results")
