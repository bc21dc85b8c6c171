"""The progress-aware agent and its full-history baseline, as DSPy modules over a tool environment.

``ProgressAwareAgent`` composes ``Summarize``, ``Plan`` and ``Act``: at the start of each user
turn it summarizes the conversation so far and plans the remaining steps, then acts step by step
from the summary and plan (not the raw history) until Act replies or the step cap is reached,
re-planning after a step that went wrong. ``FullHistoryAgent`` runs the same ``Act`` on the raw
transcript with no summary and no plan: the baseline every figure is compared with.

Both take a task (``Task``, id such as ``bfcl:base:0``, or an environment reset on a task) and
return ``dspy.Prediction(trajectory=..., passed=...)``. Any predictor can be swapped for another
module with the same signature (``dspy.ChainOfThought(Act)``, an optimized copy, ...).

Each agent declares its modules once, in ``MODULES`` (name, signature, in the order they run within a
step); the oracle, PAG records, SFT rows, RL and the CLI read that declaration (``signature_of``,
``program_class``), so a new module is a signature, an entry in ``MODULES`` and the code that calls it.
A new program is registered in ``PROGRAMS``.
"""

import json
from pathlib import Path

import dspy

from parlmt.envs import TOOL_DOCS, Task, ToolEnv
from parlmt.programs.episode import NOTHING_YET, Episode
from parlmt.programs.trajectory import ACT
from parlmt.signatures import Act, Plan, Summarize

# The step cap, as BFCL counts it (its MAXIMUM_STEP_LIMIT; see ToolEnv.__init__ in envs/base.py): a turn may
# take this many Act steps that are not a reply, then one more Act step; if that one is a reply the turn
# ends as usual, otherwise its calls run and the model is force-quit (no later turn is played).
# Unreadable output counts as a step here (BFCL ends the turn on it; we let the model correct itself).
BFCL_MAX_STEPS = 20
NO_PLAN = "(no plan: decide from the conversation)"
NOTHING_DONE = "Nothing has been done yet."
CONFIG_KEY = "parlmt_program"  # where a saved state file says which program (and settings) it belongs to
PREDICTOR_KINDS = {"Predict": dspy.Predict, "ChainOfThought": dspy.ChainOfThought}


class _Agent(dspy.Module):
    """What both agents share: the step cap, their declared modules, and saved state that says how to
    rebuild the agent."""

    program_name = ""
    # (attribute name, signature) of every module, in the order they run within a step. The one place
    # module names are listed: everything outside the program reads them from here.
    MODULES: tuple[tuple[str, type[dspy.Signature]], ...] = ()

    def __init__(self, max_steps_per_turn: int, tool_docs: str, modules: dict[str, dspy.Module | None]):
        super().__init__()
        if max_steps_per_turn < 1:
            raise ValueError(f"max_steps_per_turn must be at least 1, got {max_steps_per_turn}")
        if tool_docs not in TOOL_DOCS:
            raise ValueError(f"tool_docs must be one of {', '.join(TOOL_DOCS)}, got {tool_docs!r}")
        unknown = sorted(set(modules) - set(self.module_names()))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no module {', '.join(unknown)}; its modules are "
                            f"{', '.join(self.module_names())}")
        self.max_steps_per_turn = max_steps_per_turn
        self.tool_docs = tool_docs
        for name, signature in self.MODULES:  # as attributes, so named_predictors(), save() and load() see them
            module = modules.get(name)
            setattr(self, name, dspy.Predict(signature) if module is None else module)

    @classmethod
    def module_names(cls) -> tuple[str, ...]:
        return tuple(name for name, _ in cls.MODULES)

    def config(self) -> dict:
        """Constructor settings, and the kind of each predictor, as saved with the state."""
        kinds = {name: type(getattr(self, name)).__name__ for name in self.module_names()}
        return {"program": self.program_name, "max_steps_per_turn": self.max_steps_per_turn,
                "tool_docs": self.tool_docs, "modules": kinds}

    def episode(self, task: Task | str | ToolEnv) -> Episode:
        return Episode(task, self.program_name, self.max_steps_per_turn, self.tool_docs)

    def dump_state(self, json_mode: bool = True) -> dict:
        return {**super().dump_state(json_mode=json_mode), CONFIG_KEY: self.config()}


class ProgressAwareAgent(_Agent):
    """Summarize -> Plan -> Act per user turn, acting from progress awareness instead of raw history.

    Args:
        max_steps_per_turn: Act steps a turn may take before the agent must reply (BFCL: 20); the step after
            them ends the episode unless it is the reply.
        refresh: ``"turn"`` summarizes and plans once per turn (and re-plans after a failed step);
            ``"step"`` refreshes both before every step.
        tool_docs: ``"full"`` tool docs (every parameter described) or ``"brief"`` (signatures and one
            line each; about half the prompt tokens).
        **modules: by name (``summarize``, ``plan``, ``act``), modules to use instead of ``dspy.Predict`` of
            each signature.
    """

    program_name = "progress"
    MODULES = (("summarize", Summarize), ("plan", Plan), (ACT, Act))

    def __init__(self, max_steps_per_turn: int = BFCL_MAX_STEPS, refresh: str = "turn", tool_docs: str = "full",
                 **modules: dspy.Module | None):
        super().__init__(max_steps_per_turn, tool_docs, modules)
        if refresh not in ("turn", "step"):
            raise ValueError(f"refresh must be 'turn' or 'step', got {refresh!r}")
        self.refresh = refresh

    def config(self) -> dict:
        return {**super().config(), "refresh": self.refresh}

    def forward(self, task: Task | str | ToolEnv) -> dspy.Prediction:
        episode = self.episode(task)
        while episode.request is not None:
            summary = self.summarize_progress(episode)
            plan = self.plan_steps(episode, summary)
            step = episode.act(self.act, summary=summary, plan=plan)
            while step.reply is None and episode.step <= self.max_steps_per_turn:  # see BFCL_MAX_STEPS
                if self.refresh == "step":
                    summary = self.summarize_progress(episode, current_turn=True)
                if self.refresh == "step" or step.failed:
                    plan = self.plan_steps(episode, summary)
                step = episode.act(self.act, summary=summary, plan=plan)
            episode.next_turn(capped=step.reply is None)
        return episode.result()

    def summarize_progress(self, episode: Episode, current_turn: bool = False) -> str:
        conversation = episode.transcript(current_turn)
        if conversation == NOTHING_YET:  # the first turn: nothing to summarize, so no LM call
            return NOTHING_DONE
        return episode.text("summarize", self.summarize, "summary", conversation=conversation)

    def plan_steps(self, episode: Episode, summary: str) -> str:
        return episode.text("plan", self.plan, "plan", tools=episode.tools(), summary=summary,
                            request=episode.request, observations=episode.observations())


class FullHistoryAgent(_Agent):
    """The baseline: the same ``Act`` on the raw transcript of earlier turns, with no summary or plan.

    Args:
        max_steps_per_turn: Act steps a turn may take before the agent must reply (BFCL: 20); the step after
            them ends the episode unless it is the reply.
        tool_docs: ``"full"`` or ``"brief"`` tool docs (see ``ProgressAwareAgent``).
        act: a module to use instead of ``dspy.Predict(Act)``.
    """

    program_name = "fullhistory"
    MODULES = ((ACT, Act),)

    def __init__(self, max_steps_per_turn: int = BFCL_MAX_STEPS, tool_docs: str = "full",
                 **modules: dspy.Module | None):
        super().__init__(max_steps_per_turn, tool_docs, modules)

    def forward(self, task: Task | str | ToolEnv) -> dspy.Prediction:
        episode = self.episode(task)
        while episode.request is not None:
            step = episode.act(self.act, summary=episode.transcript(), plan=NO_PLAN)
            while step.reply is None and episode.step <= self.max_steps_per_turn:  # see BFCL_MAX_STEPS
                step = episode.act(self.act, summary=episode.transcript(), plan=NO_PLAN)
            episode.next_turn(capped=step.reply is None)
        return episode.result()


PROGRAMS: dict[str, type[_Agent]] = {"progress": ProgressAwareAgent, "fullhistory": FullHistoryAgent}


def program_class(name: str) -> type[_Agent]:
    """The registered program called ``name`` (``ValueError`` listing the others when there is none)."""
    if name not in PROGRAMS:
        raise ValueError(f"unknown program {name!r}; the programs are {', '.join(PROGRAMS)}")
    return PROGRAMS[name]


def signature_of(module: str) -> type[dspy.Signature]:
    """The signature of the module called ``module`` in the registered programs: a name means one signature,
    so a module call recorded in a trajectory renders the same prompt whichever program made it."""
    found = {signature for program in PROGRAMS.values() for name, signature in program.MODULES if name == module}
    if len(found) != 1:
        raise ValueError(f"module {module!r} is declared with {len(found)} signatures across the programs "
                         f"{', '.join(PROGRAMS)}: it needs exactly one")
    return found.pop()


def build_program(name: str, max_steps_per_turn: int = BFCL_MAX_STEPS, refresh: str = "turn", tool_docs: str = "full",
                  **modules: dspy.Module) -> _Agent:
    """A fresh agent by name (``progress``, ``fullhistory``, or another registered in ``PROGRAMS``); ``refresh``
    applies to the progress program and its subclasses only."""
    if name not in PROGRAMS:  # eval and optimize also take a saved program's file
        raise ValueError(f"unknown program {name!r}; choose from {', '.join(PROGRAMS)} or a saved .json")
    program = PROGRAMS[name]
    if issubclass(program, ProgressAwareAgent):
        return program(max_steps_per_turn=max_steps_per_turn, refresh=refresh, tool_docs=tool_docs, **modules)
    if refresh != "turn":
        raise ValueError(f"refresh={refresh!r} is an option of the progress program; {name} has no summary or plan")
    return program(max_steps_per_turn=max_steps_per_turn, tool_docs=tool_docs, **modules)


def load_program(path: str | Path) -> _Agent:
    """An agent saved with ``program.save("file.json")``, rebuilt with its settings and predictor kinds."""
    state = json.loads(Path(path).read_text())
    if CONFIG_KEY not in state:
        raise ValueError(f"{path} is not a saved parlmt program (no {CONFIG_KEY!r} entry)")
    config = dict(state[CONFIG_KEY])
    if "max_steps" in config:  # saved before the per-turn cap had one name everywhere
        config["max_steps_per_turn"] = config.pop("max_steps")
    name = config.pop("program")
    signatures = dict(program_class(name).MODULES)
    modules = {child: PREDICTOR_KINDS[kind](signatures[child]) for child, kind in config.pop("modules").items()}
    program = build_program(name, **config, **modules)
    program.load(path)
    return program
