"""PAG-RL: GRPO (TRL) over rollouts of the whole agent, with per-turn composite rewards.

Each optimizer step takes ``states_per_step`` states ``(task, turn)`` from the train split, plays
the program ``num_generations`` times from each (``rollout.play``: the live LoRA policy generates
every Summarize, Plan and Act call), scores every turn it played (``rewards``), and trains on every
module call as one sample whose advantage is relative to the same call in the other rollouts of
the state (``advantages``).

Why a ``GRPOTrainer`` subclass rather than a ``rollout_func`` alone: TRL takes one sample per dataset
row and centres advantages on blocks of ``num_generations`` rows, while a rollout of the program
yields a varying number of module-call samples grouped by ``(task, turn, module, call index)``.
``PAGRLTrainer`` overrides only ``_generate_and_score_completions``: it plays the rollouts, hands the
parent the M samples through ``rollout_func`` (padded with fully masked rows to a multiple of
``steps_per_generation``, the same count on every process) with ``num_generations = 1`` so that TRL
builds the tensors, the KL reference, and the per-term reward statistics, then replaces TRL's
advantages with the group-relative ones. That is private API: trl is pinned (==1.16.0) and the
tests run it end to end.
"""

import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from parlmt.envs import Task, select_tasks
from parlmt.models import TransformersLM
from parlmt.models.loading import merged_lora
from parlmt.programs.metrics import aggregate, state_turns
from parlmt.programs.user import require_simulated_user
from parlmt.rl.advantages import group_advantages, zero_spread_share
from parlmt.rl.config import PAGRLConfig
from parlmt.rl.data import state_rows
from parlmt.rl.fused_head import completion_tokens_only
from parlmt.rl.policy import load_policy
from parlmt.rl.rewards import REWARD_TERMS, composite, reward_terms, with_module_terms
from parlmt.rl.rollout import Rollout, play
from parlmt.rl.shared_prefix import contiguous, plan_pieces, prefix_log_probs, real_tokens, shared_length

PADDING = "(padding)"
TABLE_TEXT_CHARS = 2000


class RewardColumn:
    """A TRL reward function that reads one term the rollouts already computed (a ``reward_<term>``
    column; None on padding rows, which TRL then leaves out of its statistics)."""

    def __init__(self, term: str):
        self.term = self.__name__ = term

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        return columns[f"reward_{self.term}"]


class PAGRLTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose generation step rolls out the whole program (see the module docstring).

    Args:
        model: the policy (a PEFT model, or a base model with ``peft_config``).
        config: the PAG-RL settings (program, rollout shape, reward weights, dev evaluation).
        tasks: the tasks the dataset's ``task_id`` refer to, dev states' included.
        dev_states: ``(task_id, turn)`` pairs for the greedy dev evaluation.
        args, train_dataset, processing_class, peft_config: as for ``GRPOTrainer``; the dataset has
            one row per state (``data.state_rows``).
    """

    def __init__(self, model, config: PAGRLConfig, tasks: dict[str, Task], args: GRPOConfig, train_dataset,
                 processing_class, dev_states: list[tuple[str, int]] = (), peft_config=None):
        self.pag, self.tasks, self.dev_states = config, tasks, list(dev_states)
        self._prepared: dict | None = None
        self._spared = 0  # prompt tokens the current slice's loss forwarded once for several rows
        self._table: list[dict] = []
        super().__init__(model=model, reward_funcs=[RewardColumn(term) for term in REWARD_TERMS], args=args,
                         train_dataset=train_dataset, processing_class=processing_class, peft_config=peft_config,
                         rollout_func=self._prepared_samples)
        self.policy_lm = TransformersLM(model=self.model, tokenizer=self.processing_class, name="local/policy",
                                        temperature=config.temperature, max_tokens=config.max_completion_tokens,
                                        record_samples=True)
        # The simulated customer of tau2 rollouts: a model of its own, greedy (user_temperature, passed to each
        # call in _play, overrides it), or the policy itself ("policy": see _play).
        self.user_lm = None
        if config.user_lm not in (None, "policy"):
            from parlmt.models.lm import make_lm

            self.user_lm = make_lm(config.user_lm, config.max_completion_tokens, 0.0, api_base=config.user_api_base)

    # ------------------------------------------------------------------ one generation step

    def training_step(self, model, inputs, num_items_in_batch):
        with completion_tokens_only():
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss over the slice in micro-batches of ``micro_batch_size`` rows: every micro-batch but
        the last is back-propagated here, so one micro-batch's activations are alive at a time (the
        trainer back-propagates the returned loss; the earlier ones join it detached, for the logs)."""
        chunks = micro_batches(inputs, self.pag.micro_batch_size, self._sharing(),
                               equal_rows=self.accelerator.num_processes > 1)
        rows = len(inputs["advantages"])
        self._spared = 0
        earlier = 0.0
        for chunk in chunks:
            # dapo normalises by the step's token count, so the pieces add up; dr_grpo by the rows it sees.
            weight = len(chunk["advantages"]) / rows if self.loss_type == "dr_grpo" else 1.0
            loss = super().compute_loss(model, chunk, return_outputs, num_items_in_batch) * weight
            if chunk is chunks[-1]:
                break
            self.accelerator.backward(loss)
            earlier += loss.detach()
        if self._sharing():  # the share of the slice's token forwards (every process's) that shared prefixes spared
            tokens = inputs["prompt_mask"].sum() + inputs["completion_mask"].sum()
            spared, tokens = self.accelerator.gather(torch.tensor(
                [[self._spared, int(tokens)]], device=self.accelerator.device)).sum(0).tolist()
            self._metrics["train"]["pag/update_tokens_spared"].append(spared / tokens)
        return loss + earlier

    def _sharing(self) -> bool:
        # Gradient checkpointing drops the prefix's cache in a forward that records gradients.
        return self.pag.share_prefixes and not (self.args.gradient_checkpointing and torch.is_grad_enabled())

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        """TRL's log-probs, with each piece of rows that share a prompt prefix forwarding it once
        (``shared_prefix``): for the loss and for the KL reference."""
        if not self._sharing() or compute_aux_loss or any(v is not None for v in multimodal.values()) or not \
                contiguous(attention_mask):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal)
        width = input_ids.size(1)
        tokens = real_tokens(input_ids, attention_mask)
        prompts = real_tokens(input_ids[:, :width - logits_to_keep], attention_mask[:, :width - logits_to_keep])
        pieces_logps, pieces_entropies, order = [], [], []
        for rows in plan_pieces(tokens, prompts, batch_size or len(tokens), share=True):  # rows in token order
            index = torch.tensor(rows, device=input_ids.device)
            shared = shared_length([prompts[i] for i in rows])
            ids, mask = input_ids[index], attention_mask[index]
            if torch.is_grad_enabled():  # the loss's forwards, for pag/update_tokens_spared
                self._spared += shared * (len(rows) - 1)
            if shared:
                with self.accelerator.autocast():
                    piece = prefix_log_probs(model, self.accelerator.unwrap_model(model), ids, mask, logits_to_keep,
                                             shared, compute_entropy)
            else:
                piece = super()._get_per_token_logps_and_entropies(model, ids, mask, logits_to_keep,
                                                                   compute_entropy=compute_entropy)[:2]
            pieces_logps.append(piece[0])
            pieces_entropies.append(piece[1])
            order += rows
        # Back in the rows' order, by a differentiable gather.
        inverse = torch.argsort(torch.tensor(order, device=input_ids.device))
        logps = torch.cat(pieces_logps)[inverse]
        entropies = torch.cat(pieces_entropies)[inverse] if compute_entropy else None
        return logps, entropies, None

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        if not self.model.training:
            raise RuntimeError("PAG-RL evaluates with evaluate_states (dev callback), not the trainer's eval loop")
        started = time.perf_counter()
        rollouts = self._roll_out(inputs, desc=f"step {self.state.global_step + 1} rollouts")
        rollout_s = time.perf_counter() - started
        rows, samples = self._sample_rows(rollouts)
        real = len(rows)
        rows, samples = self._pad(rows, samples)
        self._prepared = {
            "prompt_ids": [s["prompt_ids"] for s in samples],
            "completion_ids": [s["completion_ids"] for s in samples],
            "logprobs": [s["logprobs"] for s in samples],
            "env_mask": [[int(row["prompt"] != PADDING)] * len(s["completion_ids"]) for row, s in zip(
                rows, samples, strict=True)],
        }
        generations, self.num_generations = self.num_generations, 1  # TRL's own grouping: singletons
        try:
            output = super()._generate_and_score_completions(rows)
        finally:
            self.num_generations, self._prepared = generations, None
        local, spread = self._advantages(rows)
        output["advantages"] = torch.tensor(local, dtype=torch.float32, device=self.accelerator.device)
        self._log_step(rollouts, rows[:real], local[:real], spread, padding=len(rows) - real, rollout_s=rollout_s)
        return output

    def _prepared_samples(self, prompts: list, trainer: GRPOTrainer) -> dict:
        """The ``rollout_func`` TRL calls inside ``_generate``: the samples this step already made."""
        if self._prepared is None or len(self._prepared["prompt_ids"]) != len(prompts):
            raise RuntimeError("PAGRLTrainer generates in _generate_and_score_completions; no samples are prepared")
        return self._prepared

    def _roll_out(self, inputs: list[dict], desc: str) -> list[tuple[int, Rollout]]:
        """One rollout per input row (the sampler repeats each state ``num_generations`` times): all in
        lockstep threads whose LM calls share batched forward passes (``batch_rollouts``), else one
        after another."""
        config, model = self.pag, self.model

        def rollout(row: dict, lm) -> Rollout:
            return self._play(self.tasks[row["task_id"]], row["turn"], lm)

        def on_lane(row: dict, lane) -> Rollout:
            try:
                return rollout(row, lane)
            finally:
                lane.batcher.leave()

        # Sampling in eval mode: the KV cache works (gradient checkpointing is off) and LoRA dropout is off.
        model.eval()
        try:
            with (merged_lora(model) if config.merge_adapter else nullcontext(),
                  tqdm(total=len(inputs), desc=desc, leave=False,
                       disable=not self.accelerator.is_local_main_process) as bar):
                if config.batch_rollouts and len(inputs) > 1:
                    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
                        futures = [pool.submit(on_lane, row, lane)
                                   for row, lane in zip(inputs, self.policy_lm.lanes(len(inputs)), strict=True)]
                        for _ in as_completed(futures):
                            bar.update()
                        played = [future.result() for future in futures]
                else:
                    played = []
                    for row in inputs:
                        played.append(rollout(row, self.policy_lm))
                        bar.update()
        finally:
            model.train()
        return list(enumerate(played))

    def _play(self, task: Task, turn: int, lm) -> Rollout:
        """One rollout of the program with ``lm`` from ``(task, turn)``, with the simulated user when there is one."""
        config = self.pag
        user = lm if config.user_lm == "policy" else self.user_lm  # the policy's lane: its user turns batch too
        return play(config.program, task, turn, lm, turns=config.rollout_turns or None,
                    max_steps_per_turn=config.max_steps_per_turn, refresh=config.refresh, tool_docs=config.tool_docs,
                    user_lm=user, max_user_turns=config.max_user_turns, user_temperature=config.user_temperature)

    def _sample_rows(self, rollouts: list[tuple[int, Rollout]]) -> tuple[list[dict], list[dict]]:
        """Every tagged LM sample of every rollout as a row (key, rollout, reward terms) and its token ids."""
        weights = self.pag.weights()
        rank = self.accelerator.process_index
        rows, samples = [], []
        for number, rollout in rollouts:
            terms_by_turn = {turn: reward_terms(outcome) for turn, outcome in rollout.outcomes.items()}
            for sample in rollout.samples:
                turn = sample.tags["turn"]
                terms = with_module_terms(terms_by_turn[turn], rollout.outcomes[turn], sample.tags["module"],
                                          sample.text)
                rows.append({
                    "prompt": f"{rollout.task_id} turn {turn} {sample.tags['module']}#{sample.tags['index']}",
                    "key": (rollout.task_id, rollout.start, turn, sample.tags["module"], sample.tags["index"]),
                    "rollout": (rank, number),
                    "reward": composite(terms, weights),
                    **{f"reward_{name}": value for name, value in terms.items()},
                })
                samples.append({"prompt_ids": sample.prompt_ids, "completion_ids": sample.completion_ids,
                                "logprobs": sample.logprobs, "text": sample.text})
        return rows, samples

    def _pad(self, rows: list[dict], samples: list[dict]) -> tuple[list[dict], list[dict]]:
        """Rows padded with fully masked ones to the same multiple of ``steps_per_generation`` on every process."""
        chunks = self.args.steps_per_generation
        largest = int(self.accelerator.gather(torch.tensor([len(rows)], device=self.accelerator.device)).max())
        target = max(chunks, math.ceil(largest / chunks) * chunks)
        tokenizer = self.processing_class
        filler_row = {"prompt": PADDING, "key": None, "rollout": None, "reward": None,
                      **{f"reward_{name}": None for name in REWARD_TERMS}}
        filler = {"prompt_ids": [tokenizer.pad_token_id], "completion_ids": [tokenizer.eos_token_id],
                  "logprobs": [0.0], "text": ""}
        missing = target - len(rows)
        return rows + [dict(filler_row) for _ in range(missing)], samples + [dict(filler) for _ in range(missing)]

    def _advantages(self, rows: list[dict]) -> tuple[list[float], float]:
        """This process's advantages (group-relative over every process's rows) and the share of groups
        with no reward spread."""
        from accelerate.utils import gather_object

        every = gather_object([(row["key"], row["rollout"], row["reward"]) for row in rows])
        real = [(i, key, rollout, reward) for i, (key, rollout, reward) in enumerate(every) if key is not None]
        keys, rollouts, rewards = [r[1] for r in real], [r[2] for r in real], [r[3] for r in real]
        values = group_advantages(keys, rollouts, rewards, scale=self.pag.scale_advantages)
        advantages = [0.0] * len(every)
        for (i, *_), value in zip(real, values, strict=True):
            advantages[i] = value
        start = self.accelerator.process_index * len(rows)
        return advantages[start:start + len(rows)], zero_spread_share(keys, rollouts, rewards)

    def _log_step(self, rollouts: list[tuple[int, Rollout]], rows: list[dict], advantages: list[float],
                  spread: float, padding: int, rollout_s: float) -> None:
        """Per-term means over played turns (not samples), sample counts, the rollouts' wall seconds (the
        slowest process's), and the completions table, over every process's rollouts: the trainer logs the
        main process's metrics alone."""
        from accelerate.utils import gather_object

        metrics = self._metrics["train"]
        outcomes = gather_object([reward_terms(o) for _, r in rollouts for o in r.outcomes.values()])
        scored = gather_object([{name: row[f"reward_{name}"] for name in REWARD_TERMS} for row in rows
                                if row["key"] is not None])
        for name, term in REWARD_TERMS.items():  # a turn's term over played turns, a module's over its samples
            values = [t[name] for t in (outcomes if term.module is None else scored) if t[name] is not None]
            if values:
                metrics[f"pag/{name}"].append(mean(values))
        if outcomes:  # none when every rollout's simulated user failed before the first turn
            metrics["pag/reward"].append(mean(composite(o, self.pag.weights()) for o in outcomes))
        samples = [s for _, r in rollouts for s in r.samples]
        step = self.state.global_step + 1
        self._table = gather_object([
            {"step": step, "task_id": row["key"][0], "start_turn": row["key"][1], "turn": row["key"][2],
             "module": row["key"][3], "call": row["key"][4], "rollout": row["rollout"][1],
             "prompt_tokens": len(sample.prompt_ids), "completion_tokens": len(sample.completion_ids),
             "completion": sample.text[:TABLE_TEXT_CHARS], "reward": row["reward"], "advantage": advantage,
             **{f"reward_{name}": row[f"reward_{name}"] for name in REWARD_TERMS}}  # "turn" is the turn's index
            for row, sample, advantage in zip(rows, samples, advantages, strict=True)
        ])
        metrics["pag/samples"].append(len(self._table))
        metrics["pag/padding_rows"].append(sum(gather_object([padding])))
        metrics["pag/rollout_s"].append(max(gather_object([rollout_s])))
        metrics["pag/advantage_abs"].append(mean(abs(r["advantage"]) for r in self._table) if self._table else 0.0)
        by_module = defaultdict(int)
        for row in self._table:
            by_module[row["module"]] += 1
        for module, count in by_module.items():
            metrics[f"pag/samples_{module}"].append(count)
        # TRL's grouping saw singletons; report the real share of groups whose rewards are all equal.
        metrics["frac_reward_zero_std"][-1] = spread

    def pop_table(self) -> list[dict]:
        """The last generation step's samples as table rows (once)."""
        table, self._table = self._table, []
        return table

    # ------------------------------------------------------------------ dev evaluation

    def evaluate_states(self, states: list[tuple[str, int]] | None = None) -> dict[str, float]:
        """Greedy rollouts from dev states: the share of states whose played turns pass (``dev/accuracy``, as
        ``parlmt eval --replayed-turns`` computes it, with its 95% interval over entries), the composite
        reward and each term."""
        states = self.dev_states if states is None else states
        config = self.pag
        greedy = TransformersLM(model=self.model, tokenizer=self.processing_class, name="local/policy",
                                temperature=0.0, max_tokens=config.max_completion_tokens, record_samples=True)
        was_training = self.model.training
        self.model.eval()
        outcomes, trajectories = [], []
        try:
            for task_id, turn in tqdm(states, desc="dev states", leave=False,
                                      disable=not self.accelerator.is_local_main_process):
                rollout = self._play(self.tasks[task_id], turn, greedy)
                outcomes += [reward_terms(o) for o in rollout.outcomes.values()]
                trajectories.append(rollout.trajectory)
        finally:
            self.model.train(was_training)
        if not outcomes:
            return {}
        figures = {f"dev/{name}": mean(o[name] for o in outcomes) for name, term in REWARD_TERMS.items()
                   if term.module is None}
        dev = aggregate(trajectories)
        figures.update({f"dev/{key}": dev[key] for key in ("accuracy", "accuracy_low", "accuracy_high")})
        figures["dev/reward"] = mean(composite(o, config.weights()) for o in outcomes)
        return figures


def micro_batches(inputs: dict, size: int, share: bool = False, equal_rows: bool = False) -> list[dict]:
    """``inputs`` (TRL's padded tensors for one slice) in pieces of at most ``size`` rows' compute, or of
    ``size`` rows each with ``equal_rows`` (``shared_prefix.plan_pieces``; with ``share``, rows with a
    common prefix together), each trimmed of the prompt's left padding and the completion's right padding
    that no row of the piece uses."""
    rows = len(inputs["advantages"])
    if size <= 0 or rows <= size and not share:
        return [inputs]
    prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
    tokens = real_tokens(torch.cat([prompt_ids, completion_ids], 1),
                         torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1))
    prompts = real_tokens(prompt_ids, inputs["prompt_mask"])
    width = completion_ids.size(1)
    pieces = []
    for rows_of_piece in plan_pieces(tokens, prompts, size, share, equal_rows):
        index = torch.tensor(rows_of_piece, device=prompt_ids.device)
        piece = {key: value[index] if torch.is_tensor(value) and value.dim() > 0 else value
                 for key, value in inputs.items()}
        first = int(piece["prompt_mask"].any(0).nonzero()[0])
        used = piece["completion_mask"].any(0).nonzero()
        last = int(used[-1]) + 1 if len(used) else 1
        for key, value in piece.items():
            if key.startswith("prompt"):
                piece[key] = value[:, first:]
            elif torch.is_tensor(value) and value.dim() > 1 and value.size(1) == width:
                piece[key] = value[:, :last]
        pieces.append(piece)
    return pieces


class DevEvaluation(TrainerCallback):
    """Every ``every`` steps, the trainer's greedy dev figures join the metrics of the next log."""

    def __init__(self, trainer: PAGRLTrainer, every: int):
        self.trainer, self.every = trainer, every

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and self.trainer.dev_states and state.global_step % self.every == 0:
            for name, value in self.trainer.evaluate_states().items():
                self.trainer._metrics["train"][name].append(value)


# ---------------------------------------------------------------------- the stage


@dataclass
class RLResult:
    """What a finished PAG-RL run leaves: the adapter folder, the MLflow run (None on the processes other
    than the main one) and the last logs."""

    adapter: Path
    run_id: str | None
    log_history: list[dict]


def grpo_args(config: PAGRLConfig) -> GRPOConfig:
    """TRL's config for the PAG-RL settings: one generation round per optimizer step, the samples split
    into ``states_per_step`` accumulation slices (each in ``micro_batch_size`` pieces), ``temperature``
    equal to the rollouts'."""
    weights = config.weights()
    return GRPOConfig(
        **config.trainer_arguments(),
        per_device_train_batch_size=config.num_generations,
        gradient_accumulation_steps=config.states_per_step,
        steps_per_generation=config.states_per_step,
        num_generations=config.num_generations,
        num_iterations=1,
        max_completion_length=config.max_completion_tokens,
        temperature=config.temperature,
        beta=config.beta,
        loss_type=config.loss_type,
        epsilon=config.epsilon,
        scale_rewards="none",
        reward_weights=[weights[name] for name in REWARD_TERMS],
        lr_scheduler_type="constant",
        remove_unused_columns=False,
    )


def build_trainer(config: PAGRLConfig, model=None, tokenizer=None) -> PAGRLTrainer:
    """The trainer for ``config``: the model (with ``config.adapter`` kept trainable, or a fresh LoRA),
    the train states and the dev states. ``model``/``tokenizer`` skip loading (tests, benchmarks)."""
    from datasets import Dataset

    turns = [int(t) for t in config.start_turns.split(",")] if config.start_turns else None
    train = select_tasks(config.categories, config.split, config.limit, config.tasks)
    dev = select_tasks(config.categories, "dev", config.eval_limit or config.limit) if config.eval_steps else []
    rows = state_rows(train, turns)
    if not rows:
        raise ValueError(f"no training states in {config.categories} ({config.split} split, start turns {turns})")
    dev_states = [(task.id, turn) for task in dev for turn in state_turns(task, config.eval_states_per_entry)
                  if turns is None or turn in turns][: config.eval_states]
    if config.user_lm:
        require_simulated_user(train + dev)
    model, tokenizer, peft_config = load_policy(config, model, tokenizer)  # once the tasks are known to work
    trainer = PAGRLTrainer(model, config, {task.id: task for task in train + dev}, grpo_args(config),
                           Dataset.from_list(rows), tokenizer, dev_states, peft_config)
    trainer.add_callback(DevEvaluation(trainer, config.eval_steps))
    return trainer


def train_rl(config: PAGRLConfig, trainer: PAGRLTrainer | None = None, tags: dict | None = None) -> RLResult:
    """Run PAG-RL as ``config`` says, in an MLflow run: metrics every step, the completions table, the
    final adapter (``<output_dir>/adapter``) as an artifact. ``config.resume`` continues a checkpoint.

    ``trainer`` is one from ``build_trainer(config)`` that the caller adjusted (e.g. another
    generation backend as ``trainer.policy_lm``); by default it is built here. ``tags`` join the run's.
    """
    from parlmt.rl.tracking import MlflowLogger, log_adapter, log_reward_plot, stage_run

    trainer = trainer or build_trainer(config)
    # Under `accelerate launch` every process trains, and only the main one tracks: one MLflow run, and one
    # writer of its SQLite store (two processes creating it at once fail on its schema migration).
    main = trainer.accelerator.is_main_process
    run = stage_run(config, "rl", {"program": config.program, **(tags or {})}) if main else nullcontext()
    with run as run_id:
        trainer.add_callback(MlflowLogger(table=trainer.pop_table))
        resume = True if config.resume == "latest" else config.resume
        trainer.train(resume_from_checkpoint=resume)
        adapter = Path(config.output_dir) / "adapter"
        trainer.save_model(str(adapter))  # every process calls it; the Trainer writes from the main one
        if main:
            trainer.processing_class.save_pretrained(str(adapter))
            log_adapter(adapter)
            log_reward_plot(trainer.state.log_history, list(REWARD_TERMS))
    # accelerate's end of a run: under `accelerate launch` it destroys the process group. A gloo group left to
    # the interpreter's exit aborted a process after training ("terminate called without an active exception",
    # AMD EPYC); with one process it does nothing.
    trainer.accelerator.end_training()
    return RLResult(adapter, run_id, list(trainer.state.log_history))
