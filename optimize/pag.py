"""PAG bootstrapping: teacher trajectories -> verified (context -> summary, plan, action) steps.

For each task, the teacher program plays the episode in the real environment. Every Act step
becomes a candidate record (the context the student will see, the summary, the plan, the action
in canonical form, the observation it produced, the checker's verdict on its turn) and is kept
only when **verified**:

1. its turn passed the environment's checker (BFCL: the official state and response checks), and
2. **model-aware verification**: the target student, given the same summary and plan, writes the
   same calls (skippable with ``verify_student=False``).

Rejected steps keep the reason. Each finished task is appended to ``shards/tasks.jsonl`` at once,
so an interrupted run loses at most the tasks in flight, and re-running resumes without
duplicates; ``dataset.py`` builds the outputs from the shards in task order.
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dspy
from dspy.adapters import ChatAdapter
from dspy.utils.exceptions import (
    AdapterParseError,
    LMAuthError,
    LMBillingError,
    LMProviderError,
    LMTransportError,
    LMUnsupportedModelError,
)
from tqdm import tqdm

from parlmt.envs import CallError, Task, make_env, select_tasks
from parlmt.optimize.config import PAGConfig
from parlmt.programs import extract_calls, salvage_calls
from parlmt.programs.oracle import oracle_program
from parlmt.programs.trajectory import ACT, Trajectory
from parlmt.signatures import Act, Plan

log = logging.getLogger(__name__)

SHARD = "shards/tasks.jsonl"
# What a teacher's LM or server raises for one request, retried and then recorded as the task's failure:
# DSPy's LM errors (timeouts, refused connections, rate limits, server errors, a context too long) and
# the socket errors of a teacher called without DSPy's client.
TEACHER_ERRORS = (LMProviderError, LMTransportError, TimeoutError, ConnectionError)
# Of those, the ones every task would hit alike (a wrong key or model name): they stop the run instead.
SETUP_ERRORS = (LMAuthError, LMBillingError, LMUnsupportedModelError)


@dataclass
class StudentCheck:
    """Model-aware verification: does ``lm`` reproduce a teacher's Act output from the same inputs?"""

    lm: dspy.BaseLM

    def __call__(self, inputs: dict[str, str], expected: list[str]) -> tuple[list[str] | None, str | None]:
        """The student's calls (canonical), and why they do not match (None when they do).

        The student matches when its calls begin with the expected ones: it would make the right
        call next (a plan-following student often writes the following calls too). A step with no
        expected calls (the closing reply) matches only an answer with no calls.
        """
        # Calls come first in Act's output: a reply cut short by max_tokens still holds them, so read
        # them off the raw text instead of paying for a second (JSON adapter) generation.
        with dspy.context(lm=self.lm, adapter=ChatAdapter(use_json_adapter_fallback=False)):
            try:
                try:
                    text = str(dspy.Predict(Act)(**inputs).calls)
                    calls = extract_calls(text)
                except AdapterParseError as error:
                    calls = salvage_calls(error.lm_response or "")
            except CallError as error:
                return None, f"student_unparseable: {str(error)[:200]}"
        calls = [call.canonical() for call in calls]
        if calls[: len(expected)] != expected or (not expected and calls):
            return calls, f"student_mismatch: wrote [{', '.join(calls)}]"
        return calls, None


def task_records(task: Task, trajectory: Trajectory, check: StudentCheck | None) -> tuple[list[dict], list[dict]]:
    """Candidate step records (with verdicts) and module records of one teacher trajectory."""
    category = task.meta.get("category", task.meta.get("source", ""))
    turns = {record.turn: record for record in trajectory.turns}
    steps = []
    for call, step in zip(trajectory.calls_of(ACT), trajectory.steps, strict=True):
        turn = turns[step.turn]
        record = {
            "task_id": task.id, "category": category, "turn": step.turn, "step": step.step,
            "request": call.inputs["request"], "summary": call.inputs["summary"], "plan": call.inputs["plan"],
            "context": call.inputs["observations"], "action": f"[{', '.join(step.calls)}]",
            "reply": step.reply or "", "observation": "\n".join(step.observations),
            "turn_passed": bool(turn.passed), "turn_reason": turn.reason, "student_action": None,
            "accepted": False, "reject_reason": None, "act_inputs": call.inputs,
        }
        if step.format_error is not None:
            record["reject_reason"] = f"format_error: {step.format_error}"
        elif not turn.passed:
            record["reject_reason"] = f"turn_failed: {turn.reason or 'the turn was not scored'}"
        elif check is not None:
            student, reason = check(call.inputs, list(step.calls))
            record["student_action"] = None if student is None else f"[{', '.join(student)}]"
            record["reject_reason"] = reason
        record["accepted"] = record["reject_reason"] is None
        steps.append(record)
    verified_turns = {
        t for t, record in turns.items()
        if record.passed and all(s["accepted"] for s in steps if s["turn"] == t)
    }
    modules = [
        {"task_id": task.id, "category": category, "module": call.module, "turn": call.turn, "step": call.step,
         "inputs": call.inputs, "outputs": call.outputs, "accepted": call.turn in verified_turns}
        for call in trajectory.module_calls if call.module != ACT  # Act's calls are the step records
    ]
    return steps, modules


class GuidedPlan(dspy.Module):
    """An LM teacher's Plan, shown the current turn's ground-truth calls as a hint (the recorded
    inputs stay the unhinted ones)."""

    def __init__(self, env, plan: dspy.Module | None = None):
        super().__init__()
        self.env = env
        self.plan = plan or dspy.Predict(Plan)

    def forward(self, tools: str, summary: str, request: str, observations: str) -> dspy.Prediction:
        truth = ", ".join(call.canonical() for call in self.env.ground_truth())
        hint = f"{request}\n\n(Reference solution for this request, to plan from: [{truth}])"
        return self.plan(tools=tools, summary=summary, request=hint, observations=observations)


def teacher_program(config: PAGConfig, program: dspy.Module | None, env) -> dspy.Module:
    """The program that plays one task: the ground-truth oracle as ``config.program`` (one call per Act step;
    as the progress program for a saved one), or a copy of the (optimized) LM teacher program, with
    ground-truth guidance on its Plan modules when configured."""
    if config.teacher == "reference":
        name = "progress" if config.program.endswith(".json") else config.program
        return oracle_program(name, env, calls_per_step=1, max_steps_per_turn=config.max_steps_per_turn,
                              refresh=config.refresh, tool_docs=config.tool_docs)
    program = program.deepcopy()
    for name, signature in program.MODULES if config.guidance else ():
        if signature is Plan:
            setattr(program, name, GuidedPlan(env, getattr(program, name)))
    return program


def play_task(task: Task, config: PAGConfig, program: dspy.Module | None, lm: dspy.BaseLM | None,
              check: StudentCheck | None) -> dict:
    """Play and verify one task, retrying the teacher's errors with backoff; a shard line either way.

    Anything else (a bug in our code, a full disk, the in-process student, a missing or rejected API
    key) is not the teacher failing this task: it stops the run with its traceback, and the shard keeps
    the finished tasks, so the same command resumes once it is fixed.
    """
    wait = config.backoff_s
    error = None
    for attempt in range(1, config.retries + 1):
        started = time.perf_counter()
        env = make_env(task, reference=config.teacher == "reference", max_steps_per_turn=config.max_steps_per_turn)
        try:
            with dspy.context(lm=lm):
                trajectory = teacher_program(config, program, env)(task=env).trajectory
        except TEACHER_ERRORS as failure:
            if isinstance(failure, SETUP_ERRORS):
                raise
            error = failure
        else:  # outside the try: a bug in building the records is ours, never retried nor recorded
            teacher_done = time.perf_counter()
            steps, modules = task_records(task, trajectory, check)
            return {"task_id": task.id, "status": "done", "passed": trajectory.passed, "attempts": attempt,
                    "steps": steps, "modules": modules, "teacher_lm_s": trajectory.lm_s,
                    "env_s": max(0.0, teacher_done - started - trajectory.lm_s),
                    "verify_s": time.perf_counter() - teacher_done}
        log.warning("task %s attempt %d/%d failed: %s", task.id, attempt, config.retries, error)
        if attempt < config.retries:
            time.sleep(wait)
            wait *= 2
    return {"task_id": task.id, "status": "failed", "attempts": config.retries,
            "error": f"{type(error).__name__}: {str(error)[:500]}", "steps": [], "modules": []}


def read_shard(out: Path) -> dict[str, dict]:
    """Finished tasks already in the shard (a line cut short by a crash is ignored)."""
    path = out / SHARD
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[entry["task_id"]] = entry
    return done


def append_shard(out: Path, entry: dict) -> None:
    path = out / SHARD
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def bootstrap(
    config: PAGConfig,
    program: dspy.Module | None = None,
    lm: dspy.BaseLM | None = None,
    check: StudentCheck | None = None,
    on_task: Callable[[dict], None] | None = None,
) -> dict[str, dict]:
    """Play every task not yet in the shard; returns all shard entries by task id.

    ``program`` and ``lm`` are the LM teacher (unused for the reference teacher); ``check`` does
    model-aware verification; ``on_task`` sees each finished task's shard entry.
    """
    out = Path(config.out)
    done = read_shard(out)
    todo = [task for task in select_tasks(config.categories, config.split, config.limit) if task.id not in done]
    if done:
        log.info("resuming: %d tasks already bootstrapped, %d to go", len(done), len(todo))
    lock = threading.Lock()
    counts = {"steps": 0, "accepted": 0}
    bar = tqdm(total=len(todo), desc="PAG bootstrapping", unit="task")

    def run(task: Task) -> None:
        entry = play_task(task, config, program, lm, check)
        with lock:
            append_shard(out, entry)
            done[task.id] = entry
            counts["steps"] += len(entry["steps"])
            counts["accepted"] += sum(s["accepted"] for s in entry["steps"])
            bar.set_postfix(accept=f"{counts['accepted']}/{counts['steps']}", failed=entry["status"] == "failed")
            bar.update()
            if on_task:
                on_task(entry)

    try:
        if config.threads == 1:  # in the main thread, so Ctrl-C stops right after the task in flight
            for task in todo:
                run(task)
        else:
            with ThreadPoolExecutor(max_workers=config.threads) as pool:
                futures = [pool.submit(run, task) for task in todo]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # save the tasks in flight, start no more
                    raise
    finally:
        bar.close()
    return done
