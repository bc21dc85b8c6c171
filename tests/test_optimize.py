"""optimize/: the reference teacher, step verification, resumable shards, the dataset, MLflow, the CLI."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from dspy.utils import DummyLM
from mlflow.tracking import MlflowClient

from parlmt.cli import main
from parlmt.envs import load_task, make_env
from parlmt.models import ModelConfig, TransformersLM
from parlmt.optimize import PAGConfig, StudentCheck, bootstrap, run
from parlmt.optimize.pag import SHARD, read_shard
from parlmt.programs import build_program
from parlmt.programs.oracle import oracle_program

REPO = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, **overrides) -> PAGConfig:
    values = {"limit": 2, "verify_student": False, "out": str(tmp_path / "pag"), "mlruns": str(tmp_path / "ml")}
    return PAGConfig(**(values | overrides))


def wrong_teacher() -> DummyLM:
    """A scripted teacher whose every module answer is the same, and whose call is always wrong."""
    answer = {"summary": "nothing", "plan": "1. make a folder", "calls": "[mkdir(dir_name='wrong_place')]",
              "reply": ""}
    return DummyLM([answer] * 200)


def test_reference_teacher_rows_replay_to_a_passing_checker(tmp_path):
    summary = run(config(tmp_path, limit=3))
    assert summary["tasks"] == 3 and summary["acceptance_rate"] == 1.0
    rows = datasets.load_from_disk(str(tmp_path / "pag" / "pag"))["train"]
    assert len(rows) == summary["steps_accepted"] > 0
    for task_id in sorted(set(rows["task_id"])):
        env = make_env(load_task(task_id))
        task_rows = [r for r in rows if r["task_id"] == task_id]
        for turn in range(len(env.task.turns)):
            for row in (r for r in task_rows if r["turn"] == turn and r["action"] != "[]"):
                env.step(row["action"])
            env.next_turn()
        assert env.score_episode().passed, task_id
    sft = datasets.load_from_disk(str(tmp_path / "pag" / "sft"))
    assert set(sft["module"]) == {"summarize", "plan", "act"}
    act = next(r for r in sft if r["module"] == "act")
    assert act["prompt"][0]["role"] == "system" and "[[ ## plan ## ]]" in act["prompt"][-1]["content"]
    assert act["completion"][0]["content"].startswith("[[ ## calls ## ]]")
    card = (tmp_path / "pag" / "README.md").read_text()
    assert "bfcl-eval 2026.3.23" in card and "reference" in card


def test_pag_bootstraps_from_any_task_source(tmp_path):
    summary = run(config(tmp_path, categories="base,py:todo", limit=1))
    assert summary["tasks"] == summary["tasks_passed"] == 2 and summary["acceptance_rate"] == 1.0
    assert set(read_shard(tmp_path / "pag")) == {"bfcl:base:1", "py:todo:0"}  # the first train task of each


def test_a_wrong_teacher_has_every_step_rejected_with_a_reason(tmp_path):
    cfg = config(tmp_path, teacher="scripted", limit=1, max_steps_per_turn=2)
    entries = bootstrap(cfg, build_program("progress", max_steps_per_turn=2), wrong_teacher())
    steps = [s for entry in entries.values() for s in entry["steps"]]
    assert steps and not any(s["accepted"] for s in steps)
    assert all(s["reject_reason"].startswith("turn_failed:") for s in steps)
    assert all(s["action"] == "[mkdir(dir_name='wrong_place')]" for s in steps)


def test_model_aware_verification_rejects_steps_the_student_cannot_reproduce(tmp_path, tiny_model_dir):
    """The turn passed, but a (random, tiny) student does not write the teacher's call: rejected, with why."""
    student = StudentCheck(TransformersLM(ModelConfig(model=str(tiny_model_dir), dtype="float32"), max_tokens=8))
    entries = bootstrap(config(tmp_path, limit=1, verify_student=True), check=student)
    steps = [s for entry in entries.values() for s in entry["steps"]]
    assert steps and all(s["turn_passed"] and not s["accepted"] for s in steps)
    assert all(s["reject_reason"].split(":")[0] in ("student_mismatch", "student_unparseable") for s in steps)


@pytest.mark.slow
def test_the_real_student_reproduces_a_reference_step(student):
    model, tokenizer = student
    check = StudentCheck(TransformersLM(model=model, tokenizer=tokenizer, max_tokens=48))
    env = make_env("bfcl:base:9")
    # A step the greedy student reproduces in float32 and in bf16 alike (most steps it does not, and which
    # ones it does depends on the dtype and the CPU's kernels).
    third_act = oracle_program("progress", env)(task=env).trajectory.calls_of("act")[2]
    assert check(third_act.inputs, ["cp(source='FinalReport.txt', destination='Archives')"])[1] is None
    calls, reason = check(third_act.inputs, ["mkdir(dir_name='elsewhere')"])
    assert calls == ["cp(source='FinalReport.txt', destination='Archives')"]
    assert reason == "student_mismatch: wrote [cp(source='FinalReport.txt', destination='Archives')]"


def test_interrupted_bootstrap_resumes_to_the_same_dataset(tmp_path):
    cfg = config(tmp_path / "interrupted", limit=4)
    seen = []

    def ctrl_c_after_two(entry):
        seen.append(entry["task_id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_task=ctrl_c_after_two)
    assert len(read_shard(Path(cfg.out))) == 2
    resumed = run(cfg)
    straight = run(config(tmp_path / "straight", limit=4))
    assert resumed["tasks"] == straight["tasks"] == 4
    lines = (Path(cfg.out) / SHARD).read_text().splitlines()
    assert len(lines) == 4, "resuming must not duplicate tasks"
    for name in ("pag-train.parquet", "sft.parquet"):
        a = datasets.Dataset.from_parquet(str(Path(cfg.out) / name)).to_list()
        b = datasets.Dataset.from_parquet(str(tmp_path / "straight" / "pag" / name)).to_list()
        assert a == b


@pytest.mark.parametrize("listening, message", [(False, "Connection refused"), (True, "timed out")])
def test_an_unreachable_or_silent_teacher_is_retried_then_recorded_as_failed(tmp_path, monkeypatch, listening,
                                                                             message):
    monkeypatch.setenv("PARLMT_TEST_KEY", "local")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if listening:
            server.listen()  # the kernel accepts the connection; nobody ever answers
        port = server.getsockname()[1]
        cfg = config(tmp_path, teacher="openai/nobody-home", api_base=f"http://127.0.0.1:{port}/v1", limit=1,
                     api_key_env="PARLMT_TEST_KEY", retries=2, backoff_s=0.01, timeout_s=0.5)
        summary = run(cfg)
        entry = next(iter(read_shard(Path(cfg.out)).values()))
        assert summary["tasks_failed"] == 1 and entry["attempts"] == 2
        assert entry["error"].startswith("LMTransportError") and message in entry["error"]
        run(cfg)  # resuming does not retry or duplicate a recorded failure
    assert len((Path(cfg.out) / SHARD).read_text().splitlines()) == 1


def test_a_teacher_without_its_api_key_stops_the_run_instead_of_failing_every_task(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "pag"
    code = main(["optimize", "--teacher", "openai/nobody-home", "--api-base", "http://127.0.0.1:9/v1", "--limit",
                 "2", "--no-verify-student", "--retries", "1", "--out", str(out), "--mlruns", str(tmp_path / "ml")])
    error = capsys.readouterr().err
    assert code == 1 and "the teacher cannot be used" in error and "--api-key-env" in error
    assert not (out / SHARD).exists()


def test_a_bug_in_our_record_building_stops_the_run_and_keeps_the_shard(tmp_path, monkeypatch):
    import parlmt.optimize.pag as pag

    cfg = config(tmp_path, limit=2)
    run(config(tmp_path, limit=1))
    calls = []

    def broken(*args):
        calls.append(args)
        raise TypeError("a bug in building the records")

    monkeypatch.setattr(pag, "task_records", broken)
    with pytest.raises(TypeError, match="a bug in building the records"):
        run(cfg)
    assert len(calls) == 1, "our own bug is not retried"
    assert len(read_shard(Path(cfg.out))) == 1  # the task finished before the bug is kept
    monkeypatch.undo()
    assert run(cfg)["tasks"] == 2  # fixed: the same command resumes from the kept shard
    assert len((Path(cfg.out) / SHARD).read_text().splitlines()) == 2


def test_optimizer_path_runs_end_to_end_and_is_tracked_in_mlflow(tmp_path):
    cfg = config(tmp_path, teacher="scripted", optimizer="bootstrap", limit=1, dev_limit=1, max_steps_per_turn=2)
    summary = run(cfg, lm=wrong_teacher())
    assert summary["dev_turn_accuracy_before"] == summary["dev_turn_accuracy_after"] == 0.0
    assert (Path(cfg.out) / "program.json").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-optimize")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.data.params["optimizer"] == "bootstrap"
    assert mlflow_run.data.metrics["steps_accepted"] == 0 and mlflow_run.data.tags["stage"] == "optimize"
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"program.json", "dataset"} <= artifacts


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer": "mipro"}, "reference teacher has no prompts"),
    ({"split": "test"}, "never come from the test split"),
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"limit": 0}, "limit must be at least 1"),
    ({"categories": "base,bsae"}, "unknown task source 'bsae'; known sources: bfcl:base"),
])
def test_bad_configs_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(config(tmp_path, **overrides))
    assert not (tmp_path / "pag").exists()


def test_cli_and_optimize_py(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["optimize", "--limit", "1", "--no-verify-student", "--out", str(out),
                 "--mlruns", str(tmp_path / "ml")]) == 0
    assert f"dataset written to {out}" in capsys.readouterr().out
    assert json.loads((out / "stats.json").read_text())["tasks"] == 1
    assert main(["optimize", "--limit", "0", "--out", str(out)]) == 2
    assert "limit must be at least 1" in capsys.readouterr().err
    assert main(["optimize", "--split", "test"]) == 2
    assert "never come from the test split" in capsys.readouterr().err
    done = subprocess.run([sys.executable, str(REPO / "optimize.py"), "--help"], capture_output=True, text=True,
                          timeout=300)  # killed if it hangs; generous for a loaded machine
    assert done.returncode == 0 and "--teacher" in done.stdout


def test_student_check_accepts_matching_calls_from_a_scripted_student():
    check = StudentCheck(DummyLM([{"calls": "[cd(folder='document')]", "reply": ""}]))
    inputs = {"tools": "", "summary": "", "plan": "", "request": "go", "observations": "(none yet)"}
    assert check(inputs, ["cd(folder='document')"]) == (["cd(folder='document')"], None)
    wrong = StudentCheck(DummyLM([{"calls": "[ls()]", "reply": ""}]))
    assert wrong(inputs, ["cd(folder='document')"])[1] == "student_mismatch: wrote [ls()]"
    ahead = StudentCheck(DummyLM([{"calls": "[cd(folder='document'), ls()]", "reply": ""}] * 2))
    assert ahead(inputs, ["cd(folder='document')"])[1] is None  # the right call first, then more
    assert ahead(inputs, [])[1] == "student_mismatch: wrote [cd(folder='document'), ls()]"
