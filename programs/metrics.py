"""Scores of episodes: DSPy metrics for optimizers, and the aggregate figures ``parlmt eval`` reports.

The verdicts come from the environment (for BFCL, the official checker); these functions only
read them off a program's prediction or trajectory.
"""

import dataclasses
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from statistics import mean

import dspy

from parlmt.envs import Task
from parlmt.envs.splits import fixed_share
from parlmt.programs.trajectory import ACT, Trajectory

PROGRAM_ERROR = "parlmt:program_error"  # the program raised; the episode counts as failed
RESAMPLES = 2000  # bootstrap resamples of an interval (fixed seed: the same episodes give the same interval)


def task_success(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> float:
    """1.0 when the episode passed (BFCL: the official multi-turn checker), else 0.0."""
    return float(bool(prediction.passed))


def turn_accuracy(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> float:
    """Share of scored turns that passed: a denser signal than ``task_success`` for optimizers."""
    return prediction.trajectory.turn_accuracy


def feedback(example: dspy.Example, prediction: dspy.Prediction, trace=None, pred_name=None, pred_trace=None):
    """GEPA's metric: the turn accuracy, with the checker's reasons for each failed turn as feedback."""
    trajectory = prediction.trajectory
    failed = [f"turn {t.turn + 1}: {t.reason}" for t in trajectory.turns if t.passed is False]
    text = "; ".join(failed) or ("all turns passed" if trajectory.passed else trajectory.reason)
    return dspy.Prediction(score=trajectory.turn_accuracy, feedback=text)


def examples(task_ids: list[str]) -> list[dspy.Example]:
    """Optimizer examples: one per task, the task id as the only input."""
    return [dspy.Example(task=task_id).with_inputs("task") for task_id in task_ids]


def act_prompt_tokens_by_turn(trajectories: list[Trajectory]) -> dict[int, float]:
    """Mean prompt tokens per Act call, by turn (0-based)."""
    by_turn = defaultdict(list)
    for trajectory in trajectories:
        for call in trajectory.calls_of(ACT):
            by_turn[call.turn].append(call.prompt_tokens)
    return {turn: mean(tokens) for turn, tokens in sorted(by_turn.items())}


def turn_states(tasks: list[Task], per_entry: int | None = None) -> list[Task]:
    """Every (entry, turn) state of ``tasks``: one task per turn that plays that turn alone, the
    earlier ones replayed from the ground truth. Scored on these, accuracy is the turn accuracy with
    earlier turns replayed, which does not compound a turn's errors into the next ones.

    ``per_entry`` keeps that many states of each entry, the turns ranked by a fixed hash of (entry,
    turn): a cheaper evaluation that still spreads over every entry, which is what the interval
    (a bootstrap over entries) needs to be narrow."""
    return [task.from_turn(turn, turns=1) for task in tasks for turn in state_turns(task, per_entry)]


def state_turns(task: Task, per_entry: int | None = None) -> list[int]:
    """The turns of ``task`` that ``turn_states`` plays, in order: ``per_entry`` of them ranked by a fixed
    hash of (entry, turn), or all (None)."""
    if per_entry is not None and per_entry < 1:
        raise ValueError(f"states per entry must be at least 1, got {per_entry}")
    ranked = sorted(range(len(task.turns)), key=lambda turn: fixed_share(f"state:{task.id}@{turn}"))
    return sorted(ranked[:per_entry])


def trials(tasks: list[Task], k: int) -> list[Task]:
    """Each task ``k`` times, each trial a task of its own (id ``<task id>#<trial>``, ``meta['trial_of']``
    the task played), so trials are written and resumed like episodes; ``k`` = 1 leaves the tasks as they
    are. Trials differ only when something samples: an LM at a temperature above 0."""
    if k < 1:
        raise ValueError(f"trials must be at least 1, got {k}")
    if k == 1:
        return list(tasks)
    return [dataclasses.replace(task, id=f"{task.id}#{trial}", meta={**task.meta, "trial_of": task.id})
            for task in tasks for trial in range(k)]


def pass_hat_k(outcomes: Sequence[Sequence[bool]], k: int) -> float:
    """tau2's pass^k (tau-bench, arXiv 2406.12045): the chance that ``k`` trials of a task drawn
    without replacement all pass, C(c, k) / C(n, k) for a task with ``c`` successes in ``n`` trials,
    averaged over tasks. ``outcomes`` holds each task's trial outcomes; every task needs ``k`` or more."""
    if k < 1 or not outcomes or min(len(task) for task in outcomes) < k:
        raise ValueError(f"pass^{k} needs k >= 1 and at least k trials of every task")
    return mean(math.comb(sum(task), k) / math.comb(len(task), k) for task in outcomes)


def pass_hat(trajectories: list[Trajectory]) -> dict[str, float]:
    """``pass_hat_<k>`` (tau2's name for pass^k) for k = 1 to the fewest trials of a task, over the
    episodes that are trials (``trials``); empty when there are none. pass^1 is the mean success."""
    by_task = defaultdict(list)
    for trajectory in trajectories:
        if "trial_of" in trajectory.meta:
            by_task[trajectory.meta["trial_of"]].append(bool(trajectory.passed))
    outcomes = list(by_task.values())
    most = min((len(task) for task in outcomes), default=0)
    return {f"pass_hat_{k}": pass_hat_k(outcomes, k) for k in range(1, most + 1)}


def entry_of(trajectory: Trajectory) -> str:
    """The entry an episode belongs to: its task, the task whose state it started from, or the task it
    is a trial of."""
    return trajectory.meta.get("state_of") or trajectory.meta.get("trial_of") or trajectory.task_id


def accuracy_interval(trajectories: list[Trajectory], confidence: float = 0.95) -> tuple[float, float]:
    """A ``confidence`` interval of the accuracy (share of episodes that passed), by bootstrap over
    entries: the states of one entry are resampled together, as they are not independent."""
    groups = defaultdict(list)
    for trajectory in trajectories:
        groups[entry_of(trajectory)].append(bool(trajectory.passed))
    return _bootstrap([(sum(passed), len(passed)) for passed in groups.values()], confidence)


def paired_gain(base: list[Trajectory], trained: list[Trajectory],
                confidence: float = 0.95) -> tuple[float, float, float]:
    """Accuracy of ``trained`` minus that of ``base`` on the same episodes (task ids), and a
    ``confidence`` interval of it by bootstrap over entries, each entry's episodes compared pairwise:
    much narrower than two separate intervals, as the hard states are hard for both."""
    return pooled_paired_gain([(base, trained)], confidence)


def pooled_paired_gain(pairs: list[tuple[list[Trajectory], list[Trajectory]]],
                       confidence: float = 0.95) -> tuple[float, float, float]:
    """``paired_gain`` over several runs (seeds) on the same entries: the mean gain of every run's
    episodes, and its interval by bootstrap over entries, each entry drawn with its episodes of every run."""
    groups = defaultdict(list)
    for base, trained in pairs:
        before = {t.task_id: bool(t.passed) for t in base}
        after = {t.task_id: bool(t.passed) for t in trained}
        if set(before) != set(after) or not before:
            raise ValueError(f"a paired gain needs the same episodes on both sides: {len(set(before) ^ set(after))} "
                             f"of {len(set(before) | set(after))} are on one side only")
        for trajectory in trained:
            groups[entry_of(trajectory)].append(after[trajectory.task_id] - before[trajectory.task_id])
    low, high = _bootstrap([(sum(gains), len(gains)) for gains in groups.values()], confidence)
    return float(mean(gain for gains in groups.values() for gain in gains)), low, high


def _bootstrap(entries: list[tuple[int, int]], confidence: float) -> tuple[float, float]:
    """The ``confidence`` interval of sum(value) / sum(count) over ``(value, count)`` entries drawn with
    replacement."""
    if not entries:
        return 0.0, 0.0
    rng = random.Random(0)
    figures = []
    for _ in range(RESAMPLES):
        drawn = rng.choices(entries, k=len(entries))
        figures.append(sum(v for v, _ in drawn) / sum(n for _, n in drawn))
    figures.sort()
    tail = (1 - confidence) / 2
    return figures[int(tail * RESAMPLES)], figures[min(RESAMPLES - 1, int((1 - tail) * RESAMPLES))]


def aggregate(trajectories: list[Trajectory]) -> dict[str, float]:
    """Episodes, entries, accuracy with its 95% interval (bootstrap over entries), turn accuracy, the
    share of played turns cut at the step cap, the accuracy of episodes whose every played turn ended
    before it (``accuracy_ended``), format validity, mean Act steps per turn, mean prompt and completion
    tokens per Act call, LM seconds per episode, and pass^k over trials (``pass_hat``). On ``turn_states``
    episodes accuracy is the replayed-turn accuracy; on tau2 it is the mean reward (tau2's checks each
    give 0 or 1)."""
    acts = [call for t in trajectories for call in t.calls_of(ACT)]
    turns = [turn for t in trajectories for turn in t.turns if not turn.replayed]
    low, high = accuracy_interval(trajectories)
    return {
        "episodes": len(trajectories),
        "entries": len({entry_of(t) for t in trajectories}),
        "accuracy": mean(bool(t.passed) for t in trajectories) if trajectories else 0.0,
        "accuracy_low": low,
        "accuracy_high": high,
        "turn_accuracy": mean(t.turn_accuracy for t in trajectories) if trajectories else 0.0,
        # A turn cut at the step cap is scored on its state; an official run then force-quits the entry
        # unless it was the entry's last turn, so a replayed state's pass does not say the turn ended.
        "turns_capped": mean(bool(turn.capped) for turn in turns) if turns else 0.0,
        "accuracy_ended": mean(bool(t.passed) and not any(r.capped for r in t.turns if not r.replayed)
                               for t in trajectories) if trajectories else 0.0,
        "format_validity": mean(t.format_validity for t in trajectories) if trajectories else 0.0,
        "steps_per_turn": mean(turn.steps for turn in turns) if turns else 0.0,
        "act_prompt_tokens": mean(call.prompt_tokens for call in acts) if acts else 0.0,
        "act_completion_tokens": mean(call.completion_tokens for call in acts) if acts else 0.0,
        "lm_s_per_episode": mean(t.lm_s for t in trajectories) if trajectories else 0.0,
        "program_errors": sum(t.error_type == PROGRAM_ERROR for t in trajectories),
        **pass_hat(trajectories),
    }


def by_category(trajectories: list[Trajectory]) -> dict[str, dict[str, float]]:
    """``aggregate`` per task category (``meta['category']``, else the task source), then ``all``."""
    groups = defaultdict(list)
    for trajectory in trajectories:
        groups[trajectory.meta.get("category") or trajectory.meta.get("source", "tasks")].append(trajectory)
    table = {name: aggregate(group) for name, group in groups.items()}
    table["all"] = aggregate(trajectories)
    return table
