"""One step cap: the program's ``max_steps_per_turn`` and the environment's ``max_steps_per_turn`` count
steps as BFCL does, and an environment that would cut the program short is refused up front."""

import dspy
import pytest
from dspy.utils import DummyLM

from parlmt.envs import make_env
from parlmt.programs import FullHistoryAgent, ProgressAwareAgent

# bfcl:base:3: find the test files, then copy them (cd, cd, then both cp in one step).
BASE3 = [["[find(path='.', name='test')]"],
         ["[cd(folder='projects')]", "[cd(folder='photography')]",
          "[cp(source='test_image1.jpg', destination='backup_tests'), "
          "cp(source='test_document.txt', destination='backup_tests')]"]]


def play(steps: list[list[str]], max_steps_per_turn: int, task="bfcl:base:3"):
    """The full-history agent's trajectory when its Act writes ``steps`` (per turn), then replies."""
    answers = []
    for turn in steps:
        answers += [{"calls": text, "reply": ""} for text in turn] + [{"calls": "[]", "reply": "Done."}]
    with dspy.context(lm=DummyLM(answers)):
        return FullHistoryAgent(max_steps_per_turn=max_steps_per_turn)(task=task).trajectory


@pytest.mark.parametrize("agent", [FullHistoryAgent, ProgressAwareAgent])
def test_an_env_with_a_lower_cap_than_the_program_is_refused_before_the_run(agent):
    env = make_env("bfcl:base:3", max_steps_per_turn=2)
    with dspy.context(lm=DummyLM([])), pytest.raises(ValueError) as error:  # no LM call may happen
        agent(max_steps_per_turn=5)(task=env)
    assert "allows 2 steps per turn but the program takes up to 5" in str(error.value)
    assert "make_env(task, max_steps_per_turn=5)" in str(error.value) and "max_steps_per_turn=2" in str(error.value)


def test_the_reply_does_not_count_and_the_step_past_the_cap_runs_then_ends_the_episode():
    two_steps = [BASE3[0], [BASE3[1][0], BASE3[1][1][:-1] + ", " + BASE3[1][2][1:]]]
    replied = play(two_steps, max_steps_per_turn=2)  # two steps with calls, then the reply as the third
    assert not replied.turns[1].capped and replied.turns[1].reply == "Done." and replied.passed

    capped = play(BASE3, max_steps_per_turn=2)  # a third step with calls: it runs, then the model is force-quit
    assert capped.turns[1].capped and capped.turns[1].reply is None
    assert capped.executed[1] == [["cd(folder='projects')"], ["cd(folder='photography')"],
                                  ["cp(source='test_image1.jpg', destination='backup_tests')",
                                   "cp(source='test_document.txt', destination='backup_tests')"]]
    assert capped.passed  # in the last turn: scored like any other turn, as BFCL's checker does

    early = play([BASE3[0] * 3], max_steps_per_turn=2)
    assert len(early.turns) == 1 and early.turns[0].capped
    assert early.passed is False and early.error_type == "multi_turn:force_terminated"


def test_an_env_with_a_higher_cap_leaves_the_cap_to_the_program():
    env = make_env("bfcl:base:3", max_steps_per_turn=20)
    answers = [{"calls": "[find(path='.', name='test')]", "reply": ""}] * 2
    with dspy.context(lm=DummyLM(answers)):
        trajectory = FullHistoryAgent(max_steps_per_turn=1)(task=env).trajectory
    assert len(trajectory.steps) == 2 and trajectory.turns[0].capped
    assert trajectory.error_type == "multi_turn:force_terminated"


def test_a_replayed_state_cut_at_the_cap_passes_on_its_state_but_not_as_an_ended_turn():
    from parlmt.envs import load_task
    from parlmt.programs.metrics import aggregate, turn_states

    state = turn_states([load_task("bfcl:base:3")])[0]  # turn 0 of 2, played alone
    ended = play([BASE3[0]], max_steps_per_turn=2, task=state)
    capped = play([BASE3[0] * 3], max_steps_per_turn=2, task=state)  # never replies: an official run quits here
    assert ended.passed and capped.passed and capped.turns[0].capped and not ended.turns[0].capped
    assert aggregate([ended])["accuracy_ended"] == 1.0 and aggregate([capped])["accuracy_ended"] == 0.0
    figures = aggregate([ended, capped])
    assert figures["accuracy"] == 1.0 and figures["accuracy_ended"] == 0.5 and figures["turns_capped"] == 0.5


def test_the_capped_reward_term_charges_a_turn_cut_at_the_cap_and_spares_one_that_ended():
    from parlmt.envs import load_task
    from parlmt.programs.metrics import turn_states
    from parlmt.rl.rewards import reward_terms
    from parlmt.rl.rollout import turn_outcomes

    state = turn_states([load_task("bfcl:base:3")])[0]
    terms = {}
    for name, steps in (("ended", [BASE3[0]]), ("capped", [BASE3[0] * 3])):
        env = make_env(state, max_steps_per_turn=2)
        (outcome,) = turn_outcomes(play(steps, max_steps_per_turn=2, task=env), env).values()
        terms[name] = reward_terms(outcome)
    assert terms["ended"]["capped"] == 0.0 and terms["capped"]["capped"] == -1.0
    assert terms["ended"]["turn"] == terms["capped"]["turn"] == 1.0  # the state passes either way
