"""Rollouts of the real agent from a turn's state, with every module call kept as a training sample.

A *state* is ``(task, turn)``: ``play`` runs the agent built from ``programs`` (``progress`` or
``fullhistory``) on ``task.from_turn(turn)``, so the earlier turns are replayed from the ground
truth (the transcript, Summarize's input, holds their real calls and results) and the policy plays
from ``turn`` on. Each module call is one LM call, so the LM's samples line up with the
trajectory's module calls and are tagged from them with ``(module, turn, call index)``.
"""

from collections import Counter
from dataclasses import dataclass, field

import dspy

from parlmt.envs import Task, ToolEnv, make_env
from parlmt.programs.agents import build_program
from parlmt.programs.trajectory import Trajectory
from parlmt.rl.rewards import StepOutcome, TurnOutcome


@dataclass
class Rollout:
    """One play of the program from a state: the LM samples it produced (tagged), its trajectory,
    and the outcome of every turn the policy played."""

    task_id: str
    start: int
    trajectory: Trajectory
    samples: list = field(default_factory=list)
    outcomes: dict[int, TurnOutcome] = field(default_factory=dict)


def play(program: str, task: Task, start: int, lm, *, turns: int | None = 1, max_steps_per_turn: int = 20,
         refresh: str = "turn", tool_docs: str = "full") -> Rollout:
    """Play ``program`` with ``lm`` from turn ``start`` of ``task`` (earlier turns replayed from the
    ground truth) for ``turns`` turns (None: to the end).

    ``lm`` is a ``TransformersLM`` with ``record_samples=True``; its sample list is cleared first.
    ChatAdapter's JSON retry is off, so each module call is exactly one LM call, one sample.
    """
    if task.ground_truth is None:
        raise ValueError(f"task {task.id} has no ground truth: RL needs it for the earlier turns and the rewards")
    env = make_env(task.from_turn(start, turns), max_steps_per_turn=max_steps_per_turn)
    agent = build_program(program, max_steps_per_turn=max_steps_per_turn, refresh=refresh, tool_docs=tool_docs)
    lm.samples.clear()
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        trajectory = agent(task=env).trajectory
    rollout = Rollout(task.id, start, trajectory, samples=tag_samples(list(lm.samples), trajectory))
    rollout.outcomes = turn_outcomes(trajectory, env)
    return rollout


def turn_outcomes(trajectory: Trajectory, env: ToolEnv) -> dict[int, TurnOutcome]:
    """The ``TurnOutcome`` of every turn the program played (replayed turns are left out)."""
    outcomes = {}
    for record in trajectory.turns:
        if record.replayed:
            continue
        steps = tuple(
            StepOutcome(tuple(s.calls), tuple(s.errors), s.format_error)
            for s in trajectory.steps
            if s.turn == record.turn
        )
        truth = tuple(call.canonical() for call in env.ground_truth(record.turn))
        outcomes[record.turn] = TurnOutcome(steps, truth, bool(record.passed), bool(trajectory.passed),
                                            meta={"task_id": trajectory.task_id, "turn": record.turn})
    return outcomes


def tag_samples(samples: list, trajectory: Trajectory) -> list:
    """Tag each LM sample with the module call that made it: ``module``, ``turn`` and ``index`` (the
    module's call count in that turn before it)."""
    if len(samples) != len(trajectory.module_calls):
        raise RuntimeError(f"{len(samples)} LM samples for {len(trajectory.module_calls)} module calls: each module "
                           "call must make exactly one LM call (ChatAdapter without its JSON fallback)")
    seen = Counter()
    for sample, call in zip(samples, trajectory.module_calls, strict=True):
        sample.tags.update(module=call.module, turn=call.turn, index=seen[call.module, call.turn])
        seen[call.module, call.turn] += 1
    return samples
