"""The composite PAG-RL reward: small pure functions of one played turn, weighted and summed.

Each term reads a ``TurnOutcome`` (what the program did in one user turn, the turn's ground
truth and the environment's verdicts) and returns a float. A term registered for a module also
reads that module's output and scores only its samples (``plan``); the others score the turn,
and every sample of the turn gets them. ``REWARD_TERMS`` registers each term with its default
weight; ``PAGRLConfig.reward_weights`` overrides weights by name, and every term is logged on its
own. Ranges are fixed so weights mean the same thing for every task:

- ``format``: share of Act outputs that were usable: parseable, calling known and visible
  functions with schema-valid arguments (a reply counts as usable). [0, 1]
- ``calls``: F1 of the turn's calls against its ground truth, with partial credit for the
  right function with some arguments wrong. 1 when both are empty. [0, 1] (tau2: the agent's
  expected actions; in a conversation with a simulated user, all its calls against all of them.)
- ``turn``: the environment's turn check (BFCL: backend state and responses match a
  ground-truth replay; tau2: its evaluator's reward is 1, on the whole conversation). {0, 1}
- ``episode``: the episode check over every turn played so far (BFCL: the official
  ``multi_turn_checker``; tau2: its evaluator, as for ``turn``). {0, 1}
- ``efficiency``: minus the share of calls that repeat an earlier call of the turn or go
  beyond the ground-truth count (a repeated ``authenticate_travel`` fails BFCL's state check;
  extra calls cost latency even when harmless). [-1, 0]
- ``quit``: -1 when the ground truth calls functions and the turn called none (it replied at once or wrote
  nothing readable), else 0. Without it a group whose calls all go wrong ranks the rollout that gives
  up first: it keeps ``format`` and pays no ``efficiency``, and GRPO taught the student to reply at
  once (bench/README.md, Efficacy). [-1, 0]
- ``capped``: -1 when the turn reached the step cap without ending it with a reply, else 0. Its state may
  still pass the turn check, but an official BFCL run force-quits the entry there (unless it is the
  entry's last turn) and the entry fails; without this term PAG-RL taught the student never to end a
  turn (README, The demo: every turn the RL adapter passed was capped). [-1, 0]
- ``plan`` (Plan samples only): share of the functions the turn's ground truth calls that the plan
  names. [0, 1]; weight 0 by default.

A new term is a function here and one ``REWARD_TERMS`` entry; nothing else changes.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from parlmt.envs import Call, CallError, parse_calls

# CallResult errors that mean the output was malformed, as opposed to a well-formed call the backend rejected.
FORMAT_ERRORS = frozenset({"parse", "unknown_function", "hidden_function", "bad_arguments"})
_MISSING = object()


@dataclass(frozen=True)
class StepOutcome:
    """One Act step: ``calls`` as the environment recorded them (canonical text), one ``errors``
    entry per call (a ``CallResult.error``), or a ``format_error`` when nothing could be read."""

    calls: tuple[str, ...] = ()
    errors: tuple[str | None, ...] = ()
    format_error: str | None = None


@dataclass(frozen=True)
class TurnOutcome:
    """A played turn: its Act steps, its ground-truth calls (canonical text) and the verdicts."""

    steps: tuple[StepOutcome, ...]
    truth: tuple[str, ...]
    passed: bool
    episode_passed: bool
    meta: dict = field(default_factory=dict, compare=False)
    capped: bool = False  # the turn reached the step cap without ending (no reply)

    @property
    def calls(self) -> list[str]:
        """Every call the turn attempted, in order (refused ones included)."""
        return [call for step in self.steps for call in step.calls]


def format_validity(outcome: TurnOutcome) -> float:
    """Mean over Act steps of the share of usable calls (1 for a reply, 0 for unreadable output)."""
    if not outcome.steps:
        return 0.0
    scores = []
    for step in outcome.steps:
        if step.format_error is not None:
            scores.append(0.0)
        elif not step.errors:
            scores.append(1.0)
        else:
            scores.append(sum(error not in FORMAT_ERRORS for error in step.errors) / len(step.errors))
    return sum(scores) / len(scores)


def call_correctness(outcome: TurnOutcome) -> float:
    """F1 of the attempted calls against the ground truth; a pair scores 1 when identical and the
    share of agreeing arguments when only the function matches (matched greedily, best first)."""
    predicted, truth = [_parse(text) for text in outcome.calls], [_parse(text) for text in outcome.truth]
    if not predicted and not truth:
        return 1.0
    unmatched = list(range(len(predicted)))
    total = 0.0
    for expected in truth:
        scores = [(call_similarity(predicted[i], expected), i) for i in unmatched]
        if scores:
            best, index = max(scores)
            if best > 0:
                total += best
                unmatched.remove(index)
    return 2 * total / (len(predicted) + len(truth))


def call_similarity(call: Call | None, expected: Call | None) -> float:
    """1 for the same call, the share of agreeing keyword arguments for the same function, else 0."""
    if call is None or expected is None or call.name != expected.name or call.args:
        return 0.0
    names = call.kwargs.keys() | expected.kwargs.keys()
    if not names:
        return 1.0
    return sum(call.kwargs.get(n, _MISSING) == expected.kwargs.get(n, _MISSING) for n in names) / len(names)


def turn_success(outcome: TurnOutcome) -> float:
    """1 when the environment's turn check passed."""
    return float(outcome.passed)


def episode_success(outcome: TurnOutcome) -> float:
    """1 when the episode check passed over every turn played so far."""
    return float(outcome.episode_passed)


def efficiency(outcome: TurnOutcome) -> float:
    """Minus the share (of the ground-truth count, at least 1) of repeated or surplus calls, down to -1."""
    calls = outcome.calls
    repeated = len(calls) - len(set(calls))
    surplus = max(0, len(calls) - len(outcome.truth))
    return 0.0 - min(1.0, max(repeated, surplus) / max(1, len(outcome.truth)))


def quit_early(outcome: TurnOutcome) -> float:
    """-1 when the ground truth calls functions and the turn attempted no call, else 0."""
    return -1.0 if outcome.truth and not outcome.calls else 0.0


def capped_turn(outcome: TurnOutcome) -> float:
    """-1 when the turn reached the step cap without ending, else 0."""
    return -1.0 if outcome.capped else 0.0


def plan_coverage(outcome: TurnOutcome, plan: str) -> float:
    """Share of the distinct functions of the turn's ground truth that ``plan`` names (1 when there are none)."""
    names = {call.name for call in map(_parse, outcome.truth) if call is not None}
    if not names:
        return 1.0
    return sum(re.search(rf"\b{re.escape(name)}\b", plan) is not None for name in names) / len(names)


@dataclass(frozen=True)
class RewardTerm:
    """A registered term: ``score(outcome)``, or for a ``module``'s term ``score(outcome, text)`` of one of
    its samples; ``weight`` is its default weight."""

    score: Callable[..., float]
    weight: float
    module: str | None = None


REWARD_TERMS: dict[str, RewardTerm] = {
    "format": RewardTerm(format_validity, 0.2),
    "calls": RewardTerm(call_correctness, 0.5),
    "turn": RewardTerm(turn_success, 1.0),
    "episode": RewardTerm(episode_success, 0.5),
    "efficiency": RewardTerm(efficiency, 0.2),
    "quit": RewardTerm(quit_early, 0.2),
    "capped": RewardTerm(capped_turn, 1.0),
    "plan": RewardTerm(plan_coverage, 0.0, module="plan"),
}


def reward_terms(outcome: TurnOutcome, module: str | None = None, text: str = "") -> dict[str, float | None]:
    """Every term by name for a sample of ``module`` with output ``text`` in the turn ``outcome``: the turn's
    terms, the terms of ``module``, and None for other modules' terms (module None: the turn's terms only)."""
    turn = {name: term.score(outcome) if term.module is None else None for name, term in REWARD_TERMS.items()}
    return with_module_terms(turn, outcome, module, text)


def with_module_terms(turn_terms: dict[str, float | None], outcome: TurnOutcome, module: str,
                      text: str) -> dict[str, float | None]:
    """``turn_terms`` (``reward_terms(outcome)``) with ``module``'s own terms scored on ``text``."""
    return {**turn_terms, **{name: term.score(outcome, text) for name, term in REWARD_TERMS.items()
                             if term.module is not None and term.module == module}}


def composite(terms: dict[str, float | None], weights: dict[str, float]) -> float:
    """The weighted sum of the terms that apply (None: another module's term)."""
    if terms.keys() != weights.keys():
        raise ValueError(f"the terms {sorted(terms)} and the weights {sorted(weights)} differ")
    return sum(weights[name] * value for name, value in terms.items() if value is not None)


def reward_weights(overrides: str | None = None) -> dict[str, float]:
    """Every registered term's weight: its default, or the value ``overrides`` gives it
    (``"turn=2,plan=0.3"``). An unknown term or a malformed pair is an error."""
    weights = {name: term.weight for name, term in REWARD_TERMS.items()}
    for pair in filter(None, (p.strip() for p in (overrides or "").split(","))):
        name, _, value = pair.partition("=")
        name = name.strip()
        if name not in weights:
            raise ValueError(f"unknown reward term {name!r}; the terms are {', '.join(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"reward weight {pair!r} is not name=number") from None
    return weights


def _parse(text: str) -> Call | None:
    try:
        calls = parse_calls(text)
    except CallError:
        return None
    return calls[0] if len(calls) == 1 else None
