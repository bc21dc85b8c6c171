"""The private hooks of other libraries we rely on, one contract test each: an upgrade that changes
one fails here, by name, instead of somewhere deep in a training run. Each hook's reason is in a
comment where it is used."""

import importlib
import inspect

import torch
from trl import GRPOTrainer
from trl.trainer import utils as trl_utils


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_trl_fused_head_asks_use_triton_per_device():
    # rl/fused_head.py: on CPU, TRL's fused LM head scores every position unless this says True
    assert parameters(trl_utils._use_triton) == ["device"]
    assert "_use_triton(" in inspect.getsource(trl_utils)


def test_grpo_trainer_builds_its_tensors_in_generate_and_score_completions():
    # rl/grpo.py: PAGRLTrainer plays the rollouts there and replaces the advantages it returns
    assert parameters(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert '"advantages"' in source and "rollout_func" in inspect.getsource(GRPOTrainer)
    assert "self._metrics = {" in inspect.getsource(GRPOTrainer.__init__)  # the RL dev evaluation appends to it


def test_grpo_trainer_scores_the_loss_and_the_reference_through_one_log_prob_method():
    # rl/grpo.py: PAGRLTrainer overrides it to forward each piece's shared prompt prefix once
    method = GRPOTrainer._get_per_token_logps_and_entropies
    names = parameters(method)
    assert names[:8] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size",
                         "compute_entropy", "compute_aux_loss"]
    assert all(inspect.signature(method).parameters[name].default is None for name in names[8:])  # multimodal
    assert "fused_lm_head=True" in inspect.getsource(method)
    source = inspect.getsource(GRPOTrainer)
    assert source.count("self._get_per_token_logps_and_entropies(") >= 2  # the loss's and the KL reference's


def test_a_dynamic_cache_repeats_its_rows_for_a_batch():
    # rl/shared_prefix.py: one prefix's keys and values serve every row of a piece
    from transformers import DynamicCache

    assert parameters(DynamicCache.batch_repeat_interleave) == ["self", "repeats"]


def test_torch_bumps_a_tensor_version_on_every_in_place_change():
    # models/lm.py weights_fingerprint: an optimizer step must invalidate the prefix cache
    weight = torch.zeros(3)
    before = weight._version
    weight.add_(1.0)
    weight.copy_(torch.ones(3))
    assert weight._version == before + 2


def test_every_stateful_bfcl_backend_loads_its_scenario_with_long_context():
    # envs/bfcl.py: the official executor pads long-context scenarios inside the backend this way
    from parlmt.envs import CATEGORIES, load_tasks
    from parlmt.envs.bfcl import _bfcl

    backends = _bfcl().backends
    used = {name for category in CATEGORIES for task in load_tasks(category) for name in task.meta["classes"]}
    for name in sorted(used - set(backends.STATELESS_CLASSES)):
        load = getattr(importlib.import_module(backends.CLASS_FILE_PATH_MAPPING[name]), name)._load_scenario
        assert parameters(load)[:3] == ["self", "scenario", "long_context"], name
