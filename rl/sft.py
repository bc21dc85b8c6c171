"""SFT warm-up: LoRA fine-tuning of the student on the PAG dataset with TRL's ``SFTTrainer``.

Rows are conversational prompt-completion pairs (``data`` documents the contract), so TRL applies
the model's chat template and puts the loss on the completion tokens only: the model learns to
write each module's outputs from exactly the prompts the DSPy adapter renders at inference time.
The adapter is saved to ``<output_dir>/adapter`` (loadable with ``ModelConfig(adapter=...)``) and
logged to MLflow with every training metric.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from parlmt.rl.config import SFTWarmupConfig
from parlmt.rl.data import load_pag_dataset
from parlmt.rl.fused_head import completion_tokens_only
from parlmt.rl.policy import load_policy


@dataclass
class SFTResult:
    """What a finished warm-up leaves: the adapter folder, the MLflow run (None on the processes other than
    the main one) and the logged history."""

    adapter: Path
    run_id: str | None
    log_history: list[dict]


def train_sft(config: SFTWarmupConfig, dataset=None, model=None, tokenizer=None, tags: dict | None = None) -> SFTResult:
    """Run the warm-up as ``config`` says (``dataset``/``model``/``tokenizer`` override loading them);
    ``tags`` join the MLflow run's (e.g. the dataset version)."""
    from trl import SFTConfig, SFTTrainer

    from parlmt.rl.tracking import MlflowLogger, log_adapter, stage_run

    dataset = load_pag_dataset(config.dataset) if dataset is None else dataset
    if config.modules:
        wanted = {m.strip() for m in config.modules.split(",")}
        dataset = dataset.filter(lambda row: row["module"] in wanted)
    if len(dataset) == 0:
        raise ValueError(f"no rows to train on in {config.dataset or 'the dataset'} (modules: {config.modules})")
    dataset = dataset.select_columns(["prompt", "completion"])
    model, tokenizer, peft_config = load_policy(config, model, tokenizer)
    args = SFTConfig(
        **config.trainer_arguments(),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_length=config.max_length,
        completion_only_loss=True,
        packing=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    main = trainer.accelerator.is_main_process  # under `accelerate launch` only the main process tracks (see grpo)
    with stage_run(config, "sft", tags) if main else nullcontext() as run_id:
        trainer.add_callback(MlflowLogger())
        resume = True if config.resume == "latest" else config.resume
        with completion_tokens_only():
            trainer.train(resume_from_checkpoint=resume)
        adapter = Path(config.output_dir) / "adapter"
        trainer.save_model(str(adapter))  # every process calls it; the Trainer writes from the main one
        if main:
            tokenizer.save_pretrained(str(adapter))
            log_adapter(adapter)
    return SFTResult(adapter, run_id, list(trainer.state.log_history))
