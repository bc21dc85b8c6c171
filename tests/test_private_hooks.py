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
