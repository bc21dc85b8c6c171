"""Rollouts of the real agent from a turn's state, with every module call kept as a training sample.

A *state* is ``(task, turn)``: the earlier turns are replayed from the ground truth and the
policy plays from ``turn`` on. ``play`` builds the agent from ``programs`` (``progress`` or
``fullhistory``) with each module wrapped in a ``Scripted`` module: before the live turn the
ground-truth oracle (``programs.oracle``) answers without an LM (so the transcript, Summarize's
input, holds the real calls and results of the earlier turns), from then on it calls the real
``dspy.Predict`` and tags the LM samples it caused with ``(module, turn, call index)``.

The agent's ``forward`` plays every turn of the task it is given, so ``play`` hands it a task cut
after the last turn to play. (A ``programs`` hook to start at a given turn with a transcript would
make the wrapper's ground-truth half unnecessary.)
"""

import dataclasses
from dataclasses import dataclass, field

import dspy

from parlmt.envs import Task, ToolEnv, make_env
from parlmt.programs.agents import SIGNATURES, build_program
from parlmt.programs.oracle import oracle_outputs
from parlmt.programs.trajectory import Trajectory
from parlmt.rl.rewards import StepOutcome, TurnOutcome


class Scripted(dspy.Module):
    """One module of the agent: the oracle before turn ``live_from`` (a turn's calls in one step,
    then a reply), ``predictor`` from then on.

    Args:
        module: ``summarize``, ``plan`` or ``act``.
        predictor: the module's real predictor (``dspy.Predict`` of its signature).
        env: the episode's environment (read for the current turn and its ground truth).
        live_from: first turn played by ``predictor``.
        lm: the policy LM whose ``samples`` this module's live calls are tagged in.
    """

    def __init__(self, module: str, predictor: dspy.Module, env: ToolEnv, live_from: int, lm):
        super().__init__()
        self.module, self.predictor, self.live_from, self.policy = module, predictor, live_from, lm
        self._env = env
        self._calls: dict[int, int] = {}  # turn -> calls of this module so far

    def forward(self, **inputs: str) -> dspy.Prediction:
        turn = self._env.turn
        index = self._calls.get(turn, 0)
        self._calls[turn] = index + 1
        if turn < self.live_from:
            return dspy.Prediction(**oracle_outputs(self.module, self._env, calls_per_step=None))
        first = len(self.policy.samples)
        try:
            return self.predictor(**inputs)
        finally:  # an unreadable output raises from the adapter, and its sample still trains
            for sample in self.policy.samples[first:]:
                sample.tags.update(module=self.module, turn=turn, index=index)


@dataclass
class Rollout:
    """One play of the program from a state: the LM samples it produced (tagged), its trajectory,
    and the outcome of every turn the policy played."""

    task_id: str
    start: int
    trajectory: Trajectory
    samples: list = field(default_factory=list)
    outcomes: dict[int, TurnOutcome] = field(default_factory=dict)


def episode_task(task: Task, start: int, turns: int | None) -> Task:
    """``task`` cut after turn ``start + turns - 1`` (``turns`` None keeps every turn)."""
    if task.ground_truth is None:
        raise ValueError(f"task {task.id} has no ground truth: RL needs it for the earlier turns and the rewards")
    if not 0 <= start < len(task.turns):
        raise ValueError(f"task {task.id} has {len(task.turns)} turns, no turn {start}")
    end = len(task.turns) if turns is None else min(len(task.turns), start + turns)
    return dataclasses.replace(task, turns=task.turns[:end], ground_truth=task.ground_truth[:end])


def build_scripted_program(program: str, env: ToolEnv, live_from: int, lm, max_steps: int = 20,
                           refresh: str = "turn") -> dspy.Module:
    """The agent named ``program`` with every module wrapped in ``Scripted``."""
    options = {"refresh": refresh} if program == "progress" else {}
    modules = ("summarize", "plan", "act") if program == "progress" else ("act",)
    wrapped = {m: Scripted(m, dspy.Predict(SIGNATURES[m]), env, live_from, lm) for m in modules}
    return build_program(program, max_steps=max_steps, **options, **wrapped)


def play(program: str, task: Task, start: int, lm, *, turns: int | None = 1, max_steps: int = 20,
         refresh: str = "turn") -> Rollout:
    """Play ``program`` with ``lm`` from turn ``start`` of ``task`` (earlier turns replayed from the
    ground truth) for ``turns`` turns (None: to the end).

    ``lm`` is a ``TransformersLM`` with ``record_samples=True``; its sample list is cleared first.
    ChatAdapter's JSON retry is off, so each module call is exactly one LM call, one sample.
    """
    if start > 0 and max_steps < 2:
        raise ValueError("replaying earlier turns takes two Act steps a turn (calls, then reply): max_steps >= 2")
    env = make_env(episode_task(task, start, turns), max_steps_per_turn=max_steps)
    agent = build_scripted_program(program, env, start, lm, max_steps, refresh)
    lm.samples.clear()
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        trajectory = agent(task=env).trajectory
    rollout = Rollout(task.id, start, trajectory, samples=list(lm.samples))
    rollout.outcomes = turn_outcomes(trajectory, env, first=start)
    return rollout


def turn_outcomes(trajectory: Trajectory, env: ToolEnv, first: int = 0) -> dict[int, TurnOutcome]:
    """The ``TurnOutcome`` of every turn from ``first`` on that the trajectory played."""
    outcomes = {}
    for record in trajectory.turns:
        if record.turn < first:
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
