"""rl/rewards.py and rl/advantages.py: each reward term on hand-made turns played in the real
environments (right call, wrong argument, hidden function, redundant call, unparseable output), and
group-relative advantages on a constructed batch."""

import pytest

from parlmt.envs import make_env
from parlmt.rl.advantages import group_advantages, zero_spread_share
from parlmt.rl.rewards import (
    REWARD_TERMS,
    StepOutcome,
    TurnOutcome,
    call_correctness,
    composite,
    efficiency,
    episode_success,
    format_validity,
    plan_coverage,
    reward_terms,
    reward_weights,
    turn_success,
)

RIGHT = "[add_item(title='buy milk', tags=['home'])]"


def played(task_id: str, *outputs: str) -> TurnOutcome:
    """Turn 0 of ``task_id`` played in the real environment with these Act outputs, one step each."""
    env = make_env(task_id)
    steps = []
    for text in outputs:
        env.step(text)
        results = env.trajectory[-1].results
        if results[0].error == "parse":
            steps.append(StepOutcome(format_error=results[0].observation))
        else:
            steps.append(StepOutcome(tuple(r.call for r in results), tuple(r.error for r in results)))
    truth = tuple(call.canonical() for call in env.ground_truth(0))
    env.next_turn()
    return TurnOutcome(tuple(steps), truth, env.score_turn(0).passed, env.score_episode().passed)


def test_right_call_scores_full_marks():
    terms = reward_terms(played("py:todo:0", RIGHT))
    assert terms == {"format": 1.0, "calls": 1.0, "turn": 1.0, "episode": 0.0, "efficiency": 0.0, "quit": 0.0,
                     "capped": 0.0, "plan": None}
    # the episode check covers every turn: turn 1 was not played, so only a cut episode passes
    assert episode_success(TurnOutcome((), (), True, True)) == 1.0


def test_wrong_argument_keeps_format_loses_correctness_and_success():
    outcome = played("py:todo:0", "[add_item(title='buy bread', tags=['home'])]")
    assert format_validity(outcome) == 1.0
    assert call_correctness(outcome) == pytest.approx(0.5)  # right function, one of two arguments right
    assert turn_success(outcome) == 0.0
    assert efficiency(outcome) == 0.0


def test_hidden_function_is_a_format_error():
    # BFCL miss_func 0 reveals `sort` only at turn 3; calling it at turn 0 is refused as if unknown.
    outcome = played("bfcl:miss_func:0", "[cd(folder='document'), sort(file_name='final_report.pdf')]")
    assert outcome.steps[0].errors == (None, "hidden_function")
    assert format_validity(outcome) == 0.5
    assert 0 < call_correctness(outcome) < 1
    assert turn_success(outcome) == 0.0


def test_redundant_call_is_penalised():
    once, twice = played("py:todo:0", RIGHT), played("py:todo:0", RIGHT, RIGHT)
    assert efficiency(once) == 0.0
    assert efficiency(twice) == -1.0  # one repeat against a single ground-truth call
    assert call_correctness(twice) == pytest.approx(2 / 3)  # precision 1/2, recall 1
    assert turn_success(twice) == 0.0  # the state now holds two items


def test_unparseable_output():
    outcome = played("py:todo:0", "[add_item(title='buy milk'")
    assert outcome.steps[0].format_error
    assert reward_terms(outcome) == {"format": 0.0, "calls": 0.0, "turn": 0.0, "episode": 0.0, "efficiency": 0.0,
                                     "quit": -1.0, "capped": 0.0, "plan": None}


def test_no_calls_when_none_are_expected():
    outcome = TurnOutcome((StepOutcome(),), (), passed=True, episode_passed=True)
    assert call_correctness(outcome) == 1.0 and format_validity(outcome) == 1.0
    wrong = TurnOutcome((StepOutcome(("list_items()",), (None,)),), (), passed=True, episode_passed=True)
    assert call_correctness(wrong) == 0.0 and efficiency(wrong) == -1.0


def test_composite_weights_every_term():
    outcome = played("py:todo:0", RIGHT)
    terms = reward_terms(outcome)
    assert set(terms) == set(REWARD_TERMS) and terms["plan"] is None  # a Plan sample's term; this is the turn
    weights = reward_weights()
    assert composite(terms, weights) == pytest.approx(0.2 + 0.5 + 1.0)
    plan = reward_terms(outcome, "plan", "1. add_item(title='buy milk', tags=['home'])")
    assert plan["plan"] == 1.0 and {k: v for k, v in plan.items() if k != "plan"} == {
        k: v for k, v in terms.items() if k != "plan"}
    assert composite(plan, reward_weights("plan=0.5")) == pytest.approx(0.2 + 0.5 + 1.0 + 0.5)
    assert reward_terms(outcome, "act", RIGHT)["plan"] is None
    with pytest.raises(ValueError, match="differ"):  # a term without a weight is an error, never a silent 0
        composite(terms, {name: 1.0 for name in terms if name != "efficiency"})


def test_plan_coverage_is_the_share_of_the_turns_functions_the_plan_names():
    truth = ("cd(folder='a')", "cd(folder='b')", "mv(source='x', destination='y')")
    outcome = TurnOutcome((), truth, passed=False, episode_passed=False)
    assert plan_coverage(outcome, "1. cd into a, then b\n2. mv x to y") == 1.0
    assert plan_coverage(outcome, "1. change directory\n2. move: mv x y") == 0.5
    assert plan_coverage(outcome, "1. abcd, then mvx") == 0.0  # a name inside another word does not count
    assert plan_coverage(TurnOutcome((), (), passed=True, episode_passed=True), "anything") == 1.0


def test_advantages_group_by_module_call_across_rollouts():
    # Two states; state A has 3 rollouts, of which only rollout 2 made a second Act call.
    keys = [
        ("A", 0, 0, "plan", 0), ("A", 0, 0, "act", 0),                            # rollout a1
        ("A", 0, 0, "plan", 0), ("A", 0, 0, "act", 0),                            # rollout a2
        ("A", 0, 0, "plan", 0), ("A", 0, 0, "act", 0), ("A", 0, 0, "act", 1),     # rollout a3
        ("B", 1, 1, "act", 0), ("B", 1, 1, "act", 0),                             # b1, b2
    ]
    rollouts = ["a1", "a1", "a2", "a2", "a3", "a3", "a3", "b1", "b2"]
    rewards = [1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 2.0, 2.0]
    advantages = group_advantages(keys, rollouts, rewards)
    # leave-one-out: a1 against mean(a2, a3) = 0.25; a2 against 0.75; a3 against 0.5
    assert advantages[:6] == pytest.approx([0.75, 0.75, -0.75, -0.75, 0.0, 0.0])
    # the lone second Act call falls back to its turn: a3 against mean(a1, a2) = 0.5
    assert advantages[6] == pytest.approx(0.0)
    assert advantages[7:] == [0.0, 0.0]  # equal rewards: no signal
    # without the fallback the singleton gets 0; rewards 1 vs 0.5 would otherwise differ
    rewards[6] = 1.5
    assert group_advantages(keys, rollouts, rewards)[6] == pytest.approx(1.0)
    assert group_advantages(keys, rollouts, rewards, fallback=0)[6] == 0.0
    assert zero_spread_share(keys, rollouts, rewards) == pytest.approx(1 / 3)  # plan, act#0 differ; B does not


def test_advantages_never_compare_a_rollout_with_itself_and_can_scale():
    keys = [("A", 0, 0, "act", 0)] * 2 + [("A", 0, 0, "act", 0)]
    assert group_advantages(keys, ["r1", "r1", "r2"], [1.0, 1.0, 0.0]) == pytest.approx([1.0, 1.0, -1.0])
    assert group_advantages(keys[:1], ["r1"], [3.0]) == [0.0]
    scaled = group_advantages(keys, ["r1", "r1", "r2"], [1.0, 1.0, 0.0], scale=True)
    assert scaled[0] == pytest.approx(1.0 / (0.5 + 1e-4))
    with pytest.raises(ValueError):
        group_advantages(keys, ["r1"], [1.0])
