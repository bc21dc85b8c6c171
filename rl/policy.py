"""The policy both stages train: the base model with a trainable LoRA adapter (or one to add)."""

from parlmt.models import ModelConfig, load_model
from parlmt.rl.config import StageConfig


def load_policy(config: StageConfig, model=None, tokenizer=None):
    """``(model, tokenizer, peft_config)``: ``config.adapter`` loaded trainable (``peft_config`` None),
    or the base model with the ``LoraConfig`` for the trainer to add. ``model``/``tokenizer`` skip loading."""
    from peft import LoraConfig

    if model is None:
        model, tokenizer = load_model(ModelConfig(config.model, config.dtype, config.device, config.adapter),
                                      trainable=True)
    if hasattr(model, "peft_config"):
        return model, tokenizer, None
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_targets(), task_type="CAUSAL_LM")
    return model, tokenizer, lora
