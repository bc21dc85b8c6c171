"""Two PAG-RL steps of the tiny model through ``train_rl``, as ``test_rl_distributed`` launches it: plainly
(one process) or under ``accelerate launch`` (several). The main process saves what the test compares.

Usage: ``python tests/rl_distributed_run.py MODEL_DIR OUT_DIR STATES_PER_STEP``
"""

import json
import sys
from pathlib import Path

import torch
from conftest import ScriptedPolicy  # this file's folder is on sys.path
from test_rl_train import SCRIPT, Gradients, rl_config

from parlmt.rl.grpo import build_trainer, train_rl

# Turn 0 of two tasks. The script's calls run in py:todo (14 samples per 4 rollouts) but name no BFCL
# function, so every BFCL Act fails and is re-planned (16 samples): the process with fewer samples pads.
TASKS = "py:todo:0,bfcl:base:3"


def main(model_dir: str, out: Path, states_per_step: int) -> None:
    config = rl_config(model_dir, out, tasks=TASKS, states_per_step=states_per_step, dtype="float64",
                       max_steps=2, save_steps=0, eval_steps=0)
    trainer = build_trainer(config)
    trainer.policy_lm = ScriptedPolicy(trainer.model, trainer.processing_class, SCRIPT)
    gradients = Gradients(trainer.model)
    trainer.add_callback(gradients)
    result = train_rl(config, trainer)
    if trainer.accelerator.is_main_process:
        torch.save(gradients.steps, out / "gradients.pt")
        (out / "result.json").write_text(json.dumps({
            "processes": trainer.accelerator.num_processes, "backend": trainer.accelerator.state.backend,
            "run_id": result.run_id, "mlruns": config.mlruns, "adapter": str(result.adapter),
            "logs": [entry for entry in result.log_history if "pag/reward" in entry]}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
