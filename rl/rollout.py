"""Rollouts of the real agent from a turn's state, with every module call kept as a training sample.

A *state* is ``(task, turn)``: ``play`` runs the agent built from ``programs`` (``progress`` or
``fullhistory``) on ``task.from_turn(turn)``, so the earlier turns are replayed from the ground
truth (the transcript, Summarize's input, holds their real calls and results) and the policy plays
from ``turn`` on. Each module call is one LM call, so the LM's samples line up with the
trajectory's module calls and are tagged from them with ``(module, turn, call index)``.

With a ``user_lm`` (tau2 tasks) a ``SimulatedUser`` played by it answers every reply of the agent and the
conversation runs until it stops (tau2 scores only the whole conversation). Its turns are then one outcome:
every Act step of the conversation against all of the task's expected actions, and tau2's verdict as both
the turn and the episode check; each played turn gets it. A user that fails (raises, writes nothing, never
stops) ends the rollout with tau2's error type for it (``tau2:user_empty``, ...), scored as a failure.
"""

from collections import Counter
from dataclasses import dataclass, field

import dspy

from parlmt.envs import Task, ToolEnv, make_env
from parlmt.envs.tau2 import MAX_USER_TURNS
from parlmt.programs.agents import build_program
from parlmt.programs.trajectory import Trajectory
from parlmt.programs.user import SimulatedUser
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
         refresh: str = "turn", tool_docs: str = "full", user_lm: dspy.BaseLM | None = None,
         max_user_turns: int = MAX_USER_TURNS, user_temperature: float | None = None) -> Rollout:
    """Play ``program`` with ``lm`` from turn ``start`` of ``task`` (earlier turns replayed from the
    ground truth) for ``turns`` turns (None: to the end); with ``user_lm`` (tau2), the whole conversation
    with a simulated user played by it (``lm`` itself: its answers as the customer are not samples) at
    ``user_temperature`` (None: the user LM's own).

    ``lm`` is a ``TransformersLM`` with ``record_samples=True``; its sample list is cleared first.
    ChatAdapter's JSON retry is off, so each module call is exactly one LM call, one sample.
    """
    if task.ground_truth is None:
        raise ValueError(f"task {task.id} has no ground truth: RL needs it for the earlier turns and the rewards")
    user = {} if user_lm is None else {"max_user_turns": max_user_turns,
                                       "user": SimulatedUser(_Unrecorded(lm) if user_lm is lm else user_lm,
                                                             temperature=user_temperature)}
    agent = build_program(program, max_steps_per_turn=max_steps_per_turn, refresh=refresh, tool_docs=tool_docs)
    lm.samples.clear()
    env = make_env(task.from_turn(start, turns), max_steps_per_turn=max_steps_per_turn, **user)  # a user opens now
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        trajectory = agent(task=env).trajectory
    rollout = Rollout(task.id, start, trajectory, samples=tag_samples(list(lm.samples), trajectory))
    rollout.outcomes = conversation_outcomes(trajectory, env) if user else turn_outcomes(trajectory, env)
    return rollout


class _Unrecorded:
    """The policy LM playing the customer: what it writes as the user is no training sample."""

    def __init__(self, lm):
        self.lm = lm

    def __call__(self, messages: list[dict], **kwargs) -> list:
        kept = len(self.lm.samples)
        try:
            return self.lm(messages=messages, **kwargs)
        finally:
            del self.lm.samples[kept:]


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
                                            meta={"task_id": trajectory.task_id, "turn": record.turn},
                                            capped=bool(record.capped))
    return outcomes


def conversation_outcomes(trajectory: Trajectory, env: ToolEnv) -> dict[int, TurnOutcome]:
    """A conversation with a simulated user as one ``TurnOutcome`` for each of its turns: the user's
    turns have no expected actions of their own (they are all the first turn's), and tau2 scores the end."""
    steps = tuple(StepOutcome(tuple(s.calls), tuple(s.errors), s.format_error) for s in trajectory.steps)
    truth = tuple(call.canonical() for turn in range(len(env.task.turns)) for call in env.ground_truth(turn))
    passed = bool(trajectory.passed)
    outcome = TurnOutcome(steps, truth, passed, passed, meta={"task_id": trajectory.task_id})
    return {record.turn: outcome for record in trajectory.turns}


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
