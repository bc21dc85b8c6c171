"""PAG-RL under accelerate's multi-process launcher, the path a GPU cluster takes: two CPU processes (gloo)
make the update one process makes on the same states.

``accelerate launch --cpu --num_processes 2`` starts a single process unless MPI is installed (it runs
``mpirun`` only with ``--mpirun_hostfile``), so the test launches with ``--multi_gpu``, accelerate's
torchrun launcher, the one GPU clusters use; the trainer's ``device=cpu`` (``use_cpu``) makes each process
a CPU one and the backend gloo instead of nccl. Nothing is mocked: ``tests/rl_distributed_run.py`` runs
``build_trainer`` and ``train_rl`` with the tests' scripted policy LM (``conftest.ScriptedPolicy``).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # two trainings of the tiny model at once, one under accelerate launch (~80 s)

RUN = Path(__file__).with_name("rl_distributed_run.py")
SAMPLE_COLUMNS = ["step", "task_id", "turn", "module", "call", "completion", "reward", "advantage"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path) -> subprocess.Popen:
    # One thread each: the two runs (three processes) share the machine, and a run's summation order
    # should not depend on how many cores it found free.
    with log.open("w") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(run: subprocess.Popen, log: Path) -> dict:
    assert run.wait(timeout=900) == 0, log.read_text()[-4000:]
    return json.loads((log.parent / log.stem / "result.json").read_text())


def samples(result: dict) -> list[tuple]:
    """Every sample the run trained on, with its reward and advantage, from the MLflow completions table
    (sorted: rollouts are numbered per process)."""
    client = MlflowClient(f"sqlite:///{result['mlruns']}/mlflow.db")
    # Read as a file: MlflowClient.load_table searches the runs through the global tracking URI, not its own.
    table = json.loads(Path(client.download_artifacts(result["run_id"], "completions.json")).read_text())
    columns = [table["columns"].index(name) for name in SAMPLE_COLUMNS]
    return sorted(tuple(row[i] for i in columns) for row in table["data"])


def relative_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], scale: list[str]) -> float:
    """|first - second| over |first restricted to ``scale``|, each as one vector."""
    assert first.keys() == second.keys()
    difference = torch.cat([(first[name] - second[name]).flatten() for name in first]).norm()
    size = torch.cat([first[name].flatten() for name in scale]).norm()
    assert size > 0
    return float(difference / size)


def test_two_processes_make_the_update_of_one(tiny_model_dir, tmp_path):
    """Why the updates are equal: TRL's sampler hands each process whole states (``num_generations``
    rows apiece), and ``states_per_step`` counts per process, so 2 processes x 1 state and 1 process x 2
    states roll out the same 2 states x 4 rollouts per step, and the scripted LM answers every state alike
    whichever process plays it (each rollout makes 2 Act calls: the 4-answer script comes round whole).
    Advantages are grouped over every process's samples (``gather_object``). The dapo loss divides each
    process's token sum by the step's token count over all processes, divided by the process count, and
    DDP averages the processes' gradients: sum over all tokens / all tokens, as one process computes it.
    The processes have 14 and 16 samples, so one pads 2 fully masked rows, which must weigh nothing.

    Checked: the same samples, rewards and advantages; the same ``pag/*`` figures (logged by the main
    process alone, so they must cover every process's rollouts); each step's LoRA gradient in float64 as a
    whole vector, within 1e-5 relative, as in the micro-batch test (TRL's fused log-prob head keeps part
    of its arithmetic in float32; measured 1.1e-7 and 1.5e-7, a lost or doubled process is off by O(1));
    and the saved adapters. Adam divides each gradient element by its own size, so elements whose gradient
    is near zero turn that rounding into larger weight differences (measured 1.9e-5 of the LoRA B norm
    after 2 steps; B starts at zero, so its norm is the update's); 1e-3 still catches a wrong update, which
    is off by O(1). Adam's first step is blind to the gradient's scale, hence the gradients are compared.
    """
    model = str(tiny_model_dir)
    one_log, two_log = tmp_path / "one.log", tmp_path / "two.log"
    one = start([sys.executable, str(RUN), model, str(tmp_path / "one"), "2"], one_log)
    two = start([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                 "--main_process_port", str(free_port()), str(RUN), model, str(tmp_path / "two"), "1"], two_log)
    single, distributed = finish(one, one_log), finish(two, two_log)
    assert (single["processes"], distributed["processes"], distributed["backend"]) == (1, 2, "gloo")

    trained = samples(single)
    assert len(trained) == 2 * (14 + 16) and any(row[-1] != 0 for row in trained)
    assert samples(distributed) == trained

    assert [e["pag/padding_rows"] for e in distributed["logs"]] == [2, 2]
    for step, other in zip(single["logs"], distributed["logs"], strict=True):
        # Padding and the prefixes micro-batches share depend on how the samples are split between processes;
        # rollout seconds on the clock.
        figures = [key for key in step if key.startswith("pag/") and key not in (
            "pag/padding_rows", "pag/update_tokens_spared", "pag/rollout_s")]
        assert {key: other[key] for key in figures} == {key: step[key] for key in figures}
        assert other["grad_norm"] == pytest.approx(step["grad_norm"], rel=1e-5)

    gradients = torch.load(tmp_path / "one" / "gradients.pt"), torch.load(tmp_path / "two" / "gradients.pt")
    assert len(gradients[0]) == len(gradients[1]) == 2
    for first, second in zip(*gradients, strict=True):
        assert all(g.dtype == torch.float64 for g in first.values())
        assert relative_difference(first, second, list(first)) < 1e-5

    adapters = [load_file(f"{result['adapter']}/adapter_model.safetensors") for result in (single, distributed)]
    assert relative_difference(*adapters, [name for name in adapters[0] if "lora_B" in name]) < 1e-3
