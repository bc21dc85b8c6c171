"""``PAGConfig``: everything one PAG bootstrapping run needs, TRL style: each field's ``help`` is its
documentation and its ``parlmt optimize`` option (``options.add_options``)."""

from dataclasses import asdict, dataclass

from parlmt.envs import select_tasks
from parlmt.options import option
from parlmt.programs.config import ProgramOptions

OPTIMIZERS = ("none", "bootstrap", "mipro", "gepa")


@dataclass
class PAGConfig(ProgramOptions):
    """One PAG run: a teacher (its prompts optionally optimized first) plays tasks, and its verified steps
    become the PAG dataset."""

    program: str = option("The teacher program: progress, fullhistory (or another registered in PROGRAMS), or a saved "
                          "program (.json) to start from.", "progress")
    teacher: str = option("reference (ground-truth oracle, no LM), embedded:teacher / embedded:student (in-process "
                          "models), or any litellm model string: openai/gpt-4o-mini, anthropic/..., openai/<name> "
                          "with api_base for a vLLM or llama.cpp server.", "reference")
    api_base: str | None = option("Base URL of an OpenAI-compatible server for the teacher "
                                  "(e.g. http://127.0.0.1:8080/v1).")
    api_key_env: str | None = option("Name of the environment variable holding the teacher's API key (keys never go "
                                     "on the command line).")
    teacher_temperature: float = option("Teacher sampling temperature; 0 makes runs reproducible (and resumes "
                                        "identical).", 0.0)
    teacher_max_tokens: int = option("Cap on tokens per teacher module call.", 512)
    timeout_s: float = option("Seconds before a teacher request counts as failed (litellm teachers).", 120.0)
    retries: int = option("Attempts per task when the teacher raises (LM errors, timeouts); then the task is recorded "
                          "as failed.", 3)
    backoff_s: float = option("First wait between attempts; doubled after each failure.", 2.0)
    guidance: bool = option("LM teachers see the current turn's ground-truth calls when writing the plan.", True)
    optimizer: str = option("Prompt optimizer run on the train split before bootstrapping: none, bootstrap "
                            "(BootstrapFewShot), mipro (MIPROv2, light), gepa (GEPA, light).", "none")
    categories: str = option("Task sources to bootstrap from, comma-separated: base, miss_func, miss_param, "
                             "long_context, py:todo, tau2:airline, ...", "base")
    split: str = option("Task split to bootstrap from: train or dev (dev is used for optimizer scores; test is never "
                        "touched).", "train")
    limit: int | None = option("Tasks per category (unset: the whole split).")
    dev_limit: int = option("Dev tasks per category for the optimizer's before/after scores.", 5)
    verify_student: bool = option("Model-aware verification: keep an Act step only if the student reproduces its calls "
                                  "from the teacher's summary and plan (off: faster, keeps every step whose turn "
                                  "passed).", True)
    student: str = option("The target model for model-aware verification (any model spec ModelConfig accepts).",
                          "embedded:student")
    student_max_tokens: int = option("Cap on tokens of the student's verification answer.", 64)
    max_steps_per_turn: int = option("Act steps per turn (BFCL's cap).", 20)
    threads: int = option("Tasks run in parallel.", 1)
    out: str = option("Output folder: shards (re-running resumes them), the HF dataset, parquet files, the dataset "
                      "card, the program.", "data/pag")
    mlruns: str | None = option("MLflow folder (default: the repository's mlruns/).")
    experiment: str = option("MLflow experiment of the run (nested under the active run, if any: parlmt demo's "
                             "parent).", "parlmt-optimize")
    run_name: str | None = option("MLflow run name (default: pag-<teacher>-<optimizer>-<categories>).")

    def check(self) -> None:
        """Raise ``ValueError`` with what to change when the configuration cannot work."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.teacher == "reference" and self.optimizer != "none":
            raise ValueError("the reference teacher has no prompts to optimize: use an LM teacher or --optimizer none")
        if self.split == "test":
            raise ValueError("PAG data must never come from the test split: use train (or dev)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.retries < 1 or self.threads < 1:
            raise ValueError("retries and threads must be at least 1")
        self.check_program(saved=True)
        select_tasks(self.categories, self.split)  # an unknown source or split raises here, before any work

    def to_dict(self) -> dict:
        return asdict(self)
