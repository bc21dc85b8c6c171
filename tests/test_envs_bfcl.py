"""BFCL multi-turn through the environment, against the real data and the real official checker."""

import copy
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from parlmt.envs import CATEGORIES, BFCLEnv, Call, load_task, load_tasks, make_env, parse_calls, select_tasks
from parlmt.envs.base import EMPTY_TURN, FORCE_TERMINATED, RESPONSE_MISMATCH, STATE_MISMATCH
from parlmt.envs.bfcl import (
    _bfcl,
    _module_globals_guard,
    official_system_prompt,
    official_tool_docs,
    run_official_checker,
)


@pytest.fixture(scope="module")
def bfcl_tasks():
    return load_tasks("bfcl")


def play(task, turns: list[list[str]]) -> BFCLEnv:
    """Run ``turns`` (call texts per turn, one step per turn) through a fresh environment."""
    env = BFCLEnv(task)
    for calls in turns:
        if calls:
            env.step("[" + ", ".join(calls) + "]")
        env.next_turn()
    return env


def official_direct(task, turns: list[list[str]]) -> dict:
    """bfcl-eval's multi_turn_checker on the same call lists (one step per turn)."""
    with _module_globals_guard():  # the official MathAPI leaks mpmath/decimal precision otherwise
        return run_official_checker(task, [[calls] if calls else [] for calls in turns])


def perturbations(task, rng: random.Random) -> list[list[list[str]]]:
    """Wrong call lists built from the ground truth: a dropped call, a changed argument, an
    emptied turn, and a turn's calls delayed by one turn (calls only ever move later, so miss_func
    never calls a function before its reveal)."""
    truth = [list(t) for t in task.ground_truth]
    filled = [i for i, t in enumerate(truth) if t]
    variants = []
    dropped = [list(t) for t in truth]
    turn = rng.choice(filled)
    dropped[turn].pop(rng.randrange(len(dropped[turn])))
    variants.append(dropped)
    changed = [list(t) for t in truth]
    for turn in rng.sample(filled, len(filled)):
        index = rng.randrange(len(changed[turn]))
        (call,) = parse_calls(changed[turn][index])
        for key, value in list(call.kwargs.items()) + list(enumerate(call.args)):
            if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                new = value + "_x" if isinstance(value, str) else value + 1
                if isinstance(key, int):
                    call = Call(call.name, call.kwargs, call.args[:key] + (new,) + call.args[key + 1 :])
                else:
                    call = Call(call.name, {**call.kwargs, key: new}, call.args)
                changed[turn][index] = call.canonical()
                break
        else:
            continue
        break
    variants.append(changed)
    emptied = [list(t) for t in truth]
    emptied[rng.choice(filled)] = []
    variants.append(emptied)
    if len(truth) > 1:
        delayed = [list(t) for t in truth]
        turn = rng.randrange(len(truth) - 1)
        delayed[turn + 1] = delayed[turn] + delayed[turn + 1]
        delayed[turn] = []
        variants.append(delayed)
    return variants


def test_dataset_shape(bfcl_tasks):
    assert len(bfcl_tasks) == 800
    for category in CATEGORIES:
        tasks = [t for t in bfcl_tasks if t.meta["category"] == category]
        assert len(tasks) == 200
        assert [t.id for t in tasks[:2]] == [f"bfcl:{category}:0", f"bfcl:{category}:1"]
        assert {s: sum(t.meta["split"] == s for t in tasks) for s in ("train", "dev", "test")} == {
            "train": 120,
            "dev": 20,
            "test": 60,
        }
    assert load_task("multi_turn_long_context_7") is load_task("bfcl:long_context:7")


def test_select_tasks_is_the_one_selection_of_every_stage():
    chosen = select_tasks("base, miss_func,py:todo", split="dev", limit=2)
    assert [t.id for t in chosen] == ["bfcl:base:7", "bfcl:base:14", "bfcl:miss_func:7", "bfcl:miss_func:14",
                                      "py:todo:2"]  # limit per source; py:todo has one dev task
    assert chosen[:2] == load_tasks("bfcl:base", split="dev")[:2] and {t.meta["split"] for t in chosen} == {"dev"}
    assert len(select_tasks("base")) == 200 and len(select_tasks("bfcl", split="test")) == 240
    by_id = select_tasks("base", split="dev", limit=1, tasks="bfcl:base:3, multi_turn_miss_param_5")
    assert [t.id for t in by_id] == ["bfcl:base:3", "bfcl:miss_param:5"]  # ids instead of sources, whatever their split
    with pytest.raises(ValueError, match=r"unknown task source 'bsae'; known sources: bfcl:base, .*py:todo"):
        select_tasks("base,bsae")
    with pytest.raises(ValueError, match="unknown split 'validation'; choose from train, dev, test"):
        select_tasks("base", split="validation")


def test_ground_truth_replay_passes_all_800(bfcl_tasks):
    passed = 0
    for task in bfcl_tasks:
        env = play(task, [list(t) for t in task.ground_truth])
        score = env.score_episode()
        assert score.passed, (task.id, score.reason)
        assert all(t.passed for t in score.turns) and len(score.turns) == len(task.turns)
        assert [bool(t) for t in task.ground_truth] == [t.checked for t in score.turns]
        assert all(r.error in (None, "execution") for step in env.trajectory for r in step.results)
        passed += 1
    assert passed == 800


def test_accuracy_equals_official_checker_on_same_call_lists(bfcl_tasks):
    rng = random.Random(20260323)
    outcomes = {True: 0, False: 0}
    for task in bfcl_tasks:
        for turns in [[list(t) for t in task.ground_truth], *perturbations(task, rng)]:
            score = play(task, turns).score_episode()
            official = official_direct(task, turns)
            assert score.passed == official["valid"], (task.id, turns, score, official)
            assert all(t.passed for t in score.turns) == official["valid"], (task.id, turns, score.turns)
            if not official["valid"]:
                assert score.error_type == official["error_type"]
            outcomes[official["valid"]] += 1
    assert outcomes[False] > 1500 and outcomes[True] > 800  # the perturbations mostly fail


def test_perturbed_trajectories_fail_with_the_expected_reason():
    task = load_task("bfcl:base:0")
    truth = [list(t) for t in task.ground_truth]
    assert truth[0] == [
        "cd(folder='document')",
        "mkdir(dir_name='temp')",
        "mv(source='final_report.pdf', destination='temp')",
    ]

    empty_first = play(task, [[], *truth[1:]])
    assert empty_first.score_turn(0).error_type == EMPTY_TURN
    assert empty_first.score_episode().error_type == EMPTY_TURN
    assert "empty for turn 0" in empty_first.score_episode().reason

    wrong_dir = play(
        task, [[truth[0][0], "mkdir(dir_name='tmp')", "mv(source='final_report.pdf', destination='tmp')"], *truth[1:]]
    )
    turn0 = wrong_dir.score_turn(0)
    assert (turn0.passed, turn0.error_type) == (False, STATE_MISMATCH) and "GorillaFileSystem" in turn0.reason
    assert wrong_dir.score_episode().error_type == STATE_MISMATCH

    grep = truth[1][1].replace("budget analysis", "no such text")
    wrong_pattern = play(task, [truth[0], [truth[1][0], grep], *truth[2:]])
    assert wrong_pattern.score_turn(0).passed
    turn1 = wrong_pattern.score_turn(1)
    assert (turn1.passed, turn1.error_type) == (False, RESPONSE_MISMATCH) and "budget analysis" in turn1.reason
    assert wrong_pattern.score_episode().error_type == RESPONSE_MISMATCH


def test_turn_by_turn_scores_and_unplayed_turns():
    env = make_env("bfcl:base:0")
    truth = env.ground_truth(0)
    assert [c.canonical() for c in truth][0] == "cd(folder='document')"
    assert env.score_turn().error_type == EMPTY_TURN  # nothing executed yet
    env.step(truth)
    assert env.score_turn().passed  # the current turn, as it stands
    env.next_turn()
    assert env.score_turn(0).passed
    with pytest.raises(ValueError, match="not been played"):
        env.score_turn(3)
    episode = env.score_episode()  # turns 1.. not played: the official checker fails them
    assert not episode.passed and episode.error_type == EMPTY_TURN
    assert [t.passed for t in episode.turns] == [True, False, False, False]


def test_interleaved_episodes_of_one_entry_do_not_see_each_other():
    task = load_task("bfcl:base:0")
    initial = copy.deepcopy(task.initial_state)
    first, second = BFCLEnv(task), BFCLEnv(task)
    first.step("[cd(folder='document'), mkdir(dir_name='temp')]")
    assert "temp" in first.step("ls()")[0]
    assert "temp" not in second.step("[cd(folder='document'), ls()]")[1]
    second.step("mkdir(dir_name='other')")
    assert "other" not in first.step("ls()")[0]
    first.step("mv(source='final_report.pdf', destination='temp')")
    first.next_turn()
    second.next_turn()
    assert first.score_turn(0).passed and not second.score_turn(0).passed
    # scoring one episode (the official checker runs inside) leaves the other untouched
    assert not second.score_episode().passed
    assert "temp" in first.step("ls()")[0]
    assert not [k for k in vars(_bfcl().executor) if k.startswith("parlmt_")]  # no cached instances left
    assert task.initial_state == initial  # the task's own data is never touched


def test_episodes_in_threads_match_sequential_runs(bfcl_tasks):
    chosen = [t for t in bfcl_tasks if t.meta["index"] % 10 == 3]  # 80 tasks, all categories and classes

    def run(task):
        env = play(task, [list(t) for t in task.ground_truth])
        observations = [r.observation for step in env.trajectory for r in step.results]
        return env.score_episode().passed, observations

    sequential = [run(t) for t in chosen]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(run, chosen))
    assert threaded == sequential and all(passed for passed, _ in threaded)


def test_miss_func_reveals_the_held_out_function_at_its_turn():
    env = make_env("bfcl:miss_func:0")
    task = env.task
    assert [s["name"] for s in task.revealed_tools[3]] == ["sort"]
    assert "sort" not in {s["name"] for s in env.visible_tools()}
    env.next_turn()
    env.next_turn()
    assert env.turn == 2
    observation = env.step("sort(file_name='final_report.pdf')")
    assert observation == ["Error: there is no function named 'sort'."]
    assert env.trajectory[-1].results[0].error == "hidden_function"
    assert env.executed_calls()[2] == []
    message = env.next_turn()
    assert message == _bfcl().prompts.DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    assert "sort" in {s["name"] for s in env.visible_tools()}
    assert env.trajectory[-1].results[0].error == "hidden_function"
    env.step("sort('final_report.pdf')")  # positional: named from the schema
    assert env.trajectory[-1].results[0].call == "sort(file_name='final_report.pdf')"
    assert env.trajectory[-1].results[0].executed


def test_long_context_pads_state_and_outputs_like_the_official_executor():
    base, long = make_env("bfcl:base:0"), make_env("bfcl:long_context:0")
    assert long.task.meta["long_context"] and not base.task.meta["long_context"]
    listing_base = base.step("[cd(folder='document'), ls()]")[1]
    listing_long = long.step("[cd(folder='document'), ls()]")[1]
    assert len(listing_long) > 5 * len(listing_base)


def test_bad_calls_become_observations_never_exceptions():
    env = make_env("bfcl:base:15", max_observation_chars=60)  # MathAPI + others
    assert "MathAPI" in env.task.meta["classes"]
    cases = {
        "ls(": "parse",
        "__import__('os').system('touch /tmp/parlmt_pwned')": "parse",
        "[__import__('os')]": "unknown_function",
        "[_load_scenario(scenario={})]": "unknown_function",
        "[nonexistent_tool(a=1)]": "unknown_function",
        "[square_root(number='two', precision=2)]": "bad_arguments",
        "[square_root(number=2)]": "bad_arguments",
        "[square_root(number=2, precision=0)]": "execution",  # the backend raises ValueError
    }
    for text, error in cases.items():
        observations = env.step(text)
        result = env.trajectory[-1].results[0]
        assert result.error == error, text
        assert observations[0].startswith("Error"), text
    assert not Path("/tmp/parlmt_pwned").exists()
    ok = env.step("[square_root(number=2, precision=40), mean(numbers=[1, 2])]")
    marker = "...[truncated 4 characters]"
    assert ok[0].startswith("{'result': Decimal('1.41421") and ok[0].endswith(marker)
    assert len(ok[0]) == 60 + len(marker)
    assert ok[1] == '{"result": 1.5}'
    import decimal

    import mpmath

    assert decimal.getcontext().prec == 28 and mpmath.mp.dps == 15  # backend precision did not leak


def test_an_env_without_an_episode_says_so():
    with pytest.raises(RuntimeError, match="call reset"):
        BFCLEnv().step("ls()")


def test_step_limit_force_terminates_like_bfcl():
    env = make_env("bfcl:base:0", max_steps_per_turn=3)
    for _ in range(3):
        env.step("ls()")
    env.step("[]")  # no calls: not a step (BFCL ends the turn there)
    assert not env.done
    assert "current_directory_content" in env.step("ls()")[0]  # the step past the cap still runs, as in BFCL
    assert env.done and env.score_episode().error_type == FORCE_TERMINATED  # and the turns after it are missing
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("ls()")


def test_official_prompt_is_rebuilt_from_the_package_templates():
    prompts = _bfcl().prompts
    assert prompts.DEFAULT_SYSTEM_PROMPT_FORMAT == (
        "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic"
    )
    tools = load_task("bfcl:base:0").tools
    prompt = official_system_prompt(list(tools))
    assert prompt.startswith("You are an expert in composing functions.")
    assert prompt.endswith(official_tool_docs(list(tools)))
