"""The environment protocol: tasks, episodes, observations and turn/episode scores.

``ToolEnv`` runs one episode at a time and owns everything the episode touches: its backend
instances (the model's and a second set replaying the ground truth), the executed calls and
the trajectory. Subclasses only say how to build a task's backends; BFCL's adapter also plugs
in the official checks.
"""

import decimal
import importlib.metadata
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from parlmt.envs.calls import MAX_CHARS, Call, CallError, bind_call, parse_calls

TRUNCATION_MARKER = "...[truncated {} characters]"
EXECUTION_ERROR = "Error during execution: {}"  # BFCL's wording, so response checks compare alike

# Official BFCL error types, reused by every environment so reward code sees one vocabulary.
EMPTY_TURN = "multi_turn:empty_turn_model_response"
STATE_MISMATCH = "multi_turn:instance_state_mismatch"
RESPONSE_MISMATCH = "multi_turn:execution_response_mismatch"
FORCE_TERMINATED = "multi_turn:force_terminated"

# What a model that gets a turn right tells the user at its end (``ToolEnv.reference_reply``).
DONE_REPLY = "Done: every step of your request is complete."
CANNOT_REPLY = "I cannot complete this request with the available tools and information."


def cache_root() -> Path:
    """Where environments keep what they write: ``$PARLMT_CACHE`` (default ``~/.cache/parlmt``)."""
    return Path(os.environ.get("PARLMT_CACHE") or Path.home() / ".cache" / "parlmt")


def require_version(package: str, expected: str, variable: str, install: str) -> None:
    """Refuse ``package`` at another version than the pinned ``expected`` (its data, splits and scoring
    are what our figures were measured on); ``variable`` names the override, ``install`` the fix."""
    installed = importlib.metadata.version(package)
    if installed != expected:
        raise RuntimeError(f"{package} {installed} is installed but parlmt expects {expected} (data, splits and "
                           f"scoring are pinned): {install}, or set {variable} to accept another version")


@dataclass(frozen=True, eq=False)
class Task:
    """A multi-turn task: user turns, tool schemas, initial state, optional ground truth.

    ``turns[i]`` is the user message of turn i. ``tools`` are visible from the start and
    ``revealed_tools[i]`` become visible at turn i (BFCL miss_func). ``ground_truth[i]`` are the
    call texts that solve turn i; an empty turn means the request cannot be completed. A program
    plays from turn ``start`` on; the turns before it are replayed from the ground truth
    (``from_turn`` makes such a task).
    """

    id: str
    turns: tuple[str, ...]
    tools: tuple[dict, ...]
    initial_state: dict = field(default_factory=dict)
    ground_truth: tuple[tuple[str, ...], ...] | None = None
    revealed_tools: dict[int, tuple[dict, ...]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    start: int = 0

    def __post_init__(self):
        if not 0 <= self.start < max(1, len(self.turns)):
            raise ValueError(f"task {self.id} has {len(self.turns)} turns, no turn {self.start} to start from")
        if self.start and self.ground_truth is None:
            raise ValueError(f"task {self.id} has no ground truth to replay the turns before turn {self.start}")

    def from_turn(self, turn: int, turns: int | None = None) -> "Task":
        """The state before ``turn``: a task whose program plays ``turns`` turns (None: to the end)
        from ``turn`` on, the earlier turns replayed from the ground truth. Its id is ``<id>@<turn>``;
        ``meta['state_of']`` names this task (BFCL result files leave such partial episodes out)."""
        if self.start:
            raise ValueError(f"task {self.id} already starts at turn {self.start}")
        if not 0 <= turn < len(self.turns):
            raise ValueError(f"task {self.id} has {len(self.turns)} turns, no turn {turn}")
        end = len(self.turns) if turns is None else turn + turns
        if turns is not None and turns < 1:
            raise ValueError(f"a state plays at least one turn, got turns={turns}")
        truth = None if self.ground_truth is None else self.ground_truth[:end]
        return replace(self, id=f"{self.id}@{turn}", turns=self.turns[:end], ground_truth=truth,
                                   meta={**self.meta, "state_of": self.id, "start": turn}, start=turn)

    def tools_at(self, turn: int) -> list[dict]:
        """Schemas visible at ``turn``."""
        tools = list(self.tools)
        for reveal_turn in sorted(self.revealed_tools):
            if reveal_turn <= turn:
                tools += self.revealed_tools[reveal_turn]
        return tools

    def all_tools(self) -> list[dict]:
        """Every schema of the task, hidden ones included."""
        return self.tools_at(len(self.turns))


@dataclass(frozen=True)
class CallResult:
    """What became of one call: ``error`` is None, "parse", "unknown_function",
    "hidden_function", "bad_arguments" or "execution"; ``executed`` calls reached the backend (an
    "execution" error did too) and are what the checker replays."""

    call: str
    observation: str
    error: str | None = None
    executed: bool = False


@dataclass(frozen=True)
class Step:
    """One ``step()``: the turn it belongs to and one result per call."""

    turn: int
    results: tuple[CallResult, ...]


@dataclass(frozen=True)
class TurnScore:
    """The state and response checks of one turn. ``checked`` is False for turns whose ground
    truth is empty (nothing to compare, as in BFCL); such turns count as passed."""

    turn: int
    passed: bool
    reason: str = ""
    error_type: str | None = None
    checked: bool = True


@dataclass(frozen=True)
class EpisodeScore:
    """The whole episode: passed when every turn passes (for BFCL: the official checker's verdict)."""

    passed: bool
    reason: str
    error_type: str | None
    turns: tuple[TurnScore, ...]


def serialise(result: Any) -> str:
    """An execution result as text, exactly as BFCL's executor writes it: strings unchanged,
    dicts as JSON, anything else through ``str``."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


def truncate(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters with a visible marker saying how much was cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(len(text) - limit)


class ToolEnv:
    """One episode at a time over a ``Task``.

    ``reset(task)`` returns the first user message; ``step(calls)`` executes calls (a list of
    ``Call`` or raw model text) and returns one observation per call; ``next_turn()`` closes the
    turn (scoring it when there is ground truth) and returns the next user message, or None at
    the end. Subclasses implement ``_backends(task)``.
    """

    def __init__(
        self,
        task: Task | None = None,
        *,
        max_observation_chars: int | None = 4000,
        max_call_chars: int = MAX_CHARS,
        max_steps_per_turn: int = 20,
    ):
        self.max_observation_chars = max_observation_chars
        self.max_call_chars = max_call_chars
        # BFCL's step cap (MAXIMUM_STEP_LIMIT = 20; the multi-turn loops of bfcl_eval's
        # model_handler/base_handler.py): a step counts when it runs calls (a reply, or text that
        # does not decode, ends the turn uncounted); the step that takes the count past the cap
        # still runs, then the model is force-quit and no later turn is played. BFCL's checker fails
        # such an entry only for the turns it lacks (eval_runner's length check): a cap hit in the
        # last turn is scored like any other turn.
        self.max_steps_per_turn = max_steps_per_turn
        self.task: Task | None = None
        if task is not None:
            self.reset(task)

    # ------------------------------------------------------------------ subclass hooks

    @classmethod
    def reference(cls, task: Task, **options) -> "ToolEnv":
        """The environment the ground-truth oracle plays ``task`` in (``make_env(task, reference=True)``):
        this one; an environment with a party the oracle does not play (tau2's customer) plays it here."""
        return cls(task, **options)

    def reference_reply(self) -> str:
        """What the agent tells the user when it has played the current turn's ground truth (the oracle's
        reply, and that of turns replayed from the ground truth)."""
        return DONE_REPLY if self.ground_truth() else CANNOT_REPLY

    def _backends(self, task: Task) -> dict[str, object]:
        """Fresh backend instances for ``task`` in its initial state, keyed by class name."""
        raise NotImplementedError

    def _call_schemas(self, task: Task) -> dict[str, dict]:
        """The schemas calls are checked against, by function name (default: the task's own)."""
        return {schema["name"]: schema for schema in task.all_tools()}

    def _invoke(self, method: Callable, kwargs: dict) -> tuple[str, bool]:
        """Run one bound backend method: its full result text (errors in BFCL's wording) and
        whether it raised."""
        with decimal.localcontext():  # a backend changing decimal precision must not leak out
            try:
                return serialise(method(**kwargs)), False
            except Exception as e:  # the backend's failure is the model's observation
                return EXECUTION_ERROR.format(e), True

    def _check_state(self, model: dict[str, object], truth: dict[str, object]) -> tuple[str, str] | None:
        """``(error_type, reason)`` when the public attributes of the two backend sets differ."""
        for name, expected in truth.items():
            actual = model[name]
            differing = [
                attr
                for attr, value in vars(expected).items()
                if not attr.startswith("_") and getattr(actual, attr, _MISSING) != value
            ]
            if differing:
                first = differing[0]
                shown = f"{first}={truncate(repr(getattr(actual, first, None)), 120)}, expected "
                shown += truncate(repr(getattr(expected, first)), 120)
                return (
                    STATE_MISMATCH,
                    f"{name} state differs from the ground truth in: {', '.join(differing)} ({shown})",
                )
        return None

    def _check_responses(self, results: list[str], expected: list[str], turn: int) -> tuple[str, str] | None:
        """``(error_type, reason)`` unless every expected result is among ``results`` (any order)."""
        remaining = list(results)
        missing = []
        for item in expected:
            try:
                remaining.remove(item)
            except ValueError:
                missing.append(item)
        if missing:
            shown = "; ".join(truncate(m, 200) for m in missing)
            return RESPONSE_MISMATCH, f"turn {turn}: results so far lack the ground-truth results: {shown}"
        return None

    # ------------------------------------------------------------------ episode

    def reset(self, task: Task | None = None) -> str:
        """Start an episode on ``task`` (default: the current task again); the first user message."""
        task = task or self.task
        if task is None:
            raise ValueError("reset() needs a task")
        self.task = task
        self.trajectory: list[Step] = []
        self._turn = 0
        self._steps_in_turn = 0
        self._terminated = False
        self._schemas = self._call_schemas(task)
        self._model_backends = self._backends(task)
        self._methods = _bind_methods(self._model_backends, self._schemas)
        self._callable = self._callable_at(0)
        self._executed: list[list[list[str]]] = [[]]  # turn -> step -> canonical calls
        self._results: list[str] = []  # full results of executed calls, all turns, in order
        self._turn_scores: dict[int, TurnScore] = {}
        self._truth_backends: dict[str, object] | None = None
        self._truth_results: list[list[str]] = []  # per replayed ground-truth turn
        return self.user_message

    @property
    def turn(self) -> int:
        """Index of the current turn (== number of turns once the episode is done)."""
        return self._turn

    @property
    def done(self) -> bool:
        """True after the last turn was closed, or after the step cap force-quit the model."""
        if self.task is None:
            raise RuntimeError("no episode: call reset(task) first")
        return self._terminated or self._turn >= len(self.task.turns)

    @property
    def user_message(self) -> str | None:
        """The current turn's user message (None once the episode is done)."""
        return None if self.done else self.task.turns[self._turn]

    def visible_tools(self) -> list[dict]:
        """Schemas the model may call at the current turn."""
        return self.task.tools_at(self._turn)

    def step(self, calls: Sequence[Call] | str) -> list[str]:
        """Execute calls (``Call`` objects or raw model text) and return one observation per call.

        Nothing raises for bad input: text that does not parse gives a single error observation;
        unknown or hidden functions, bad arguments and backend exceptions give one per call. The
        step that passes ``max_steps_per_turn`` still runs, then ends the episode (BFCL's force-quit).
        """
        try:
            calls = self._calls(calls)
        except CallError as e:
            return self._record([CallResult(truncate(calls, 200), f"Error: {e}", "parse")])
        if not calls:
            return []
        self._steps_in_turn += 1
        results = [self._run(call) for call in calls]
        executed = [r.call for r in results if r.executed]
        if executed:
            self._executed[self._turn].append(executed)
        self._terminated = self._steps_in_turn > self.max_steps_per_turn  # force-quit, as BFCL (see __init__)
        return self._record(results)

    def _calls(self, calls: Sequence[Call] | str) -> Sequence[Call]:
        """The calls to execute now: raw model text is parsed (``CallError`` says why it cannot be)."""
        if self.done:
            raise RuntimeError("the episode is over; call reset()")
        return parse_calls(calls, max_chars=self.max_call_chars) if isinstance(calls, str) else calls

    def reply(self, text: str) -> None:
        """The agent's message to the user that ends this turn. Scripted turns ignore it; an environment
        whose scoring reads what the agent told the user (tau2's communication check) records it."""

    def next_turn(self) -> str | None:
        """Close the current turn (scoring it when the task has ground truth); the next user
        message, or None when the episode is over."""
        if self.done:
            return None
        if self.task.ground_truth is not None:
            self._turn_scores[self._turn] = self._score_current_turn()
        self._turn += 1
        self._steps_in_turn = 0
        if self.done:
            return None
        self._executed.append([])
        self._callable = self._callable_at(self._turn)
        return self.user_message

    def executed_calls(self) -> list[list[list[str]]]:
        """Canonical text of the executed calls per turn and step (the checker's input), with
        empty lists for turns not reached."""
        played = [[list(step) for step in turn] for turn in self._executed]
        return played + [[] for _ in range(len(self.task.turns) - len(played))]

    def ground_truth(self, turn: int | None = None) -> list[Call]:
        """The ground-truth calls of ``turn`` (default: current), bound to keyword arguments."""
        turn = self._turn if turn is None else turn
        return [self._bind_truth(text) for text in self._require_truth()[turn]]

    # ------------------------------------------------------------------ scoring

    def score_turn(self, turn: int | None = None) -> TurnScore:
        """Score of ``turn`` (default: the current one, as it stands now)."""
        turn = self._turn if turn is None else turn
        self._require_truth()
        if turn in self._turn_scores:
            return self._turn_scores[turn]
        if turn == self._turn < len(self.task.turns):
            return self._score_current_turn()
        raise ValueError(f"turn {turn} has not been played")

    def score_episode(self) -> EpisodeScore:
        """Score of the episode so far; turns not reached fail where they have ground truth, and a
        step cap hit before the last turn fails the episode (as BFCL's checker fails it)."""
        turns = self._all_turn_scores()
        if self._terminated and self._turn < len(self.task.turns) - 1:
            reason = f"turn {self._turn} passed the step cap ({self.max_steps_per_turn}): the model was force-quit"
            return EpisodeScore(False, reason, FORCE_TERMINATED, turns)
        failed = next((t for t in turns if not t.passed), None)
        if failed is None:
            return EpisodeScore(True, "", None, turns)
        return EpisodeScore(False, failed.reason, failed.error_type, turns)

    def _all_turn_scores(self) -> tuple[TurnScore, ...]:
        truth = self._require_truth()
        scores = []
        for turn, expected in enumerate(truth):
            if turn < self._turn or turn in self._turn_scores:
                scores.append(self._turn_scores[turn])
            elif turn == self._turn:
                scores.append(self._score_current_turn())
            elif expected:
                scores.append(TurnScore(turn, False, f"turn {turn} was not played", EMPTY_TURN))
            else:
                scores.append(TurnScore(turn, True, "no ground truth to check", checked=False))
        return tuple(scores)

    def _score_current_turn(self) -> TurnScore:
        turn = self._turn
        expected = self._replay_truth(turn)
        if not self.task.ground_truth[turn]:
            return TurnScore(turn, True, "no ground truth to check", checked=False)
        if not self._executed[turn]:
            return TurnScore(turn, False, f"no tool call was executed in turn {turn}", EMPTY_TURN)
        problem = self._check_state(self._model_backends, self._truth_backends) or self._check_responses(
            self._results, expected, turn
        )
        if problem:
            return TurnScore(turn, False, problem[1], problem[0])
        return TurnScore(turn, True)

    def _replay_truth(self, turn: int) -> list[str]:
        """Run the ground truth up to ``turn`` on the episode's second backend set; its results."""
        if self._truth_backends is None:
            self._truth_backends = self._backends(self.task)
            self._truth_methods = _bind_methods(self._truth_backends, self._schemas)
        truth = self._require_truth()
        while len(self._truth_results) <= turn:
            calls = [self._bind_truth(text) for text in truth[len(self._truth_results)]]
            self._truth_results.append([self._invoke(self._truth_methods[c.name], c.kwargs)[0] for c in calls])
        return self._truth_results[turn]

    def _bind_truth(self, text: str) -> Call:
        try:
            (call,) = parse_calls(text, max_chars=len(text))
            return bind_call(call, self._schemas[call.name])
        except (CallError, KeyError, ValueError) as e:
            raise ValueError(f"{self.task.id}: ground-truth call {text!r} is invalid: {e}") from None

    def _require_truth(self) -> tuple[tuple[str, ...], ...]:
        if self.task is None:
            raise RuntimeError("no episode: call reset(task) first")
        if self.task.ground_truth is None:
            raise ValueError(f"task {self.task.id} has no ground truth to score against")
        return self.task.ground_truth

    # ------------------------------------------------------------------ dispatch

    def _callable_at(self, turn: int) -> set[str]:
        """Functions a call may reach at ``turn``: the visible ones, plus any the turn's ground
        truth calls (BFCL miss_func 49 calls ``tail`` two turns before revealing it; it stays
        out of ``visible_tools()``, but a model that guesses it is not refused)."""
        names = {schema["name"] for schema in self.task.tools_at(turn)}
        if self.task.ground_truth is not None:
            names |= {text.partition("(")[0].strip() for text in self.task.ground_truth[turn]}
        return names

    def _run(self, call: Call) -> CallResult:
        name = call.name if isinstance(call, Call) else None
        if not isinstance(name, str) or name not in self._schemas:
            return self._refuse(call, "unknown_function", f"Error: there is no function named {name!r}.")
        if name not in self._callable:  # the model must not learn that it exists
            return self._refuse(call, "hidden_function", f"Error: there is no function named {name!r}.")
        try:
            bound = bind_call(call, self._schemas[name])
        except CallError as e:
            return self._refuse(call, "bad_arguments", f"Error: {e}")
        result, raised = self._invoke(self._methods[name], bound.kwargs)
        self._results.append(result)
        observation = truncate(result, self.max_observation_chars)
        return CallResult(bound.canonical(), observation, "execution" if raised else None, True)

    def _refuse(self, call: Any, error: str, observation: str) -> CallResult:
        text = call.canonical() if isinstance(call, Call) else repr(call)
        return CallResult(truncate(text, 200), observation, error)

    def _record(self, results: list[CallResult]) -> list[str]:
        self.trajectory.append(Step(self._turn, tuple(results)))
        return [r.observation for r in results]


_MISSING = object()


def _bind_methods(backends: dict[str, object], schemas: dict[str, dict]) -> dict[str, Callable]:
    """Each schema's function bound to the backend instance that defines it (attribute lookup of
    public names only: this map is the whole surface a model can reach)."""
    methods = {}
    for name in schemas:
        owner = next(
            (b for b in backends.values() if not name.startswith("_") and callable(getattr(type(b), name, None))),
            None,
        )
        if owner is None:
            raise ValueError(f"no backend defines the tool {name!r}")
        methods[name] = getattr(owner, name)
    return methods
