"""The reference teacher: an oracle that knows the ground truth, written as the agent's three modules.

It is not a language model. ``Summarize`` lists the calls executed so far with their results,
``Plan`` numbers the ground-truth calls of the current turn that are still to run, and ``Act``
makes the next of them (or replies once they are all done). Plugged into ``ProgressAwareAgent``
it produces the same kind of trajectory an LM teacher does, which makes it the oracle for tests
and a data baseline for PAG: every action is correct by construction, so what it measures is the
rest of the pipeline (execution, checker, model-aware verification).

``GuidedPlan`` is the half-way house for LM teachers: the teacher's own Plan module, shown the
current turn's ground-truth calls as a hint (the recorded inputs stay the unhinted ones).
"""

import dspy

from parlmt.envs import ToolEnv
from parlmt.programs import ProgressAwareAgent
from parlmt.signatures import Plan

DONE_REPLY = "Done: every step of your request is complete."
MAX_RESULT_CHARS = 160  # results in a reference summary are cut here: the facts, not the payload


def _executed_in_turn(env: ToolEnv, turn: int) -> int:
    return sum(len(step) for step in env.executed_calls()[turn])


def _remaining_truth(env: ToolEnv) -> list[str]:
    """Ground-truth calls of the current turn not executed yet (one call per Act step)."""
    truth = [call.canonical() for call in env.ground_truth()]
    return truth[_executed_in_turn(env, env.turn):]


class ReferenceSummarize(dspy.Module):
    """Summary = the executed calls of earlier turns with their (shortened) results."""

    def __init__(self, env: ToolEnv):
        super().__init__()
        self.env = env

    def forward(self, conversation: str) -> dspy.Prediction:
        lines = []
        for step in self.env.trajectory:
            for result in step.results:
                if result.executed:
                    observation = " ".join(result.observation.split())[:MAX_RESULT_CHARS]
                    lines.append(f"- {result.call} -> {observation}")
        return dspy.Prediction(summary="Done so far:\n" + "\n".join(lines) if lines else "Nothing has been done yet.")


class ReferencePlan(dspy.Module):
    """Plan = the numbered ground-truth calls of this turn that are still to run."""

    def __init__(self, env: ToolEnv):
        super().__init__()
        self.env = env

    def forward(self, tools: str, summary: str, request: str, observations: str) -> dspy.Prediction:
        remaining = _remaining_truth(self.env)
        steps = [f"{i}. {call}" for i, call in enumerate(remaining, 1)]
        return dspy.Prediction(plan="\n".join(steps) or "1. Nothing left to call: reply to the user.")


class ReferenceAct(dspy.Module):
    """Act = the next ground-truth call, or the closing reply when none is left."""

    def __init__(self, env: ToolEnv):
        super().__init__()
        self.env = env

    def forward(self, tools: str, summary: str, plan: str, request: str, observations: str) -> dspy.Prediction:
        remaining = _remaining_truth(self.env)
        if remaining:
            return dspy.Prediction(calls=f"[{remaining[0]}]", reply="")
        return dspy.Prediction(calls="[]", reply=DONE_REPLY)


class GuidedPlan(dspy.Module):
    """An LM teacher's Plan, shown the current turn's ground-truth calls as a hint."""

    def __init__(self, env: ToolEnv, plan: dspy.Module | None = None):
        super().__init__()
        self.env = env
        self.plan = plan or dspy.Predict(Plan)

    def forward(self, tools: str, summary: str, request: str, observations: str) -> dspy.Prediction:
        truth = ", ".join(call.canonical() for call in self.env.ground_truth())
        hint = f"{request}\n\n(Reference solution for this request, to plan from: [{truth}])"
        return self.plan(tools=tools, summary=summary, request=hint, observations=observations)


def reference_agent(env: ToolEnv, max_steps: int = 20) -> ProgressAwareAgent:
    """A ``ProgressAwareAgent`` whose three modules are the oracle for ``env``'s task."""
    return ProgressAwareAgent(max_steps=max_steps, summarize=ReferenceSummarize(env), plan=ReferencePlan(env),
                              act=ReferenceAct(env))
