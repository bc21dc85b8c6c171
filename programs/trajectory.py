"""The trajectory record: everything one episode of a program did, as JSON lines.

One ``Trajectory`` per episode holds every module call (module, turn, step, inputs, outputs, the
rendered messages, token counts, latency), every Act step (the parsed calls, the observations,
format errors, the reply) and the per-turn and episode scores. It is the unit optimize/ and rl/
consume, and what ``parlmt eval`` writes and resumes from.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The module every program acts with: its calls become the episode's ``ActStep``s and its reply ends a turn.
# The one module name code outside the programs may rely on (the others come from ``_Agent.MODULES``).
ACT = "act"


@dataclass
class ModuleCall:
    """One call of a module (a name its program declares in ``MODULES``) and the LM call(s) behind it.

    ``messages`` and ``completion`` are the last LM call's rendered chat and raw text; token counts
    add up every LM call (an adapter may retry); ``error`` says why the output could not be read.
    """

    module: str
    turn: int
    step: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    messages: list[dict] = field(default_factory=list)
    completion: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    lm_calls: int = 0
    error: str | None = None


@dataclass
class ActStep:
    """What one Act call did: ``output`` is the calls text as written, ``calls`` the parsed calls
    (canonical text) and ``results`` the environment's verdict on each; a ``format_error`` means
    nothing could be read, a ``reply`` (not None) ended the turn."""

    turn: int
    step: int
    output: str
    calls: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    format_error: str | None = None
    reply: str | None = None

    @property
    def failed(self) -> bool:
        """Whether anything went wrong: unreadable output, a refused call, or an error result (BFCL's
        backends report most failures as an ``{"error": ...}`` result rather than raising)."""
        return (
            self.format_error is not None
            or any(e is not None for e in self.errors)
            or any(o.lstrip().startswith(('{"error"', "Error")) for o in self.observations)
        )


@dataclass
class TurnRecord:
    """One user turn: its request, how many Act steps it took, how it ended and its score
    (``passed`` is None when the task has no ground truth, or when the turn was ``replayed`` from
    the ground truth before the task's start turn)."""

    turn: int
    request: str
    steps: int = 0
    reply: str | None = None
    capped: bool = False
    passed: bool | None = None
    reason: str = ""
    error_type: str | None = None
    checked: bool = False
    replayed: bool = False


@dataclass
class Trajectory:
    """One episode of a program on a task."""

    task_id: str
    program: str
    meta: dict = field(default_factory=dict)
    module_calls: list[ModuleCall] = field(default_factory=list)
    steps: list[ActStep] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    executed: list[list[list[str]]] = field(default_factory=list)  # per turn, per step: the checker's input
    passed: bool | None = None
    reason: str = ""
    error_type: str | None = None
    wall_s: float = 0.0

    def calls_of(self, module: str) -> list[ModuleCall]:
        return [c for c in self.module_calls if c.module == module]

    @property
    def format_validity(self) -> float:
        """Share of Act outputs that could be read (as calls or a reply)."""
        return sum(s.format_error is None for s in self.steps) / len(self.steps) if self.steps else 1.0

    @property
    def turn_accuracy(self) -> float:
        """Share of checked turns that passed (0 when nothing was checked): a turn a checker did not
        look at (tau2's turns before the conversation ends, BFCL turns without ground truth) counts as none."""
        scored = [t for t in self.turns if t.passed is not None and t.checked]
        return sum(t.passed for t in scored) / len(scored) if scored else 0.0

    @property
    def lm_s(self) -> float:
        return sum(c.latency_s for c in self.module_calls)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Trajectory":
        data = dict(data)
        data["module_calls"] = [ModuleCall(**c) for c in data.get("module_calls", [])]
        data["steps"] = [ActStep(**s) for s in data.get("steps", [])]
        data["turns"] = [TurnRecord(**t) for t in data.get("turns", [])]
        return cls(**data)


SFT_COLUMNS = ("prompt", "completion", "module", "task_id", "turn", "step")  # the PAG SFT dataset's columns


def scalar_meta(meta: dict) -> dict:
    """The JSON-safe part of a task's metadata that a trajectory keeps (a tool class, say, is left out)."""
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}


def sft_row(module: str, inputs: dict, outputs: dict, task_id: str, turn: int, step: int) -> dict:
    """A module call as a training row in TRL's conversational prompt-completion format: the prompt
    exactly as ``dspy.ChatAdapter`` renders it for the student, the outputs as the assistant turn."""
    import dspy

    from parlmt.programs.agents import signature_of

    adapter, signature = dspy.ChatAdapter(), signature_of(module)
    prompt = adapter.format(signature, demos=[], inputs=inputs)
    completion = adapter.format_assistant_message_content(signature, outputs)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}], "module": module,
            "task_id": task_id, "turn": turn, "step": step}


def append_jsonl(path: str | Path, trajectory: Trajectory) -> None:
    """Append one trajectory as a JSON line (the file is created, with its folder, on first use)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Trajectory]:
    """The trajectories in a JSON-lines file; a last line cut short by an interrupted run is skipped."""
    trajectories = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                trajectories.append(Trajectory.from_dict(json.loads(line)))
            except json.JSONDecodeError:
                continue
    return trajectories
