"""rl/cli.py: config options from the dataclass fields, presets with explicit overrides, and the
``train data`` command writing a PAG dataset that loads back."""

import argparse
import dataclasses

import pytest

from parlmt.rl import cli as rl_cli
from parlmt.rl.config import DataConfig, PAGRLConfig, SFTWarmupConfig
from parlmt.rl.data import load_pag_dataset


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parlmt")
    rl_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_preset_then_explicit_options():
    args = parse(["train", "rl", "--preset", "cpu-smoke", "--program", "fullhistory", "--max-steps", "7",
                  "--reward-weights", "turn=2.5, plan=0.3", "--no-gradient-checkpointing"])
    config = rl_cli.config_from_args(PAGRLConfig, args)
    assert config.program == "fullhistory" and config.max_steps == 7
    assert config.weights() == {"format": 0.2, "calls": 0.5, "turn": 2.5, "episode": 0.5, "efficiency": 0.2,
                                "quit": 0.2, "capped": 1.0, "plan": 0.3}
    assert config.reward_weights == ("format=0.2,calls=0.5,turn=2.5,episode=0.5,efficiency=0.2,quit=0.2,capped=1,"
                                     "plan=0.3")
    for bad, message in (("turns=1", "unknown reward term 'turns'; the terms are format, calls"),
                         ("turn=high", "'turn=high' is not name=number")):
        with pytest.raises(ValueError, match=message):
            rl_cli.config_from_args(PAGRLConfig, parse(["train", "rl", "--reward-weights", bad]))
    assert config.num_generations == PAGRLConfig.PRESETS["cpu-smoke"]["num_generations"]
    assert config.limit == 8  # the preset's; --limit overrides it
    given = parse(["train", "rl", "--preset", "cpu-smoke", "--limit", "3"])
    assert rl_cli.config_from_args(PAGRLConfig, given).limit == 3
    assert config.adapter is None  # no --adapter: the "w/o PAG" ablation (no SFT warm-up)
    assert rl_cli.config_from_args(PAGRLConfig, parse(["train", "rl"])) == PAGRLConfig()
    sft = rl_cli.config_from_args(SFTWarmupConfig, parse(["train", "sft", "--preset", "gpu", "--dataset", "d"]))
    assert sft.device == "cuda" and sft.dataset == "d"


def test_every_field_is_an_option_with_its_doc(capsys):
    with pytest.raises(SystemExit):
        parse(["train", "rl", "--help"])
    text = capsys.readouterr().out
    assert "--num-generations" in text and "rollouts per state" in text and "cpu-smoke" in text
    with pytest.raises(SystemExit):
        parse(["train", "data", "--help"])
    text = capsys.readouterr().out
    assert all(f"--{item.name.replace('_', '-')}" in text for item in dataclasses.fields(DataConfig))
    assert "Share of the Act reply rows kept" in text and "Awareness refresh" in text


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="program"):
        rl_cli.config_from_args(PAGRLConfig, parse(["train", "rl", "--program", "other"]))
    with pytest.raises(ValueError, match="preset"):
        PAGRLConfig.from_preset("tpu")


def test_train_data_writes_a_pag_dataset(tmp_path, capsys):
    out = tmp_path / "pag.jsonl"
    args = parse(["train", "data", "--out", str(out), "--categories", "py:todo", "--modules", "act"])
    assert args.func(args) == 0
    dataset = load_pag_dataset(out)
    assert set(dataset["module"]) == {"act"} and "rows from 4 tasks" in capsys.readouterr().out

    brief = tmp_path / "calls.jsonl"
    args = parse(["train", "data", "--out", str(brief), "--categories", "py:todo", "--modules", "act",
                  "--replies", "0", "--tool-docs", "brief"])
    assert args.func(args) == 0
    calls = load_pag_dataset(brief)
    full = [row for row in dataset if not row["completion"][0]["content"].startswith("[[ ## calls ## ]]\n[]")]
    assert len(calls) == len(full) < len(dataset)
    for short, long in zip(calls, full, strict=True):
        assert (short["task_id"], short["turn"]) == (long["task_id"], long["turn"])
        assert short["completion"] == long["completion"]
        assert len(short["prompt"][1]["content"]) < len(long["prompt"][1]["content"])


def test_train_data_refuses_bad_values_before_playing_a_task(tmp_path, capsys):
    out = tmp_path / "pag.jsonl"
    for options, message in ((["--program", "other"], "program must be one of progress, fullhistory, got 'other'"),
                             (["--modules", "plan,reflect"], "the progress program has no module reflect"),
                             (["--replies", "1.5"], "replies is a share of the reply rows, between 0 and 1"),
                             (["--refresh", "often"], "refresh must be 'turn' or 'step'"),
                             (["--program", "fullhistory", "--refresh", "step"],
                              "refresh='step' is an option of the progress program; fullhistory has no summary"),
                             (["--categories", "base,bsae"], "unknown task source 'bsae'"),
                             (["--split", "val"], "unknown split 'val'")):
        args = parse(["train", "data", "--out", str(out), *options])
        assert args.func(args) == 2
        assert f"error: {message}" in capsys.readouterr().err
    args = parse(["train", "data"])
    assert args.func(args) == 2 and "error: --out is required" in capsys.readouterr().err
    assert not out.exists()
