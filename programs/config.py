"""``EvalConfig``: the options of ``parlmt eval``, and ``ProgramOptions``: the program options that
``parlmt optimize`` and ``parlmt train data`` / ``train rl`` share; TRL style: each field's ``help`` is its
documentation and its ``--option`` help (``options.add_options``)."""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from parlmt.envs.tau2 import MAX_USER_TURNS
from parlmt.envs.tooldocs import TOOL_DOCS
from parlmt.options import option

# Options that change an episode's result besides the program, LM, adapter and tasks: those given another
# value than their default name the run (so its own file), and all are recorded beside the file.
RESULT_OPTIONS = ("max_steps_per_turn", "refresh", "tool_docs", "max_tokens", "temperature", "api_base",
                  "replayed_turns", "states_per_entry", "user_lm", "user_api_base", "user_temperature",
                  "max_user_turns")


def check_user_options(user_lm: str | None, user_temperature: float | None, max_user_turns: int) -> None:
    """Raise ``ValueError`` for simulated-user options that cannot take effect (``parlmt eval`` and ``train rl``
    alike), before any model loads."""
    if user_temperature is not None and not user_lm:
        raise ValueError("--user-temperature (user_temperature) sets the simulated user's sampling: add --user-lm "
                         "(user_lm) too")
    if user_temperature is not None and user_temperature < 0:
        raise ValueError(f"--user-temperature must be 0 or more, got {user_temperature}")
    if max_user_turns < 1:
        raise ValueError(f"--max-user-turns must be at least 1, got {max_user_turns}")


@dataclass
class ProgramOptions:
    """The program a command plays and how it prompts: the first options of ``parlmt optimize``, ``parlmt
    train data`` and ``parlmt train rl`` (their configs inherit them)."""

    program: str = option("The program: progress (Summarize -> Plan -> Act, the PAG agent) or fullhistory (Act on "
                          "the raw transcript: the MT-GRPO baseline); a program registered in programs.agents.PROGRAMS "
                          "is one more choice.", "progress")
    refresh: str = option("Awareness refresh of the progress program: turn (summarize and plan once a turn, re-plan "
                          "after a failed step) or step (before every Act step).", "turn")
    tool_docs: str = option("Tool docs in the prompts: full (every parameter described) or brief (signatures, one line "
                            "each); use the same in the data, the training and the evaluation.", "full")

    def check_program(self, saved: bool = False) -> None:
        """Raise ``ValueError`` for an unknown program (with ``saved``, a saved program's .json counts as
        known), refresh or tool docs: before any model loads or task is played."""
        from parlmt.programs.agents import PROGRAMS, build_program  # here: `parlmt --help` does not load DSPy

        if self.program not in PROGRAMS and not (saved and self.program.endswith(".json")):
            known = ", ".join(PROGRAMS) + (" or a saved program (.json)" if saved else "")
            raise ValueError(f"program must be one of {known}, got {self.program!r}")
        if self.refresh not in ("turn", "step"):
            raise ValueError(f"refresh must be 'turn' or 'step', got {self.refresh!r}")
        if self.tool_docs not in TOOL_DOCS:
            raise ValueError(f"tool_docs must be one of {', '.join(TOOL_DOCS)}, got {self.tool_docs!r}")
        if self.program in PROGRAMS:  # it refuses an option it has no use for (fullhistory: no plan to refresh)
            build_program(self.program, refresh=self.refresh, tool_docs=self.tool_docs)


@dataclass
class EvalConfig:
    """Evaluate a program on tasks with an LM (official checker), logged to MLflow."""

    program: str = option("progress, fullhistory, or a saved program .json.", "progress")
    lm: str = option("embedded:student, embedded:teacher, a model folder/.gguf, or a litellm model string "
                     "(openai/gpt-4o-mini, anthropic/..., ollama_chat/..., hosted_vllm/...).", "embedded:student")
    api_base: str | None = option("Endpoint of an OpenAI-compatible server (vLLM, llama.cpp, Ollama).")
    adapter: str | None = option("PEFT adapter folder applied to an in-process model.")
    categories: str = option("Task sources, comma-separated: base, miss_func, miss_param, long_context, py:todo, "
                             "tau2:airline, ...", "base")
    tasks: str | None = option("Task ids, comma-separated (bfcl:base:3,py:todo:0), instead of categories.")
    split: str | None = option("Only tasks of this split: train, dev or test (unset: all).")
    limit: int | None = option("At most this many tasks per category.")
    replayed_turns: bool = option("Score every (entry, turn) state on its own, the earlier turns replayed from the "
                                  "ground truth: accuracy is then the replayed-turn accuracy, which does not compound "
                                  "errors.", False)
    states_per_entry: int | None = option("With --replayed-turns: keep this many states of each entry, the turns "
                                          "chosen by a fixed hash of (entry, turn) (unset: every turn).")
    user_lm: str | None = option("A simulated user played by this LM (any --lm value) writes every customer message of "
                                 "tau2 tasks (tau2's user-simulator prompt), with the same --max-tokens and "
                                 "--temperature; unset: one scripted turn, the customer's request.")
    user_api_base: str | None = option("Endpoint of the user LM's OpenAI-compatible server.")
    user_temperature: float | None = option("Sampling temperature of the simulated user (tau2's own runs use 0: a "
                                            "user who answers the same way every trial); unset: --temperature.")
    max_user_turns: int = option("User messages a conversation with the simulated user may have; past them the "
                                 "episode fails (tau2:max_user_turns).", MAX_USER_TURNS)
    trials: int = option("Play every task this many times (ids <task id>#<trial>) and report tau2's pass^1..pass^k; "
                         "above 1 it needs --temperature above 0.", 1)
    threads: int = option("Episodes played at once: an in-process model batches their calls into one generate, a "
                          "remote LM gets parallel requests.", 4, aliases=("--batch",))
    max_steps_per_turn: int = option("Act steps per turn (BFCL: 20).", 20)
    refresh: str = option("Progress program: summarize and plan every turn, or every step.", "turn")
    tool_docs: str = option("full (every parameter described) or brief (signatures, one line each) tool docs; use "
                            "what the model was trained on.", "full")
    max_tokens: int = option("LM completion cap per module call.", 256)
    temperature: float = option("LM sampling temperature.", 0.0)
    out: str | None = option("Trajectories JSONL (default: outputs/eval/<run name>.jsonl); an existing file is "
                             "resumed if it was run with the same settings.")
    restart: bool = option("Delete the trajectories file (and its settings and summary) first instead of resuming.",
                           False)
    mlruns: str | None = option("MLflow folder (default: the repository's mlruns/).")
    tracking_uri: str | None = option("MLflow tracking URI (default: sqlite:///<mlruns>/mlflow.db).")
    experiment: str = option("MLflow experiment name.", "parlmt-eval")
    traces: bool = option("Record DSPy traces (mlflow.dspy.autolog).", True)
    progress: bool = option("Show a progress bar.", True)

    def run_name(self) -> str:
        """A file-safe name that is the same for the same evaluation, so a rerun resumes it: the program,
        LM, tasks, trials and adapter, and each of ``RESULT_OPTIONS`` given another value than its default
        (the user's options only with a simulated user: without one they change nothing)."""
        program = Path(self.program).stem if self.program.endswith(".json") else self.program
        defaults = {item.name: item.default for item in dataclasses.fields(self)}
        options = [key for key in RESULT_OPTIONS if self.user_lm or not key.startswith(("user_", "max_user_"))]
        changed = [f"{key}={getattr(self, key)}" for key in options if getattr(self, key) != defaults[key]]
        parts = [program, self.lm, self.tasks or self.categories, self.split or "all",
                 f"n{self.limit}" if self.limit else "", f"trials{self.trials}" if self.trials > 1 else "",
                 Path(self.adapter).name if self.adapter else "", *changed]
        return re.sub(r"[^\w.-]+", "_", "-".join(p for p in parts if p))
