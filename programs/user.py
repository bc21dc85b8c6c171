"""A simulated customer for tau2 tasks: tau2's published user-simulator prompt, played by any DSPy LM.

``Tau2Env(task, user=SimulatedUser(lm))`` asks it for every user message. It sees the conversation
with the roles flipped (the agent speaks as "user", it answers as "assistant"), as tau2's own user
simulator does. Where the customer has tools (telecom: their phone), an answer that is nothing but
calls to them (``[toggle_airplane_mode()]``, parsed safely, never evaluated) runs them through
``env.user_step`` and the simulator is asked again with the results, up to ``max_tool_rounds`` times.
"""

from collections.abc import Sequence

import dspy

from parlmt.envs import CallError, Task, parse_calls
from parlmt.envs.tau2 import Tau2Env, user_system_prompt

_FLIPPED = {"assistant": "user", "user": "assistant"}


class SimulatedUser:
    """The customer of a tau2 task, written by ``lm`` (default: ``dspy.settings.lm``) at ``temperature``
    (None: the LM's own)."""

    def __init__(self, lm: dspy.BaseLM | None = None, max_tool_rounds: int = 5, temperature: float | None = None):
        self.lm = lm
        self.max_tool_rounds = max_tool_rounds
        self.temperature = temperature

    def respond(self, env: Tau2Env) -> str | None:
        """The next user message of ``env``'s conversation (tau2's stop token ends it)."""
        lm = self.lm or dspy.settings.lm
        if lm is None:
            raise ValueError("SimulatedUser needs an LM: SimulatedUser(dspy.LM(...)) or dspy.configure(lm=...)")
        system = {"role": "system", "content": user_system_prompt(env.task)}
        # per call: the user may share the agent's LM (and its batched lanes) at another temperature
        options = {} if self.temperature is None else {"temperature": self.temperature}
        for _ in range(self.max_tool_rounds + 1):
            messages = [system, *(self._flip(m) for m in env.conversation())]
            output = lm(messages=messages, **options)[0]
            text = ((output.get("text") if isinstance(output, dict) else output) or "").strip()  # None: no content
            calls = self._own_tool_calls(text, env)
            if not calls:
                return text
            env.user_step(calls)
        return text  # still calling tools after max_tool_rounds: the last output stands as the message

    @staticmethod
    def _flip(message: dict) -> dict:
        if message["role"] == "tool":  # the result of the customer's own call: they read it
            return {"role": "user", "content": f"Result: {message['content']}"}
        return {"role": _FLIPPED[message["role"]], "content": message["content"]}

    @staticmethod
    def _own_tool_calls(text: str, env: Tau2Env) -> list:
        """The calls in ``text`` when it is nothing but calls to the customer's own tools, else []."""
        names = {schema["name"] for schema in env.task.meta["user_tools"]}
        if not names:
            return []
        try:  # plain text is not call syntax: CallError
            calls = parse_calls(text)
        except CallError:
            return []
        return calls if calls and all(call.name in names for call in calls) else []


def require_simulated_user(tasks: Sequence[Task]) -> None:
    """Raise ``ValueError`` unless every task's environment takes a simulated user: tau2's do; BFCL
    and task files script their user turns, so a user LM there would silently go unused."""
    scripted = [task.id for task in tasks if task.meta.get("source") != "tau2"]
    if scripted:
        shown = ", ".join(scripted[:3]) + (f" and {len(scripted) - 3} more" if len(scripted) > 3 else "")
        raise ValueError(f"a simulated user (user LM) plays tau2 tasks only; {shown}: user turns are scripted there; "
                         "choose tau2:<domain> tasks or leave the user LM out")
