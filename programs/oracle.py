"""The ground-truth oracle, written as the agent's modules: what each module writes when it plays a
task's ground truth. It is not a language model.

Summarize lists the calls executed so far with their (shortened) results, Plan numbers the current
turn's ground-truth calls still to run, and Act makes them (the next one per step, or all of them in
one step) and replies once none is left, with the environment's ``reference_reply`` (tau2: the information
the task wants communicated); the answers are registered by signature (``ANSWERS``).
Plugged into an agent it produces the same kind of trajectory an LM does, with every action correct
by construction. It serves as:

- the reference teacher of PAG bootstrapping (optimize/);
- the source of reference SFT rows (``parlmt train data``).

It plays in ``make_env(task, reference=True)``: there tau2's customer carries out their own expected
actions (telecom: on their phone) once the oracle has replied, as it asks them to.
"""

from collections.abc import Callable

import dspy

from parlmt.envs import ToolEnv
from parlmt.envs.base import CANNOT_REPLY
from parlmt.programs.agents import build_program, program_class
from parlmt.signatures import Act, Plan, Summarize

NO_CALLS_PLAN = "1. No tool call can complete this request: tell the user what is missing."
DONE_PLAN = "1. Nothing left to call: reply to the user."
MAX_RESULT_CHARS = 160  # results in a summary are cut here: the facts, not the payload


def remaining_calls(env: ToolEnv) -> list[str]:
    """Ground-truth calls of the current turn not executed yet."""
    truth = [call.canonical() for call in env.ground_truth()]
    return truth[sum(len(step) for step in env.executed_calls()[env.turn]):]


def oracle_summary(env: ToolEnv) -> str:
    """Every call executed so far, by turn, with its shortened result."""
    lines = [f"- Turn {step.turn + 1}: {result.call} -> {' '.join(result.observation.split())[:MAX_RESULT_CHARS]}"
             for step in env.trajectory for result in step.results if result.executed]
    return "Done so far:\n" + "\n".join(lines) if lines else "Nothing has been done yet."


# What the oracle writes for a module, by the module's signature: ``answer(env, calls_per_step)`` -> its outputs.
# Keyed by signature, not module name, so any program's modules find theirs; a new signature registers its own
# answer here (``ANSWERS[Reflect] = ...``) next to where it is defined.
OracleAnswer = Callable[[ToolEnv, int | None], dict[str, str]]


def summarize_answer(env: ToolEnv, calls_per_step: int | None) -> dict[str, str]:
    return {"summary": oracle_summary(env)}


def plan_answer(env: ToolEnv, calls_per_step: int | None) -> dict[str, str]:
    steps = "\n".join(f"{i}. {call}" for i, call in enumerate(remaining_calls(env), 1))
    return {"plan": steps or (NO_CALLS_PLAN if env.reference_reply() == CANNOT_REPLY else DONE_PLAN)}


def act_answer(env: ToolEnv, calls_per_step: int | None) -> dict[str, str]:
    remaining = remaining_calls(env)
    if remaining:
        return {"calls": f"[{', '.join(remaining[:calls_per_step])}]", "reply": ""}
    return {"calls": "[]", "reply": env.reference_reply()}


ANSWERS: dict[type[dspy.Signature], OracleAnswer] = {Summarize: summarize_answer, Plan: plan_answer, Act: act_answer}


def oracle_outputs(signature: type[dspy.Signature], env: ToolEnv, calls_per_step: int | None = 1) -> dict[str, str]:
    """The outputs of a module with ``signature`` at ``env``'s current point; Act makes ``calls_per_step`` of
    the remaining calls per step (None: all of them in one step)."""
    if signature not in ANSWERS:
        raise ValueError(f"the oracle has no answer for {signature.__name__}: register one in oracle.ANSWERS")
    return ANSWERS[signature](env, calls_per_step)


class Oracle(dspy.Module):
    """One module of the agent, with ``signature``, played by the oracle (``oracle_outputs``)."""

    def __init__(self, signature: type[dspy.Signature], env: ToolEnv, calls_per_step: int | None = 1):
        super().__init__()
        self.signature, self.env, self.calls_per_step = signature, env, calls_per_step

    def forward(self, **inputs: str) -> dspy.Prediction:
        return dspy.Prediction(**oracle_outputs(self.signature, self.env, self.calls_per_step))


def oracle_program(program: str, env: ToolEnv, calls_per_step: int | None = 1, **options) -> dspy.Module:
    """The agent named ``program`` (progress, fullhistory or another registered one) with every module it
    declares played by the oracle; ``options`` are ``build_program``'s (max_steps_per_turn, refresh, tool_docs)."""
    oracles = {name: Oracle(signature, env, calls_per_step) for name, signature in program_class(program).MODULES}
    return build_program(program, **options, **oracles)
