"""Configuration of the reference PAG data, the SFT warm-up and PAG-RL, TRL style: each field's ``help``
is its documentation (``parlmt train data|sft|rl --help`` print it).

The training stages' presets name tested starting points; fields given explicitly override them:

- ``cpu-smoke``: the embedded 0.5B student (dtype by CPU) on this kind of machine (2 cores), tiny
  batches and token caps: a few steps in minutes, to check the whole loop end to end.
- ``gpu``: Qwen2.5-7B-Instruct (or xLAM-2: pass its folder as ``model``) on GPUs, bf16,
  gradient checkpointing, real batch sizes. Several GPUs: ``accelerate launch -m parlmt.cli train
  rl --preset gpu`` (one process per GPU, each rolling out ``states_per_step`` states; the trainer pads
  every process's samples to the same count, and only the main process logs to MLflow).
  Rollouts generate with transformers on each GPU; a vLLM engine would plug in as the trainer's
  ``policy_lm`` (any ``TransformersLM``-like object recording ``Sample``s).
"""

import dataclasses
from dataclasses import dataclass

from parlmt.envs.tau2 import MAX_USER_TURNS
from parlmt.options import option
from parlmt.programs.config import ProgramOptions, check_user_options
from parlmt.rl.rewards import REWARD_TERMS, reward_weights


@dataclass
class DataConfig(ProgramOptions):
    """Reference PAG rows: each task played by the program with the ground-truth oracle answering every module
    (the turn's calls, their numbered list as the plan, earlier turns as the summary), one row per module call."""

    out: str | None = option("Where the rows go (required): a dataset folder (save_to_disk), or a .parquet / .jsonl "
                             "file.")
    categories: str = option("Task sources, comma-separated: base, miss_func, miss_param, long_context, py:todo, "
                             "tau2:airline, ...", "base")
    split: str = option("Tasks of this split: train, dev or test.", "train")
    limit: int | None = option("At most this many tasks per category (first ones of the split).")
    modules: str | None = option("Only these modules' rows, comma-separated, of the program's modules (summarize,plan,"
                                 "act for progress); unset: every module's.")
    replies: float = option("Share of the Act reply rows kept (the step that ends a turn with no call; which turns "
                            "keep theirs is fixed by a hash of task and turn); 0 keeps only the rows that make calls.",
                            1.0)
    max_steps_per_turn: int = option("Act steps allowed per turn (BFCL: 20); the oracle makes a turn's calls in one "
                                     "step, then replies.", 20)

    def module_names(self) -> list[str] | None:
        return [m.strip() for m in self.modules.split(",") if m.strip()] if self.modules else None

    def check(self) -> None:
        """Raise ``ValueError`` with what to change, before any task is played."""
        from parlmt.rl.data import check_reference_options  # here: `parlmt --help` does not load DSPy

        if not self.out:
            raise ValueError("--out is required: a dataset folder, or a .parquet / .jsonl file")
        self.check_program()
        check_reference_options(self.program, self.module_names(), self.replies)


@dataclass
class StageConfig:
    """What both training stages share: the model, LoRA, optimisation basics, output and tracking."""

    model: str = option("Base model: embedded:student, embedded:teacher, a .gguf file, a HF folder or hub id.",
                       "embedded:student")
    dtype: str = option("Weights dtype: auto (bfloat16 where the hardware computes it natively: CUDA, or a CPU with "
                       "AVX512_BF16/AMX; else float32), bfloat16, float16, float32, float64.", "auto")
    device: str = option("Torch device (cpu, cuda), or auto to spread the model over the visible GPUs.", "cpu")
    adapter: str | None = option("Start from this LoRA adapter folder (e.g. the SFT warm-up's) and keep training it; "
                                "unset: a fresh LoRA adapter.")
    lora_r: int = option("LoRA rank.", 16)
    lora_alpha: int = option("LoRA alpha (scale = alpha / r).", 32)
    lora_dropout: float = option("LoRA dropout. 0 keeps RL sampling and the loss on the same (deterministic) policy.",
                                0.0)
    lora_target_modules: str = option("Modules LoRA adapts: all-linear, or comma-separated names (q_proj,v_proj).",
                                     "all-linear")
    learning_rate: float = option("Peak learning rate (AdamW).", 1e-4)
    max_steps: int = option("Optimizer steps.", 100)
    gradient_checkpointing: bool = option("Recompute activations in the backward pass (saves memory on long "
                                         "prompts, costs ~30% time).", False)
    logging_steps: int = option("Log metrics every this many steps.", 1)
    save_steps: int = option("Save a checkpoint (adapter, optimizer, RNG states) every this many steps; 0: none.", 50)
    save_total_limit: int = option("Keep at most this many checkpoints (the oldest are deleted); 0: keep all.", 2)
    seed: int = option("Seed for data order, LoRA init and sampling: a rerun (or a resume) reproduces the run.", 0)
    output_dir: str = option("Where checkpoints and the final adapter (<output_dir>/adapter) go.", "outputs/train")
    resume: str | None = option("Resume from a checkpoint folder, or 'latest' for the newest in output_dir.")
    mlruns: str | None = option("MLflow folder (default: the repository's mlruns/, SQLite + artifacts).")
    tracking_uri: str | None = option("MLflow tracking URI (default: sqlite:///<mlruns>/mlflow.db).")
    experiment: str = option("MLflow experiment name.", "parlmt-train")
    run_name: str | None = option("MLflow run name (default: derived from the stage and model).")

    def trainer_arguments(self) -> dict:
        """The ``transformers.TrainingArguments`` both stages set the same way (TRL configs take them)."""
        from parlmt.models.loading import resolve_dtype

        return {
            "output_dir": self.output_dir, "learning_rate": self.learning_rate,
            "max_steps": self.max_steps if self.max_steps > 0 else -1, "logging_steps": self.logging_steps,
            "save_strategy": "steps" if self.save_steps else "no", "save_steps": self.save_steps or 1,
            "save_total_limit": self.save_total_limit or None,
            "seed": self.seed, "data_seed": self.seed, "bf16": resolve_dtype(self.dtype, self.device) == "bfloat16",
            "use_cpu": self.device == "cpu", "gradient_checkpointing": self.gradient_checkpointing,
            "report_to": "none",  # tracking.MlflowLogger logs to the stage's explicit MLflow run
        }

    def lora_targets(self) -> str | list[str]:
        targets = [t.strip() for t in self.lora_target_modules.split(",") if t.strip()]
        return "all-linear" if targets == ["all-linear"] else targets

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides):
        """The preset's values with ``overrides`` on top (``None`` preset: the field defaults)."""
        if preset is not None and preset not in cls.PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(cls.PRESETS)}")
        values = {**(cls.PRESETS[preset] if preset else {}), **overrides}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass
class SFTWarmupConfig(StageConfig):
    """SFT warm-up: LoRA fine-tuning on the PAG dataset, loss on completions only."""

    PRESETS = {
        "cpu-smoke": {"max_steps": 4, "batch_size": 1, "grad_accum": 2, "max_length": 4096, "save_steps": 0,
                      "output_dir": "outputs/sft-cpu-smoke"},
        "gpu": {"model": "Qwen/Qwen2.5-7B-Instruct", "device": "cuda", "max_steps": 1000, "batch_size": 4,
                "grad_accum": 4, "learning_rate": 1e-4, "gradient_checkpointing": True, "save_steps": 200,
                "lora_r": 64, "lora_alpha": 128, "output_dir": "outputs/sft-gpu"},
    }

    dataset: str = option("PAG dataset: a save_to_disk folder, .parquet or .jsonl (contract in parlmt.rl.data).", "")
    modules: str | None = option("Train only on these modules' rows (comma-separated: summarize,plan,act).")
    epochs: float = option("Passes over the dataset (max_steps, when positive, wins).", 1.0)
    batch_size: int = option("Rows per device per micro-batch.", 1)
    grad_accum: int = option("Micro-batches per optimizer step.", 4)
    max_length: int = option("Longest prompt+completion in tokens; longer rows are truncated from the end.", 8192)
    experiment: str = option("MLflow experiment name.", "parlmt-sft")
    output_dir: str = option("Where checkpoints and the final adapter (<output_dir>/adapter) go.", "outputs/sft")


@dataclass
class PAGRLConfig(StageConfig, ProgramOptions):
    """PAG-RL: GRPO over rollouts of the whole program (every module call is a sample)."""

    PRESETS = {
        "cpu-smoke": {"categories": "base", "limit": 8, "num_generations": 2, "states_per_step": 1,
                      "max_completion_tokens": 48, "max_steps_per_turn": 2, "max_steps": 3, "save_steps": 0,
                      "micro_batch_size": 2, "eval_steps": 0, "learning_rate": 5e-5,
                      "output_dir": "outputs/rl-cpu-smoke"},
        "gpu": {"model": "Qwen/Qwen2.5-7B-Instruct", "device": "cuda", "categories": "base,miss_func,miss_param,"
                "long_context", "num_generations": 8, "states_per_step": 8, "max_completion_tokens": 512,
                "max_steps_per_turn": 8, "rollout_turns": 2, "max_steps": 500,
                "micro_batch_size": 8, "save_steps": 50, "eval_steps": 50,
                "eval_states": 40, "learning_rate": 1e-5, "lora_r": 64, "lora_alpha": 128,
                "gradient_checkpointing": True, "output_dir": "outputs/rl-gpu"},
    }

    categories: str = option("Task sources, comma-separated: base, miss_func, miss_param, long_context, py:todo, "
                            "tau2:airline, ...", "base")
    tasks: str | None = option("Train on these task ids only (comma-separated, e.g. bfcl:base:3,py:todo:1); dev "
                              "states still come from the categories.")
    split: str = option("Tasks of this split train (dev states are always from the dev split).", "train")
    limit: int | None = option("At most this many tasks per category (first ones of the split).")
    start_turns: str | None = option("Start turns of the states, comma-separated (e.g. 0,1); unset: every turn.")
    rollout_turns: int | None = option("Turns the policy plays from the start turn (earlier ones are replayed from "
                                      "the ground truth); 0 or unset plays to the end.", 1)
    max_steps_per_turn: int = option("Act steps allowed per turn (BFCL: 20).", 4)
    user_lm: str | None = option("tau2 states only: a simulated customer (tau2's user-simulator prompt) answers every "
                                 "reply and a rollout is the whole conversation, until the customer stops; played by "
                                 "this model (any `parlmt eval --lm` value, answering greedily), or `policy`: the "
                                 "policy itself, at its sampling temperature, its customer turns not trained on. "
                                 "Unset: one scripted turn, the customer's request (as `parlmt eval` without "
                                 "--user-lm).")
    user_api_base: str | None = option("Endpoint of the user LM's OpenAI-compatible server.")
    user_temperature: float | None = option("Sampling temperature of the simulated customer; unset: 0 (greedy) for a "
                                            "model of its own, so a state's rollouts differ by the policy's choices "
                                            "alone, and the rollouts' temperature for `policy`.")
    max_user_turns: int = option("User messages a conversation with the simulated user may have; past them the "
                                 "rollout fails (tau2:max_user_turns).", MAX_USER_TURNS)
    num_generations: int = option("G: rollouts per state; advantages compare the same module call across them.", 4)
    states_per_step: int = option("States rolled out per optimizer step and process (each G times: under "
                                 "`accelerate launch` on P processes a step rolls out P x this many); also the "
                                 "number of accumulation slices a process's samples are split into.", 2)
    micro_batch_size: int = option("Samples per forward/backward pass within a slice, each trimmed to its own length "
                                  "(bounds memory: a step's samples vary in number, and BFCL prompts run to 2-3k "
                                  "tokens); 0: a whole slice at once.", 2)
    share_prefixes: bool = option("Rows of a micro-batch that begin with the same tokens (a state's G rollouts repeat "
                                 "its prompt) forward them once, their keys and values serving every row: the same "
                                 "loss and gradients for less compute; micro-batches then group such rows, up to "
                                 "micro_batch_size rows' worth of compute (under `accelerate launch`, micro_batch_size "
                                 "rows: the processes gather per-row figures). Off: every row runs whole.", True)
    max_completion_tokens: int = option("Token cap of every module call's completion.", 128)
    batch_rollouts: bool = option("Play a step's rollouts (states_per_step x G) in lockstep threads whose LM calls "
                                 "share batched forward passes; off: one rollout after another.", True)
    merge_adapter: bool = option("Sample rollouts with the LoRA adapter merged into the base weights (restored bit "
                                 "for bit after the rollouts): one matmul per layer instead of PEFT's three; in bf16 "
                                 "on a CPU prefill ~1.2x and decode 1.1-1.3x faster (bench/merge.py). The samples "
                                 "then come from the adapter's weights rounded once to the model's dtype; the loss "
                                 "recomputes log-probabilities unmerged either way. Off: sample through PEFT's "
                                 "separate LoRA path.", True)
    temperature: float = option("Sampling temperature of the rollouts (also the one the loss assumes).", 1.0)
    beta: float = option("KL penalty coefficient against the model without the new LoRA updates (0: no KL, no "
                        "reference forward pass).", 0.01)
    loss_type: str = option("TRL loss: dapo (token-level, normalised over the whole step) or dr_grpo; grpo averages "
                           "per sequence, which lets padding rows dilute it.", "dapo")
    epsilon: float = option("PPO clip range of the probability ratio.", 0.2)
    scale_advantages: bool = option("Divide advantages by their group's reward std (GRPO); off: Dr. GRPO.", False)
    reward_weights: str | None = option(
        "Reward term weights to change, as name=value pairs (e.g. turn=2,plan=0.3); the others keep their defaults: "
        + ", ".join(f"{name}={term.weight}" for name, term in REWARD_TERMS.items())
        + " (format validity, call F1, turn and episode success, the repeated/surplus-call penalty, the plan naming "
          "the turn's functions: rl/rewards.py).")
    eval_steps: int = option("Greedy accuracy on dev states every this many steps; 0: never.", 25)
    eval_states: int = option("Dev states in that evaluation (the first ones).", 8)
    eval_limit: int | None = option("Dev entries per category that evaluation draws its states from (first ones of "
                                   "the split); unset: limit.")
    eval_states_per_entry: int | None = option("States of each dev entry in that evaluation, the turns chosen by the "
                                              "fixed hash of `parlmt eval --states-per-entry` (the same states); "
                                              "unset: every turn.")
    learning_rate: float = option("Peak learning rate (AdamW).", 2e-5)
    experiment: str = option("MLflow experiment name.", "parlmt-rl")
    output_dir: str = option("Where checkpoints and the final adapter (<output_dir>/adapter) go.", "outputs/rl")

    def weights(self) -> dict[str, float]:
        """The weight of every registered reward term (``rewards.REWARD_TERMS``)."""
        return reward_weights(self.reward_weights)

    def __post_init__(self):
        self.check_program()
        # Every weight spelled out (an unknown term or a malformed pair fails here, before any model loads), so
        # the run's params in MLflow show the weights the run used.
        self.reward_weights = ",".join(f"{name}={value:g}" for name, value in self.weights().items())
        check_user_options(self.user_lm, self.user_temperature, self.max_user_turns)
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2: advantages compare rollouts of the same state")
        if self.loss_type not in ("dapo", "dr_grpo"):
            raise ValueError(f"loss_type must be dapo or dr_grpo, got {self.loss_type!r}")
