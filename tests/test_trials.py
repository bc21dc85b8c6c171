"""Trials (every task played k times, each an episode of its own) and tau2's pass^k over them."""

import pytest

from parlmt.envs import Task
from parlmt.programs.metrics import aggregate, entry_of, pass_hat, pass_hat_k, trials
from parlmt.programs.trajectory import Trajectory


def test_pass_hat_k_exact_values():
    # one task 2 of 4 trials, one 4 of 4, one 0 of 4
    outcomes = [[True, False, True, False], [True] * 4, [False] * 4]
    assert pass_hat_k(outcomes, 1) == pytest.approx((2 / 4 + 1 + 0) / 3)
    assert pass_hat_k(outcomes, 2) == pytest.approx((1 / 6 + 1 + 0) / 3)  # C(2,2)/C(4,2)
    assert pass_hat_k(outcomes, 3) == pytest.approx((0 + 1 + 0) / 3)  # C(2,3) = 0
    assert pass_hat_k(outcomes, 4) == pytest.approx(1 / 3)
    assert pass_hat_k([[True, True, False]], 2) == pytest.approx(1 / 3)  # C(2,2)/C(3,2)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="at least k trials"):
            pass_hat_k(outcomes, bad)
    with pytest.raises(ValueError):
        pass_hat_k([], 1)


def test_trials_are_tasks_of_their_own():
    tasks = [Task(f"py:t:{i}", ("hi",), (), meta={"source": "t"}) for i in range(2)]
    assert trials(tasks, 1) == tasks  # one trial: the ids of earlier runs, so their files resume
    played = trials(tasks, 3)
    assert [t.id for t in played] == ["py:t:0#0", "py:t:0#1", "py:t:0#2", "py:t:1#0", "py:t:1#1", "py:t:1#2"]
    assert {t.meta["trial_of"] for t in played} == {"py:t:0", "py:t:1"} and "trial_of" not in tasks[0].meta
    with pytest.raises(ValueError, match="at least 1"):
        trials(tasks, 0)


def test_aggregate_reports_pass_hat_over_trials_and_groups_them_as_one_entry():
    def episode(task: str, trial: int, passed: bool) -> Trajectory:
        return Trajectory(f"{task}#{trial}", "p", meta={"trial_of": task}, passed=passed)

    episodes = [episode("a", 0, True), episode("a", 1, False), episode("b", 0, True), episode("b", 1, True)]
    figures = aggregate(episodes)
    assert figures["pass_hat_1"] == figures["accuracy"] == 0.75
    assert figures["pass_hat_2"] == 0.5 and "pass_hat_3" not in figures
    assert figures["entries"] == 2 and entry_of(episodes[1]) == "a"
    assert pass_hat([Trajectory("a", "p", passed=True)]) == {}  # no trials, no pass^k
    assert "pass_hat_1" not in aggregate([Trajectory("a", "p", passed=True)])
