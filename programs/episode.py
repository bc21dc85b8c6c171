"""One task played by a program: the environment, the running transcript and the trajectory.

The agents in ``agents.py`` say which module runs when; an ``Episode`` does the bookkeeping they
share: rendering tool docs, the transcript and this turn's observations as prompt text, calling a
module while recording its LM calls, turning Act's output into environment steps, and scoring.
"""

import re
import time

import dspy
from dspy.utils.exceptions import AdapterParseError

from parlmt.envs import CallError, Task, ToolEnv, make_env, render_tool_docs
from parlmt.envs.base import FORCE_TERMINATED
from parlmt.programs.parsing import extract_calls, salvage_calls
from parlmt.programs.trajectory import ACT, ActStep, ModuleCall, Trajectory, TurnRecord, scalar_meta

NOTHING_YET = "(none yet)"
_FIELD_MARKER = re.compile(r"\[\[ ## \w+ ## \]\]")
MAX_ECHO_CHARS = 500  # unreadable output is echoed back to the model this far, not in full


class _Capture:
    """A stand-in in DSPy's chain of calling modules, which records every LM call into each
    caller's ``history``: so one module call sees exactly its own LM calls, even when threads
    share the program and the LM."""

    def __init__(self):
        self.history: list[dict] = []


class Episode:
    """Plays ``task`` (a ``Task``, a task id, or an environment already reset on a task) from its start
    turn: the turns before it are replayed from the ground truth first (``Task.from_turn``)."""

    def __init__(self, task: Task | str | ToolEnv, program: str, max_steps_per_turn: int, tool_docs: str = "full"):
        self.tool_docs = tool_docs
        self.env = task if isinstance(task, ToolEnv) else make_env(task, max_steps_per_turn=max_steps_per_turn)
        if self.env.max_steps_per_turn < max_steps_per_turn:  # the env would force-quit the model before the program
            raise ValueError(
                f"the environment allows {self.env.max_steps_per_turn} steps per turn but the program takes up to "
                f"{max_steps_per_turn}: build the environment with make_env(task, max_steps_per_turn="
                f"{max_steps_per_turn}), or the program with max_steps_per_turn={self.env.max_steps_per_turn}"
            )
        meta = scalar_meta(self.env.task.meta)
        self.trajectory = Trajectory(task_id=self.env.task.id, program=program, meta=meta)
        self._started = time.perf_counter()
        self._stopped = False
        self._tool_docs: tuple[int, str] | None = None
        if self.request is not None:  # a simulated user may end an episode before its first turn (a failure)
            self._open_turn()
        while self.turn < self.env.task.start:
            self._replay_turn()

    # ------------------------------------------------------------------ what the modules read

    @property
    def request(self) -> str | None:
        """The current user request; None once the episode is over."""
        return None if self._stopped else self.env.user_message

    @property
    def turn(self) -> int:
        return self.env.turn

    @property
    def step(self) -> int:
        """Act steps taken so far in this turn."""
        return self._current.steps

    def tools(self) -> str:
        """Compact docs of the tools visible at this turn (rendered once per turn)."""
        if self._tool_docs is None or self._tool_docs[0] != self.turn:
            self._tool_docs = (self.turn, render_tool_docs(self.env.visible_tools(), brief=self.tool_docs == "brief"))
        return self._tool_docs[1]

    def transcript(self, current_turn: bool = False) -> str:
        """The conversation as text: every earlier turn, and this one so far when asked."""
        last = self.turn + 1 if current_turn else self.turn
        lines = []
        for record in self.trajectory.turns[:last]:
            lines.append(f"[turn {record.turn + 1}] User: {record.request}")
            lines += self._step_lines(record.turn)
        return "\n".join(lines) or NOTHING_YET

    def observations(self) -> str:
        """This turn's calls and their results, or a note that there are none yet."""
        return "\n".join(self._step_lines(self.turn)) or NOTHING_YET

    def _step_lines(self, turn: int) -> list[str]:
        lines = []
        for step in self.trajectory.steps:
            if step.turn != turn:
                continue
            if step.format_error is not None:
                lines += [f"Output: {step.output[:MAX_ECHO_CHARS]}", f"Result: {step.observations[0]}"]
                continue
            for call, observation in zip(step.calls, step.observations, strict=True):
                lines += [f"Call: {call}", f"Result: {observation}"]
            if step.reply is not None:
                lines.append(f"Assistant: {step.reply}")
        return lines

    # ------------------------------------------------------------------ what the modules do

    def predict(self, module: str, predictor: dspy.Module, **inputs: str) -> dspy.Prediction | None:
        """Call ``predictor`` and record the call; None when the adapter could not read its output."""
        capture = _Capture()
        callers = [*(dspy.settings.caller_modules or []), capture]
        record = ModuleCall(module, self.turn, self.step, inputs, {})
        started = time.perf_counter()
        prediction = None
        with dspy.context(caller_modules=callers):
            try:
                prediction = predictor(**inputs)
            except AdapterParseError as error:
                record.error = f"{error.adapter_name} could not parse the output"
        record.latency_s = time.perf_counter() - started
        if prediction is not None:
            record.outputs = {key: str(value) for key, value in prediction.items()}
        if capture.history:
            last = capture.history[-1]
            output = (last.get("outputs") or [""])[0]
            record.messages = last.get("messages") or []
            record.completion = output["text"] if isinstance(output, dict) else str(output)
            record.lm_calls = len(capture.history)
            record.prompt_tokens = sum((e.get("usage") or {}).get("prompt_tokens") or 0 for e in capture.history)
            record.completion_tokens = sum(
                (e.get("usage") or {}).get("completion_tokens") or 0 for e in capture.history
            )
        self.trajectory.module_calls.append(record)
        return prediction

    def text(self, module: str, predictor: dspy.Module, field: str, **inputs: str) -> str:
        """One output field of a module call; when the adapter cannot read the output, the raw
        completion stands in for it (a summary or plan without its field marker is still one)."""
        prediction = self.predict(module, predictor, **inputs)
        if prediction is not None:
            return str(prediction[field])
        return _FIELD_MARKER.sub("", self.trajectory.module_calls[-1].completion).strip()

    def act(self, predictor: dspy.Module, **awareness: str) -> ActStep:
        """One Act step: call ``predictor`` and execute its calls, or take its reply as the turn's end.

        Output that cannot be read becomes an error observation for the next step, never an exception.
        """
        prediction = self.predict(ACT, predictor, tools=self.tools(), **awareness, request=self.request,
                                  observations=self.observations())
        step = ActStep(self.turn, self.step, output="")
        try:
            if prediction is None:  # the adapter failed; bare calls in the raw text still count
                step.output = self.trajectory.module_calls[-1].completion
                calls = salvage_calls(step.output)
            else:
                step.output = str(prediction.calls)
                calls = extract_calls(step.output)
        except CallError as error:
            step.format_error = str(error)
            step.observations = [f"Error: {error}"]
        else:
            if calls:
                self._execute(step, calls)
            else:
                step.reply = str(prediction.reply) if prediction is not None else ""
                self.env.reply(step.reply)
        self.trajectory.steps.append(step)
        self._current.steps += 1
        return step

    def next_turn(self, capped: bool = False) -> None:
        """Close this turn (scored when the task has ground truth). A turn that passed the step cap
        ends the episode, as BFCL force-quits such a model."""
        record = self._current
        record.capped = capped
        record.reply = next((s.reply for s in self.trajectory.steps if s.turn == record.turn and s.reply is not None),
                            None)
        self.env.next_turn()
        if self.env.task.ground_truth is not None and not record.replayed:
            score = self.env.score_turn(record.turn)
            record.passed, record.reason, record.error_type, record.checked = (
                score.passed, score.reason, score.error_type, score.checked)
        self._stopped = capped
        if self.request is not None:
            self._open_turn()

    def result(self) -> dspy.Prediction:
        """The finished episode: its trajectory, and whether it passed (None without ground truth)."""
        trajectory = self.trajectory
        trajectory.executed = self.env.executed_calls()
        if self.env.task.ground_truth is not None:
            score = self.env.score_episode()
            trajectory.passed, trajectory.reason, trajectory.error_type = score.passed, score.reason, score.error_type
            capped = next((t for t in trajectory.turns if t.capped), None)
            # BFCL fails a force-quit entry for the turns it lacks: a cap in the last turn is scored as usual
            if capped is not None and capped.turn < len(self.env.task.turns) - 1:
                trajectory.passed, trajectory.error_type = False, FORCE_TERMINATED
                trajectory.reason = f"turn {capped.turn} passed the step cap: later turns were not played"
        trajectory.wall_s = time.perf_counter() - self._started
        return dspy.Prediction(trajectory=trajectory, passed=trajectory.passed)

    def _execute(self, step: ActStep, calls: list) -> None:
        """Run ``calls`` in the environment and record each one's canonical text, observation and error."""
        self.env.step(calls)
        results = self.env.trajectory[-1].results
        step.calls = [r.call for r in results]
        step.observations = [r.observation for r in results]
        step.errors = [r.error for r in results]

    def _replay_turn(self) -> None:
        """Play this turn from the ground truth, as a model that gets it right would: every call in
        one step, then the reply. The transcript shows it like any played turn; it is not scored."""
        truth = self.env.ground_truth()
        if truth:
            step = ActStep(self.turn, 0, f"[{', '.join(call.canonical() for call in truth)}]")
            self._execute(step, truth)
            self.trajectory.steps.append(step)
        reply = self.env.reference_reply()
        self.env.reply(reply)
        self.trajectory.steps.append(ActStep(self.turn, 1 if truth else 0, "[]", reply=reply))
        self._current.steps = 2 if truth else 1
        self._current.replayed = True
        self.next_turn()

    def _open_turn(self) -> None:
        self._current = TurnRecord(turn=self.turn, request=self.request)
        self.trajectory.turns.append(self._current)
