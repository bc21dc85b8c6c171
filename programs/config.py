"""``EvalConfig``: the options of ``parlmt eval``, TRL style: each field's ``help`` is its documentation
and its ``--option`` help (``options.add_options``)."""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from parlmt.envs.tau2 import MAX_USER_TURNS
from parlmt.options import option

# Options that change an episode's result besides the program, LM, adapter and tasks: those given another
# value than their default name the run (so its own file), and all are recorded beside the file.
RESULT_OPTIONS = ("max_steps_per_turn", "refresh", "tool_docs", "max_tokens", "temperature", "api_base",
                  "replayed_turns", "states_per_entry", "user_lm", "user_api_base", "max_user_turns")


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
        LM, tasks, trials and adapter, and each of ``RESULT_OPTIONS`` given another value than its default."""
        program = Path(self.program).stem if self.program.endswith(".json") else self.program
        defaults = {item.name: item.default for item in dataclasses.fields(self)}
        changed = [f"{key}={getattr(self, key)}" for key in RESULT_OPTIONS if getattr(self, key) != defaults[key]]
        parts = [program, self.lm, self.tasks or self.categories, self.split or "all",
                 f"n{self.limit}" if self.limit else "", f"trials{self.trials}" if self.trials > 1 else "",
                 Path(self.adapter).name if self.adapter else "", *changed]
        return re.sub(r"[^\w.-]+", "_", "-".join(p for p in parts if p))
