"""rl/: rollouts of the real agent, the SFT warm-up and PAG-RL (TRL GRPO + PEFT) on the tiny model,
with MLflow read back, checkpoint resume, and adapters loadable by ``ModelConfig(adapter=...)``.

PAG-RL moves the weights only when rollouts of a state earn different rewards, and a random model
never writes a parseable call. So the RL runs generate through ``ScriptedPolicy`` (conftest.py): the
policy LM seam (``trainer.policy_lm``, where a vLLM backend would plug in) answering from a script
that alternates a right and an unparseable Act. Everything else is real: the agent, the environment and
its checker, the rewards, TRL's loss on the tiny model's log-probs, LoRA, checkpoints and MLflow.
The real model's own sampling is covered by the rollout tests."""

import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from transformers import TrainerCallback

from parlmt.envs import load_task, load_tasks
from parlmt.models import ModelConfig, TransformersLM, load_model
from parlmt.rl.config import PAGRLConfig, SFTWarmupConfig
from parlmt.rl.data import load_pag_dataset, reference_rows, save_rows
from parlmt.rl.rollout import play

pytestmark = pytest.mark.slow  # real SFT and GRPO training (tiny model)

TASK = "py:todo:0"
SCRIPT = {  # what ScriptedPolicy (conftest.py) writes, by the output field the prompt asks for, in turn
    "plan": ["1. add_item(title='buy milk', tags=['home'])"],
    # A turn takes max_steps_per_turn (1) Act steps, then one more (BFCL's cap). Rollouts alternate: a right
    # call then a broken one (the turn's state matches), or two broken ones (re-planned after the first).
    "calls": ["[add_item(title='buy milk', tags=['home'])]", "[add_item(title='buy milk'",
              "[add_item(title='buy milk'", "[add_item(title='buy milk'"],
}


def rl_config(model_dir, tmp_path, **overrides) -> PAGRLConfig:
    values = dict(model=str(model_dir), dtype="float32", categories="py:todo", tasks=TASK, start_turns="0",
                  num_generations=4, states_per_step=1, max_completion_tokens=12, max_steps_per_turn=1,
                  max_steps=2, save_steps=1, eval_steps=2, eval_states=1, learning_rate=5e-3, beta=0.01,
                  lora_r=4, lora_alpha=8, output_dir=str(tmp_path / "rl"), mlruns=str(tmp_path / "mlruns"),
                  batch_rollouts=False)  # the script answers in call order, which lockstep threads would shuffle
    return PAGRLConfig(**{**values, **overrides})


def lora_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_rollout_from_a_later_turn_replays_the_ground_truth(tiny_model_dir):
    model, tokenizer = load_model(ModelConfig(str(tiny_model_dir), dtype="float32"))
    lm = TransformersLM(model=model, tokenizer=tokenizer, temperature=1.0, max_tokens=4, record_samples=True)
    rollout = play("progress", load_task(TASK), 1, lm, max_steps_per_turn=2)
    # turn 0 came from the ground truth (no LM call); turn 1 is the policy's: Summarize, Plan, Act
    assert rollout.trajectory.executed[0] == [["add_item(title='buy milk', tags=['home'])"]]
    assert [s.tags["module"] for s in rollout.samples][:3] == ["summarize", "plan", "act"]
    assert all(s.tags["turn"] == 1 for s in rollout.samples)
    assert "add_item(title='buy milk'" in rollout.samples[0].messages[-1]["content"]  # Summarize reads turn 0
    assert list(rollout.outcomes) == [1]
    assert len(rollout.trajectory.turns) == 2  # the task was cut after the played turn
    baseline = play("fullhistory", load_task(TASK), 1, lm, max_steps_per_turn=2)
    assert {s.tags["module"] for s in baseline.samples} == {"act"}


def test_reference_rows_match_what_the_agent_renders(tiny_model_dir, tmp_path):
    rows = reference_rows(load_tasks("py:todo", split="train"))
    assert {r["module"] for r in rows} == {"summarize", "plan", "act"}
    act = next(r for r in rows if r["module"] == "act" and r["task_id"] == TASK and r["turn"] == 0)
    assert "[add_item(title='buy milk', tags=['home'])]" in act["completion"][0]["content"]
    # The agent, played live at turn 0, renders the same Plan prompt as the reference row.
    model, tokenizer = load_model(ModelConfig(str(tiny_model_dir), dtype="float32"))
    lm = TransformersLM(model=model, tokenizer=tokenizer, max_tokens=2, record_samples=True)
    plan_row = next(r for r in rows if r["module"] == "plan" and r["task_id"] == TASK and r["turn"] == 0)
    assert play("progress", load_task(TASK), 0, lm, max_steps_per_turn=1).samples[0].messages == plan_row["prompt"]
    bfcl = reference_rows([load_task("bfcl:base:3")], program="fullhistory")
    assert [r["module"] for r in bfcl] == ["act"] * 4

    def replies(share: float) -> list[tuple[str, int]]:
        return [(r["task_id"], r["turn"]) for r in reference_rows(load_tasks("bfcl:base", split="train")[:20],
                                                                  program="fullhistory", replies=share)
                if r["completion"][0]["content"].startswith("[[ ## calls ## ]]\n[]")]

    every, half = replies(1.0), replies(0.5)
    assert replies(0.0) == [] and set(half) < set(every) and 0.3 < len(half) / len(every) < 0.7
    assert half == replies(0.5)  # the same turns every time
    with pytest.raises(ValueError, match="between 0 and 1"):
        reference_rows([load_task("bfcl:base:3")], replies=1.5)
    path = save_rows(rows, tmp_path / "pag.parquet")
    assert len(load_pag_dataset(path)) == len(rows)
    with pytest.raises(ValueError, match="lacks"):
        load_pag_dataset(save_rows([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows],
                                   tmp_path / "bad.parquet"))


def test_sft_lowers_the_loss_and_saves_a_loadable_adapter(tiny_model_dir, tmp_path):
    from parlmt.rl.sft import train_sft

    rows = [r for r in reference_rows(load_tasks("py:todo", split="train")) if r["module"] == "act"][:8]
    assert len(rows) == 8
    save_rows(rows, tmp_path / "pag")
    config = SFTWarmupConfig(model=str(tiny_model_dir), dtype="float32", dataset=str(tmp_path / "pag"),
                             max_steps=8, batch_size=4, grad_accum=1, learning_rate=3e-2, lora_r=8, lora_alpha=16,
                             save_steps=0, output_dir=str(tmp_path / "sft"), mlruns=str(tmp_path / "mlruns"))
    result = train_sft(config)
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.2  # from ln(vocab) = 11.9 for a random model
    model, _ = load_model(ModelConfig(str(tiny_model_dir), dtype="float32", adapter=str(result.adapter)))
    assert hasattr(model, "peft_config")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert len(client.get_metric_history(result.run_id, "loss")) == 8
    assert any(a.path == "adapter" for a in client.list_artifacts(result.run_id))


def scripted_run(scripted_trainer, config: PAGRLConfig):
    from parlmt.rl.grpo import train_rl

    return train_rl(config, scripted_trainer(config, SCRIPT))


@pytest.fixture(scope="module")
def rl_run(tiny_model_dir, scripted_trainer, tmp_path_factory):
    config = rl_config(tiny_model_dir, tmp_path_factory.mktemp("rl"))
    return config, scripted_run(scripted_trainer, config)


def test_rl_changes_the_lora_weights_and_logs_every_metric(rl_run):
    config, result = rl_run
    weights = lora_weights(result.adapter)
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # LoRA B starts at zero
    history = [e for e in result.log_history if "pag/reward" in e]
    assert len(history) == 2
    assert any(e["pag/advantage_abs"] > 0 for e in history)
    # 1 state x 4 rollouts, 2 Act steps each; a broken step is re-planned
    assert all(e["pag/samples_plan"] == 6 and e["pag/samples_act"] == 8 for e in history)
    assert all(e["pag/turn"] == 0.5 and e["pag/format"] == 0.25 for e in history)  # format: 1/2, 0, 1/2, 0
    assert all(0 < e["pag/rollout_s"] < result.log_history[-1]["train_runtime"] for e in history)

    client = MlflowClient(f"sqlite:///{config.mlruns}/mlflow.db")
    run = client.get_run(result.run_id)
    expected = ["loss", "kl", "entropy", "grad_norm", "reward", "frac_reward_zero_std", "pag/reward",
                "pag/samples", "pag/rollout_s", "dev/accuracy", "dev/accuracy_low", "dev/accuracy_high", "dev/reward"]
    expected += [f"pag/{t}" for t in ("format", "calls", "turn", "episode", "efficiency")]
    expected += [f"rewards/{t}/mean" for t in ("format", "calls", "turn", "episode", "efficiency")]
    missing = [name for name in expected if name not in run.data.metrics]
    assert not missing
    metrics = run.data.metrics
    assert metrics["dev/accuracy_low"] <= metrics["dev/accuracy"] <= metrics["dev/accuracy_high"]
    assert [m.step for m in client.get_metric_history(result.run_id, "pag/reward")] == [1, 2]
    assert run.data.params["program"] == "progress" and "turn=1," in run.data.params["reward_weights"]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"adapter", "completions.json"} <= artifacts
    table = client.load_table(run.info.experiment_id, "completions.json", run_ids=[result.run_id])
    assert len(table) == 2 * (6 + 8) and set(table["module"]) == {"plan", "act"}
    assert set(table["turn"]) == {0} and set(table["reward_turn"]) == {0.0, 1.0}  # the index, then the term
    assert table["advantage"].abs().sum() > 0

    # the adapter loads for `parlmt eval --adapter` and generates
    model, tokenizer = load_model(ModelConfig(config.model, "float32", adapter=str(result.adapter)))
    lm = TransformersLM(model=model, tokenizer=tokenizer, max_tokens=40)
    assert lm.generate([{"role": "user", "content": "hi"}], max_tokens=4).completion_ids


def test_rollouts_sample_with_the_adapter_merged_and_the_base_weights_stay_bit_for_bit(tiny_model_dir,
                                                                                        scripted_trainer, tmp_path):
    from parlmt.rl.grpo import train_rl

    config = rl_config(tiny_model_dir, tmp_path, max_steps=1, eval_steps=0, save_steps=0)
    trainer = scripted_trainer(config, SCRIPT)
    base = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if "lora_" not in name}
    lora = [m for m in trainer.model.modules() if hasattr(m, "merged_adapters")]
    merged, generate = [], trainer.policy_lm.generate

    def watched(messages, **options):
        merged.append(all(layer.merged for layer in lora))
        return generate(messages, **options)

    trainer.policy_lm.generate = watched
    train_rl(config, trainer)
    assert lora and merged and all(merged)
    assert not any(layer.merged for layer in lora)
    assert all(torch.equal(p, base[name]) for name, p in trainer.model.named_parameters() if "lora_" not in name)


def test_resume_from_a_checkpoint_matches_the_uninterrupted_run(rl_run, scripted_trainer, tmp_path):
    config, result = rl_run
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(f"{config.output_dir}/checkpoint-1", resumed_dir / "checkpoint-1")
    resumed = rl_config(config.model, tmp_path, output_dir=str(resumed_dir), resume="latest",
                        mlruns=config.mlruns)
    again = scripted_run(scripted_trainer, resumed)
    first, second = lora_weights(result.adapter), lora_weights(again.adapter)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name])
    step2 = [e for e in again.log_history if e.get("step") == 2 and "pag/reward" in e]
    original = [e for e in result.log_history if e.get("step") == 2 and "pag/reward" in e]
    assert step2[0]["pag/reward"] == original[0]["pag/reward"]


class Gradients(TrainerCallback):
    """The LoRA gradients of each optimizer step, as the optimizer is about to apply them."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.steps.append({name: p.grad.detach().clone() for name, p in self.model.named_parameters()
                           if p.requires_grad and p.grad is not None})


def first_step_gradients(scripted_trainer, config: PAGRLConfig) -> tuple[dict[str, torch.Tensor], dict]:
    """The first step's LoRA gradients and its logged metrics."""
    trainer = scripted_trainer(config, SCRIPT)
    gradients = Gradients(trainer.model)
    trainer.add_callback(gradients)
    trainer.train()
    return gradients.steps[0], trainer.state.log_history[0]


def test_micro_batches_and_shared_prefixes_give_the_gradient_of_the_whole_slice(tiny_model_dir, scripted_trainer,
                                                                               tmp_path):
    """Pieces of rows, and pieces whose common prefix is forwarded once, against the whole slice in one pass.
    The claim is an equality of sums, so it is checked on one step's gradients of a float64 model, as a
    whole vector: weights after Adam steps amplify float32 summation-order differences, which differ between
    CPU kinds, and TRL's fused log-prob head keeps part of its arithmetic in float32 even for a float64 model
    (measured: 5.5e-8 relative, float32's rounding unit being 6e-8). A lost or double-counted piece is off by
    O(1); 1e-5 leaves summation order on any CPU a wide margin."""
    settings = dict(dtype="float64", max_steps=1, save_steps=0, eval_steps=0, mlruns=str(tmp_path / "mlruns"))
    at_once, _ = first_step_gradients(scripted_trainer, rl_config(tiny_model_dir, tmp_path / "b", micro_batch_size=0,
                                                                  share_prefixes=False, **settings))
    pieces, _ = first_step_gradients(scripted_trainer, rl_config(tiny_model_dir, tmp_path / "a", micro_batch_size=2,
                                                                 share_prefixes=False, **settings))
    shared, logs = first_step_gradients(scripted_trainer, rl_config(tiny_model_dir, tmp_path / "c",
                                                                    micro_batch_size=4, **settings))
    assert logs["pag/update_tokens_spared"] > 0.5  # 4 rollouts of one state: most of each prompt is shared
    size = torch.cat([gradient.flatten() for gradient in at_once.values()]).norm()
    assert size > 0 and all(g.dtype == torch.float64 for g in at_once.values())
    for gradients in (pieces, shared):
        assert gradients.keys() == at_once.keys()
        difference = torch.cat([(gradients[name] - at_once[name]).flatten() for name in at_once]).norm()
        assert difference / size < 1e-5


def test_rows_with_a_common_prefix_forward_it_once_for_the_same_log_probs(tiny_model_dir, scripted_trainer,
                                                                           tmp_path):
    """TRL's own log-probs and gradients against the shared-prefix ones, on rows laid out as TRL lays them
    out (prompts left-padded, completions right-padded): three rows share 30 prompt tokens, one shares none."""
    from parlmt.rl.shared_prefix import plan_pieces, real_tokens

    trainer = scripted_trainer(rl_config(tiny_model_dir, tmp_path, dtype="float64"), SCRIPT)
    model, pad = trainer.model, trainer.processing_class.pad_token_id
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero; random B sends gradients through A and the whole prompt
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=generator)

    def tokens(length: int) -> list[int]:
        return torch.randint(10, 1000, (length,), generator=generator).tolist()

    common = tokens(30)
    prompts = [common + tokens(4), tokens(33), common + tokens(7), common + tokens(2)]
    completions = [tokens(3), tokens(5), tokens(1), tokens(4)]
    width, keep = max(map(len, prompts)), max(map(len, completions))
    prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    completion_ids = torch.tensor([c + [pad] * (keep - len(c)) for c in completions])
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    attention_mask = torch.cat([prompt_ids != pad, completion_ids != pad], 1).long()
    pieces = plan_pieces(real_tokens(input_ids, attention_mask), prompts, 2, share=True)
    assert sorted(sorted(piece) for piece in pieces) == [[0, 2, 3], [1]]

    def log_probs(share: bool):
        trainer.pag.share_prefixes = share
        model.zero_grad()
        logps, entropy, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, keep,
                                                                       batch_size=2, compute_entropy=True)
        weights = torch.linspace(-1, 1, logps.numel()).view_as(logps)
        (logps * weights * (completion_ids != pad)).sum().backward()
        return logps.detach(), entropy.detach(), {name: p.grad.clone() for name, p in model.named_parameters()
                                                  if p.grad is not None}

    shared, whole = log_probs(True), log_probs(False)
    completion_mask = completion_ids != pad
    torch.testing.assert_close(shared[0] * completion_mask, whole[0] * completion_mask, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(shared[1] * completion_mask, whole[1] * completion_mask, rtol=1e-6, atol=1e-6)
    assert shared[2].keys() == whole[2].keys() and any("lora_A" in name for name in shared[2])
    difference = torch.cat([(shared[2][n] - whole[2][n]).flatten() for n in whole[2]]).norm()
    size = torch.cat([g.flatten() for g in whole[2].values()]).norm()
    assert size > 0 and difference / size < 1e-5


def test_micro_batches_trim_the_padding_no_row_of_a_piece_uses():
    from parlmt.rl.grpo import micro_batches

    inputs = {
        "prompt_ids": torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9], [1, 2, 3, 4]]),
        "prompt_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]),
        "completion_ids": torch.tensor([[5, 0, 0], [6, 7, 0], [8, 9, 9]]),
        "completion_mask": torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]),
        "old_per_token_logps": torch.zeros(3, 3),
        "advantages": torch.tensor([1.0, -1.0, 0.5]),
        "num_items_in_batch": torch.tensor(6),
    }
    first, second = micro_batches(inputs, 2)
    assert first["prompt_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert first["completion_ids"].tolist() == [[5, 0], [6, 7]] and first["old_per_token_logps"].shape == (2, 2)
    assert second["prompt_ids"].tolist() == [[1, 2, 3, 4]] and second["completion_mask"].tolist() == [[1, 1, 1]]
    assert first["advantages"].tolist() == [1.0, -1.0] and int(second["num_items_in_batch"]) == 6
    assert micro_batches(inputs, 0) == [inputs] and micro_batches(inputs, 3) == [inputs]


def test_batched_rollouts_play_every_generation_of_a_state_with_the_real_model(tiny_model_dir, tmp_path):
    from parlmt.rl.grpo import build_trainer

    config = rl_config(tiny_model_dir, tmp_path, batch_rollouts=True, num_generations=3, max_steps=1, eval_steps=0,
                       save_steps=0, max_completion_tokens=6)
    trainer = build_trainer(config)
    rollouts = trainer._roll_out([{"task_id": TASK, "turn": 0}] * 3, desc="test")
    assert [number for number, _ in rollouts] == [0, 1, 2]
    for _, rollout in rollouts:
        assert [s.tags["module"] for s in rollout.samples][:2] == ["plan", "act"]  # turn 0: nothing to summarize
        assert rollout.outcomes and all(len(s.completion_ids) <= 6 for s in rollout.samples)
