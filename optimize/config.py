"""``PAGConfig``: everything one PAG bootstrapping run needs; each field's doc is its documentation."""

from dataclasses import asdict, dataclass, field

from parlmt.envs.tooldocs import TOOL_DOCS

OPTIMIZERS = ("none", "bootstrap", "mipro", "gepa")


@dataclass
class PAGConfig:
    """Configuration of ``python optimize.py`` / ``parlmt optimize`` (CLI flags have the same names)."""

    teacher: str = "reference"
    """``reference`` (ground-truth oracle, no LM), ``embedded:teacher``/``embedded:student`` (in-process
    models), or any litellm model string: ``openai/gpt-4o-mini``, ``anthropic/...``, ``openai/<name>``
    with ``api_base`` for a vLLM or llama.cpp server."""
    api_base: str | None = None
    """Base URL of an OpenAI-compatible server for the teacher (e.g. ``http://127.0.0.1:8080/v1``)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the teacher's API key (keys never go on the command line)."""
    teacher_temperature: float = 0.0
    """Teacher sampling temperature; 0 makes runs reproducible (and resumes identical)."""
    teacher_max_tokens: int = 512
    """Cap on tokens per teacher module call."""
    timeout_s: float = 120.0
    """Seconds before a teacher request counts as failed (litellm teachers)."""
    retries: int = 3
    """Attempts per task when the teacher raises (LM errors, timeouts); then the task is recorded as failed."""
    backoff_s: float = 2.0
    """First wait between attempts; doubled after each failure."""
    guidance: bool = True
    """LM teachers see the current turn's ground-truth calls when writing the plan."""
    optimizer: str = "none"
    """Prompt optimizer run on the train split before bootstrapping: none, bootstrap (BootstrapFewShot),
    mipro (MIPROv2, light), gepa (GEPA, light)."""
    program: str = "progress"
    """The teacher program: ``progress`` or a saved program (.json) to start from."""
    refresh: str = "turn"
    """Awareness refresh of the ProgressAwareAgent: once per ``turn`` (and after errors) or every ``step``."""
    tool_docs: str = "full"
    """Tool docs in the prompts: ``full`` (every parameter described) or ``brief`` (signatures, one line each)."""
    categories: list[str] = field(default_factory=lambda: ["base"])
    """BFCL categories to bootstrap from: base, miss_func, miss_param, long_context."""
    split: str = "train"
    """Task split to bootstrap from (dev is used for optimizer scores; test is never touched)."""
    limit: int | None = None
    """Tasks per category (None: the whole split)."""
    dev_limit: int = 5
    """Dev tasks per category for optimizer before/after scores."""
    verify_student: bool = True
    """Model-aware verification: keep an Act step only if the student reproduces its calls from the
    teacher's summary and plan."""
    student: str = "embedded:student"
    """The target model for model-aware verification (any model spec ``ModelConfig`` accepts)."""
    student_max_tokens: int = 64
    """Cap on tokens of the student's verification answer."""
    max_steps_per_turn: int = 20
    """Act steps per turn (BFCL's cap)."""
    threads: int = 1
    """Tasks run in parallel."""
    out: str = "data/pag"
    """Output folder: shards (resumable), the HF dataset, parquet files, the dataset card, the program."""
    mlflow_root: str | None = None
    """MLflow store folder (default: the repository's mlruns/)."""
    experiment: str = "parlmt-optimize"
    """MLflow experiment of the run (nested under the active run, if any: ``parlmt demo``'s parent)."""
    run_name: str | None = None
    """MLflow run name (default: ``pag-<teacher>-<optimizer>-<categories>``)."""

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
        if self.refresh not in ("turn", "step"):
            raise ValueError(f"refresh must be 'turn' or 'step', got {self.refresh!r}")
        if self.tool_docs not in TOOL_DOCS:
            raise ValueError(f"tool_docs must be one of {', '.join(TOOL_DOCS)}, got {self.tool_docs!r}")

    def to_dict(self) -> dict:
        return asdict(self)
