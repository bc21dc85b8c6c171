"""The ground-truth oracle, written as the agent's modules: what each module writes when it plays a
task's ground truth. It is not a language model.

``summarize`` lists the calls executed so far with their (shortened) results, ``plan`` numbers the
current turn's ground-truth calls still to run, and ``act`` makes them (the next one per step, or
all of them in one step) and replies once none is left. Plugged into an agent it produces the same
kind of trajectory an LM does, with every action correct by construction. It serves as:

- the reference teacher of PAG bootstrapping (optimize/);
- the source of reference SFT rows (``parlmt train data``).
"""

import dspy

from parlmt.envs import ToolEnv
from parlmt.programs.agents import build_program
from parlmt.programs.episode import CANNOT_REPLY, DONE_REPLY

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


def oracle_outputs(module: str, env: ToolEnv, calls_per_step: int | None = 1) -> dict[str, str]:
    """The outputs of ``module`` (summarize, plan or act) at ``env``'s current point; Act makes
    ``calls_per_step`` of the remaining calls per step (None: all of them in one step)."""
    if module == "summarize":
        return {"summary": oracle_summary(env)}
    has_calls, remaining = bool(env.ground_truth()), remaining_calls(env)
    if module == "plan":
        steps = "\n".join(f"{i}. {call}" for i, call in enumerate(remaining, 1))
        return {"plan": steps or (DONE_PLAN if has_calls else NO_CALLS_PLAN)}
    if remaining:
        return {"calls": f"[{', '.join(remaining[:calls_per_step])}]", "reply": ""}
    return {"calls": "[]", "reply": DONE_REPLY if has_calls else CANNOT_REPLY}


class Oracle(dspy.Module):
    """One module of the agent played by the oracle (``oracle_outputs``)."""

    def __init__(self, module: str, env: ToolEnv, calls_per_step: int | None = 1):
        super().__init__()
        self.module, self.env, self.calls_per_step = module, env, calls_per_step

    def forward(self, **inputs: str) -> dspy.Prediction:
        return dspy.Prediction(**oracle_outputs(self.module, self.env, self.calls_per_step))


def oracle_program(program: str, env: ToolEnv, calls_per_step: int | None = 1, **options) -> dspy.Module:
    """The agent named ``program`` (progress or fullhistory) with every module played by the oracle;
    ``options`` are ``build_program``'s (max_steps_per_turn, refresh, tool_docs)."""
    modules = ("summarize", "plan", "act") if program == "progress" else ("act",)
    oracles = {module: Oracle(module, env, calls_per_step) for module in modules}
    return build_program(program, **options, **oracles)
