"""Run a program over tasks, in threads, into a resumable JSON-lines file; convert to BFCL results.

Each finished episode is appended to the file at once, so an interrupted run resumes where it
stopped: tasks already in the file are skipped (episodes that crashed are retried).
"""

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy

from parlmt.envs import Task
from parlmt.programs.metrics import PROGRAM_ERROR
from parlmt.programs.trajectory import Trajectory, append_jsonl, read_jsonl

BFCL_VERSION_PREFIX = "BFCL_v4"  # result file names: BFCL_v4_multi_turn_<category>_result.json


def run_episodes(
    program: dspy.Module,
    tasks: Sequence[Task],
    lm: dspy.BaseLM,
    out: str | Path,
    threads: int = 1,
    on_episode: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Run ``program`` on every task not already in ``out`` and return all trajectories in task order.

    A program that raises is recorded as a failed episode (``error_type`` ``parlmt:program_error``)
    instead of stopping the run; ``on_episode`` sees each finished episode (a progress bar).
    """
    out = Path(out)
    done = {t.task_id: t for t in read_jsonl(out) if t.error_type != PROGRAM_ERROR} if out.exists() else {}
    lock = threading.Lock()

    def play(task: Task) -> Trajectory:
        with dspy.context(lm=lm):
            try:
                trajectory = program(task=task).trajectory
            except Exception as error:  # one broken episode must not end a long evaluation
                trajectory = Trajectory(task.id, getattr(program, "program_name", type(program).__name__),
                                        meta=dict(task.meta), passed=False, error_type=PROGRAM_ERROR,
                                        reason=f"{type(error).__name__}: {error}")
        with lock:
            append_jsonl(out, trajectory)
            if on_episode:
                on_episode(trajectory)
        return trajectory

    todo = [task for task in tasks if task.id not in done]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        played = {t.task_id: t for t in pool.map(play, todo)}
    return [done.get(task.id) or played[task.id] for task in tasks]


def bfcl_results(trajectories: Sequence[Trajectory]) -> dict[str, list[dict]]:
    """Official BFCL result entries by category: ``{"id", "result"}``, with one string per Act step
    and turn (the parsed calls as ``[f(a=1), ...]``; unreadable output and replies as written,
    which BFCL's decoder skips as it does for any model)."""
    by_category: dict[str, list[dict]] = {}
    for trajectory in trajectories:
        if trajectory.meta.get("source") != "bfcl":
            continue
        turns = [[] for _ in trajectory.turns]
        for step in trajectory.steps:
            text = f"[{', '.join(step.calls)}]" if step.calls else (step.reply or step.output)
            turns[step.turn].append(text)
        entry = {"id": trajectory.meta["official_id"], "result": turns}
        by_category.setdefault(f"multi_turn_{trajectory.meta['category']}", []).append(entry)
    return by_category


def write_bfcl_results(trajectories: Sequence[Trajectory], folder: str | Path, model_name: str) -> list[Path]:
    """Write BFCL result files as ``bfcl generate`` lays them out: ``<folder>/<model>/multi_turn/
    BFCL_v4_multi_turn_<category>_result.json`` (JSON lines), ready for ``bfcl evaluate``."""
    target = Path(folder) / model_name.replace("/", "_") / "multi_turn"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for category, entries in bfcl_results(trajectories).items():
        path = target / f"{BFCL_VERSION_PREFIX}_{category}_result.json"
        entries = sorted(entries, key=lambda e: int(e["id"].rsplit("_", 1)[1]))
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        paths.append(path)
    return paths
