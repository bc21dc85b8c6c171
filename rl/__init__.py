"""The RL stage: SFT warm-up on the PAG dataset, then PAG-RL (GRPO over the whole program's rollouts).

- ``config``: ``SFTWarmupConfig`` and ``PAGRLConfig`` (field docs are the documentation) and presets.
- ``data``: the PAG dataset contract, reference rows from ground truth, RL states.
- ``rollout``: the real agent played from a turn's state (earlier turns replayed), samples tagged per module call.
- ``rewards``: the composite per-turn reward, one small pure function per term.
- ``advantages``: leave-one-out advantages grouped by (task, turn, module, call index).
- ``grpo``: ``PAGRLTrainer`` (a minimal ``trl.GRPOTrainer`` subclass) and ``train_rl``.
- ``sft``: ``train_sft`` (TRL ``SFTTrainer`` + PEFT LoRA).
- ``tracking``: training-stage MLflow runs, metrics, the completions table and the adapter artifact
  (the store itself: ``parlmt.tracking``).
- ``policy``: the model being trained, base + LoRA.
- ``fused_head``: TRL's fused LM head scoring only completion tokens on CPU.

Names are imported on first use (PEP 562) so that ``parlmt --help`` does not load torch or TRL.
"""

from parlmt import lazy_exports

_EXPORTS = {
    "PAGRLConfig": "config", "SFTWarmupConfig": "config",
    "reference_rows": "data", "load_pag_dataset": "data", "save_rows": "data", "state_rows": "data",
    "play": "rollout", "Rollout": "rollout",
    "REWARD_TERMS": "rewards", "TurnOutcome": "rewards", "StepOutcome": "rewards", "reward_terms": "rewards",
    "composite": "rewards",
    "group_advantages": "advantages",
    "PAGRLTrainer": "grpo", "build_trainer": "grpo", "train_rl": "grpo",
    "train_sft": "sft",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
