"""Episodes that start at turn k (earlier turns replayed from the ground truth) and the replayed-turn
evaluation built on them, scored by the official BFCL checker."""

import dspy
import pytest
from dspy.utils import DummyLM

from parlmt.cli import main
from parlmt.envs import CATEGORIES, Task, load_task, load_tasks, make_env
from parlmt.envs.base import EMPTY_TURN, STATE_MISMATCH
from parlmt.programs import FullHistoryAgent
from parlmt.programs.evaluate import bfcl_results, run_episodes
from parlmt.programs.metrics import accuracy_interval, aggregate, paired_gain, pooled_paired_gain, turn_states
from parlmt.programs.oracle import oracle_program
from parlmt.programs.trajectory import ModuleCall, Trajectory
from parlmt.rl.rollout import tag_samples

WRONG = {"calls": "[mkdir(dir_name='wrong_place')]", "reply": ""}
REPLY = {"calls": "[]", "reply": "Done."}


def play(state, answers: list[dict], max_steps_per_turn: int = 4) -> Trajectory:
    with dspy.context(lm=DummyLM(answers)):
        return FullHistoryAgent(max_steps_per_turn=max_steps_per_turn)(task=state).trajectory


def test_a_state_replays_the_earlier_turns_into_the_transcript_and_scores_only_its_own():
    task = load_task("bfcl:base:7")
    state = task.from_turn(2, turns=1)
    assert (state.id, state.start, len(state.turns), state.meta["state_of"]) == ("bfcl:base:7@2", 2, 3, task.id)
    trajectory = play(state, [REPLY])
    assert [(t.turn, t.replayed, t.passed) for t in trajectory.turns] == [(0, True, None), (1, True, None),
                                                                        (2, False, False)]
    assert trajectory.error_type == EMPTY_TURN  # the official checker's verdict on the played turn
    assert trajectory.executed[:2] == [[["cd(folder='academic_venture')", "mkdir(dir_name='academic_hub')"]],
                                       [["find(path='.', name='goal')"]]]
    transcript = trajectory.module_calls[0].inputs["summary"]  # what Act read: both turns, calls and results
    assert transcript.count("Call: ") == 3 and transcript.count("Assistant: Done: every step") == 2
    assert trajectory.turn_accuracy == 0.0  # replayed turns are not scored
    assert len(trajectory.module_calls) == 1  # replaying costs no LM call


def test_the_official_checker_passes_every_dev_state_played_by_the_oracle():
    for category in CATEGORIES:
        tasks = load_tasks(category, split="dev")[:4]
        states = turn_states(tasks)
        assert len(states) == sum(len(t.turns) for t in tasks)
        trajectories = []
        for state in states:
            env = make_env(state)
            trajectories.append(oracle_program("progress", env)(task=env).trajectory)
        figures = aggregate(trajectories)
        assert (figures["accuracy"], figures["accuracy_low"], figures["accuracy_high"]) == (1.0, 1.0, 1.0), category
        assert (figures["episodes"], figures["entries"]) == (len(states), 4)


def test_a_wrong_call_fails_its_state_and_a_turn_that_cannot_be_done_passes_whatever_is_called():
    task = load_task("bfcl:miss_param:7")  # turn 1 lacks a parameter: its ground truth is empty
    wrong = play(task.from_turn(2, turns=1), [WRONG, REPLY])
    assert (wrong.passed, wrong.error_type) == (False, STATE_MISMATCH)
    assert play(task.from_turn(1, turns=1), [REPLY]).passed is True
    # BFCL's checker skips a turn whose ground truth is empty (multi_turn_checker: "the turn where the model
    # should eventually fail"), so such a state passes even with a wrong call: states of miss_func/miss_param
    # include these free turns, counted in their figures.
    assert play(task.from_turn(1, turns=1), [WRONG, REPLY]).passed is True


def test_states_run_and_resume_like_tasks_and_stay_out_of_bfcl_result_files(tmp_path):
    states = turn_states([load_task("bfcl:base:7")])
    out = tmp_path / "states.jsonl"
    first = run_episodes(FullHistoryAgent(max_steps_per_turn=2), states[:2], DummyLM([REPLY] * 10), out)
    again = run_episodes(FullHistoryAgent(max_steps_per_turn=2), states, DummyLM([REPLY] * 10), out)
    assert [t.task_id for t in again] == ["bfcl:base:7@0", "bfcl:base:7@1", "bfcl:base:7@2"]
    assert again[:2] == first  # read back from the file, not played again
    assert bfcl_results(again) == {}


def test_accuracy_interval_resamples_whole_entries():
    def episode(entry: str, turn: int, passed: bool) -> Trajectory:
        return Trajectory(f"{entry}@{turn}", "progress", meta={"state_of": entry}, passed=passed)

    strong = [episode("a", turn, True) for turn in range(3)]
    assert accuracy_interval(strong) == (1.0, 1.0)
    mixed = strong + [episode("b", 0, False)]
    # two entries: a resample holds a's three states, b's one, or both (0.75): both ends are reachable
    assert accuracy_interval(mixed) == (0.0, 1.0)
    assert aggregate(mixed)["accuracy"] == 0.75 and aggregate(mixed)["entries"] == 2
    many = [episode(f"e{i}", 0, i % 2 == 0) for i in range(40)]
    low, high = accuracy_interval(many)
    assert 0.3 < low < 0.5 < high < 0.7


def test_bad_states_are_refused_with_the_reason():
    task = load_task("bfcl:base:7")
    with pytest.raises(ValueError, match="has 3 turns, no turn 3"):
        task.from_turn(3)
    with pytest.raises(ValueError, match="already starts at turn 1"):
        task.from_turn(1).from_turn(2)
    with pytest.raises(ValueError, match="at least one turn"):
        task.from_turn(1, turns=0)
    unscored = Task(id="free", turns=("a", "b"), tools=())
    with pytest.raises(ValueError, match="no ground truth to replay"):
        unscored.from_turn(1)


def test_rollout_samples_must_line_up_with_module_calls():
    class Sample:
        def __init__(self):
            self.tags = {}

    trajectory = Trajectory("t", "progress", module_calls=[ModuleCall("plan", 1, 0, {}, {}),
                                                           ModuleCall("act", 1, 0, {}, {}),
                                                           ModuleCall("act", 1, 1, {}, {})])
    samples = tag_samples([Sample(), Sample(), Sample()], trajectory)
    assert [s.tags for s in samples] == [{"module": "plan", "turn": 1, "index": 0},
                                        {"module": "act", "turn": 1, "index": 0},
                                        {"module": "act", "turn": 1, "index": 1}]
    with pytest.raises(RuntimeError, match="2 LM samples for 3 module calls"):
        tag_samples([Sample(), Sample()], trajectory)


@pytest.mark.slow
def test_parlmt_eval_replayed_turns_prints_states_entries_and_an_interval(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "states.jsonl"
    args = ["eval", "--lm", str(tiny_model_dir), "--program", "fullhistory", "--tasks", "bfcl:base:7",
            "--replayed-turns", "--max-steps-per-turn", "1", "--max-tokens", "4", "--out", str(out),
            "--mlruns", str(tmp_path / "mlruns"), "--no-progress", "--no-traces"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "replayed-turn accuracy" in printed
    row = next(line.split() for line in printed.splitlines() if line.startswith("all"))
    assert row[1:3] == ["3", "1"]  # three states of one entry
    assert main([a for a in args if a != "--replayed-turns"]) == 1  # whole episodes into a file of states: refused


def test_states_per_entry_keeps_hash_chosen_turns_of_every_entry():
    tasks = load_tasks("base", split="dev")
    one = turn_states(tasks, per_entry=1)
    assert [state.meta["state_of"] for state in one] == [task.id for task in tasks]
    assert [s.id for s in one] == [s.id for s in turn_states(tasks, per_entry=1)]  # fixed: the same every run
    assert len({state.start for state in one}) > 2  # not always the first turn
    two = turn_states(tasks, per_entry=2)
    assert {s.id for s in one} < {s.id for s in two} and len(two) == 2 * len(tasks)
    assert [s.id for s in turn_states(tasks, per_entry=99)] == [s.id for s in turn_states(tasks)]
    with pytest.raises(ValueError, match="at least 1"):
        turn_states(tasks, per_entry=0)


def outcomes(passed: dict[str, bool]) -> list[Trajectory]:
    return [Trajectory(task_id=state, program="fullhistory", meta={"state_of": state.split("@")[0]}, passed=ok)
            for state, ok in passed.items()]


def test_the_paired_gain_compares_the_same_states_and_its_interval_holds_it():
    base = outcomes({"a@0": False, "a@1": True, "b@0": False, "c@0": False, "d@0": False})
    trained = outcomes({"a@0": True, "a@1": True, "b@0": True, "c@0": False, "d@0": True})
    gain, low, high = paired_gain(base, trained)
    assert gain == pytest.approx(3 / 5)
    assert 0 < low <= gain <= high <= 1  # every entry gains or stays: the whole interval is a gain
    assert paired_gain(trained, trained) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same episodes"):
        paired_gain(base, trained[:-1])


def test_a_pooled_paired_gain_draws_each_entry_with_its_states_of_every_seed():
    base = outcomes({"a@0": False, "a@1": True, "b@0": False, "c@0": False, "d@0": False})
    seeds = [outcomes({"a@0": True, "a@1": True, "b@0": True, "c@0": False, "d@0": True}),
             outcomes({"a@0": False, "a@1": True, "b@0": True, "c@0": True, "d@0": False})]
    gain, low, high = pooled_paired_gain([(base, trained) for trained in seeds])
    assert gain == pytest.approx((3 / 5 + 2 / 5) / 2)  # equal state counts: the mean of the seeds' gains
    assert 0 < low <= gain <= high <= 1
    assert pooled_paired_gain([(base, seeds[0])]) == paired_gain(base, seeds[0])
    with pytest.raises(ValueError, match="same episodes"):
        pooled_paired_gain([(base, seeds[0]), (base, seeds[1][:-1])])
