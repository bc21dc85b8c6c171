"""`parlmt experiment`: the stage plan of the variants and seeds, the configurations it refuses, and a
real run of two seeds of PAG-RL with and without SFT on the tiny model: one nested run per stage,
efficacy.json aggregating the seeds, the learning curves from RL's dev evaluation on the same states."""

import contextlib
import io
import json

import pytest
from mlflow.tracking import MlflowClient

from parlmt.cli import build_parser, main
from parlmt.envs import select_tasks
from parlmt.experiment import ExperimentConfig, config_from_args, plan
from parlmt.programs.metrics import state_turns, turn_states


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["experiment", *args])
    return code, out.getvalue(), err.getvalue()


def test_the_recipe_plans_every_variant_for_each_program_and_seed():
    config = ExperimentConfig(**{**ExperimentConfig.PRESETS["recipe"], "program": "fullhistory,progress"})
    stages = {stage.name: stage for stage in plan(config)}
    assert [name for name in stages if name.endswith("progress")] == [  # seed 0's names carry no seed
        "eval-base-progress", "data-progress", "sft-progress", "eval-sft-progress", "rl-progress", "eval-rl-progress",
        "rl-only-progress", "eval-rl-only-progress"]
    assert [name for name in stages if name.startswith("eval-") and name.endswith("-progress-s1")] == [
        "eval-sft-progress-s1", "eval-rl-progress-s1", "eval-rl-only-progress-s1"]
    assert len(stages) == 2 * (2 + 2 * 6)  # per program: base eval, data; per seed: sft, rl, rl-only and their evals
    assert stages["rl-fullhistory-s1"].source == "sft-fullhistory-s1" and stages["rl-fullhistory-s1"].seed == 1
    assert stages["rl-only-progress"].source is None  # PAG-RL without SFT starts from the base model
    assert stages["sft-progress"].source == "data-progress"
    assert stages["eval-rl-only-fullhistory"].variant == "rl"
    order = list(stages)
    assert all(order.index(stage.source) < order.index(name) for name, stage in stages.items() if stage.source)


def test_a_later_seed_runs_alone_under_the_names_it_has_in_a_longer_run():
    alone = plan(ExperimentConfig(first_seed=1))  # e.g. on a second machine
    both = plan(ExperimentConfig(seeds=2))
    assert [stage.name for stage in alone] == ["eval-base", "data", "sft-s1", "eval-sft-s1", "rl-s1", "eval-rl-s1"]
    assert all(stage in both for stage in alone)


def test_an_option_added_since_a_folder_started_counts_as_its_default(tmp_path):
    from parlmt.experiment import ExperimentError, _load_state

    config = ExperimentConfig(out=str(tmp_path))
    saved = config.settings()
    del saved["entry_limit"]  # a folder an older parlmt started
    (tmp_path / "state.json").write_text(json.dumps({"settings": saved, "stages": {}}))
    assert _load_state(tmp_path, config)["settings"] == saved
    with pytest.raises(ExperimentError, match=r"other settings \(entry_limit\).*--restart"):
        _load_state(tmp_path, ExperimentConfig(out=str(tmp_path), entry_limit=3))
    # more variants and seeds add stages: the finished ones stay valid
    assert _load_state(tmp_path, ExperimentConfig(out=str(tmp_path), variants="sft,sft+rl,rl", seeds=3))


@pytest.mark.parametrize("options, message", [
    (["--variants", "sft,dpo"], "unknown variant(s) dpo; choose from sft, sft+rl, rl"),
    (["--seeds", "0"], "seeds must be at least 1"),
    (["--first-seed", "-1"], "first_seed must be 0 or more"),
    (["--rl-generations", "1"], "rl_generations must be at least 2"),
    (["--rl-states-per-step", "0"], "rl_states_per_step must be at least 1"),
    (["--program", "fullhistory,react"], "react"),
    (["--rl-reward-weights", "turns=1"], "unknown reward term 'turns'"),
])
def test_a_broken_configuration_is_refused_before_anything_runs(tmp_path, options, message):
    code, _, stderr = run_cli("--out", str(tmp_path / "x"), *options)
    assert code == 2 and message in stderr
    assert not (tmp_path / "x").exists()


def test_none_unsets_an_option_whose_default_is_set(capsys):
    def config(*options: str) -> ExperimentConfig:
        return config_from_args(build_parser().parse_args(["experiment", *options]))

    assert config().states_per_entry == 1 and config().rl_reward_weights == "format=0,efficiency=0"
    unset = config("--states-per-entry", "none", "--rl-reward-weights", "None")
    assert unset.states_per_entry is None and unset.rl_reward_weights is None  # every turn; every default weight
    assert config("--states-per-entry", "3").states_per_entry == 3
    with pytest.raises(SystemExit):
        config("--states-per-entry", "all")
    assert "argument --states-per-entry: invalid int value: 'all'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config("--help")
    assert "unset: every turn. (default: 1; none unsets it)" in " ".join(capsys.readouterr().out.split())


def test_rl_dev_evaluation_plays_the_experiment_states():
    # RL's dev evaluation picks its states with state_turns, as every evaluation's turn_states does
    tasks = select_tasks("base", "dev", 6)
    states = turn_states(tasks, 1)
    assert [(s.meta["state_of"], s.start) for s in states] == [(t.id, turn) for t in tasks for turn in
                                                               state_turns(t, 1)]
    assert len({s.start for s in states}) > 1  # the hash spreads the turns
    with pytest.raises(ValueError, match="at least 1"):
        state_turns(tasks[0], 0)


@pytest.mark.slow
def test_two_seeds_of_rl_with_and_without_sft(tiny_model_dir, tmp_path):
    def run(variants: str, seeds: int) -> tuple[str, dict]:
        code, stdout, stderr = run_cli(
            "--preset", "quick", "--variants", variants, "--seeds", str(seeds), "--rl-eval-steps", "1",
            "--rl-generations", "3", "--dev-limit", "1", "--entry-limit", "1", "--max-tokens", "16",
            "--max-steps-per-turn", "1", "--train-limit", "2",
            "--model", str(tiny_model_dir), "--out", str(tmp_path / "exp"), "--mlruns", str(tmp_path / "mlruns"),
            "--experiment", "exp")
        assert code == 0, stderr[-3000:]
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
        experiment_id = client.get_experiment_by_name("exp").experiment_id
        return stdout, client, {run.info.run_name: run for run in client.search_runs([experiment_id])}

    _, _, before = run("sft+rl", 1)
    assert "rl-only" not in before and "sft-s1" not in before
    # the same folder with one more variant and one more seed: only their stages run, the finished ones are kept
    stdout, client, runs = run("sft+rl,rl", 2)
    assert all(runs[name].info.run_id == finished.info.run_id for name, finished in before.items())
    parent = runs.pop("exp")
    assert parent.data.tags["variants"] == "sft+rl,rl"
    names = ["eval-base", "data"] + [kind + ("-s1" if seed else "") for seed in (0, 1)
                                     for kind in ("sft", "rl", "eval-rl", "rl-only", "eval-rl-only")]
    evals = [name for name in names if name.startswith("eval-")]
    assert sorted(runs) == sorted(names + [f"{name}-entries" for name in evals])  # each also plays 1 entry whole
    for name in evals:
        entries = runs[f"{name}-entries"].data
        assert entries.params["replayed_turns"] == "False" and entries.metrics["episodes"] == 1
        assert parent.data.metrics[f"{name}/entry_accuracy"] == entries.metrics["accuracy"]
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in runs.values())
    assert runs["rl-s1"].data.tags["adapter"].endswith("sft-s1/adapter") and not runs["rl-only"].data.tags.get(
        "adapter")
    assert runs["rl-only-s1"].data.params["seed"] == "1"
    assert {runs[name].data.params["num_generations"] for name in ("rl", "rl-only-s1")} == {"3"}
    results = json.loads((tmp_path / "exp" / "efficacy.json").read_text())
    assert list(results["results"]) == ["fullhistory/base", "fullhistory/sft+rl", "fullhistory/rl"]
    for variant in ("sft+rl", "rl"):
        entry = results["results"][f"fullhistory/{variant}"]
        accuracy = [runs[seed["stage"]].data.metrics["accuracy"] for seed in entry["seeds"]]
        assert [seed["seed"] for seed in entry["seeds"]] == [0, 1]
        assert entry["accuracy_mean"] == pytest.approx(sum(accuracy) / 2)
        assert entry["accuracy_min"] == min(accuracy) and entry["accuracy_max"] == max(accuracy)
        if variant == "rl":  # RL's own gain: paired against the adapter it started from (the base), same states
            for seed, after in zip(entry["seeds"], accuracy, strict=True):
                assert seed["rl_start"] == "eval-base"
                assert seed["rl_gain"] == pytest.approx(after - runs["eval-base"].data.metrics["accuracy"])
                assert seed["rl_gain_low"] <= seed["rl_gain"] <= seed["rl_gain_high"]
            # both seeds' states in one interval; as many states each, so the gain is the seeds' mean
            assert entry["rl_gain_pooled"] == pytest.approx(entry["rl_gain_mean"])
            assert entry["rl_gain_pooled_low"] <= entry["rl_gain_pooled"] <= entry["rl_gain_pooled_high"]
        else:  # no `sft` variant, so no evaluation of the SFT adapter to pair with
            assert "rl_gain" not in entry["seeds"][0]
        passed = [seed["passed"] for seed in entry["seeds"]]  # every state's outcome
        assert [sum(p.values()) / len(p) for p in passed] == pytest.approx(accuracy)
        entry_accuracy = [runs[f"{seed['stage']}-entries"].data.metrics["accuracy"] for seed in entry["seeds"]]
        assert entry["entry_accuracy_mean"] == pytest.approx(sum(entry_accuracy) / 2)
    # each RL curve: the start (base student), RL's own dev evaluation after step 1, the final evaluation
    base = runs["eval-base"].data.metrics["accuracy"]
    for name in ("rl-only", "rl-only-s1"):
        (start, during, end) = results["learning_curves"][name]
        dev = client.get_metric_history(runs[name].info.run_id, "dev/accuracy")
        assert start == [0, base] and during == [1, dev[0].value]
        assert end == [1, runs[f"eval-{name}"].data.metrics["accuracy"]]
    assert "eval-rl-only-s1" in stdout and (tmp_path / "exp" / "learning_curve.png").stat().st_size > 0
