"""programs/: the agents' control flow (scripted LM), parsing, trajectories, saving, optimizers,
evaluation with resume, BFCL result files, and one end-to-end run of the embedded student logged
to a real MLflow store. BFCL tasks, the environment and the official checker are the real ones."""

import json

import dspy
import pytest
from dspy.utils import DummyLM

from parlmt.cli import main
from parlmt.envs import CallError, load_task, parse_calls
from parlmt.programs import (
    FullHistoryAgent,
    ProgressAwareAgent,
    build_program,
    by_category,
    examples,
    extract_calls,
    load_program,
    read_jsonl,
    run_episodes,
    salvage_calls,
    task_success,
    write_bfcl_results,
)
from parlmt.programs.agents import NO_PLAN, NOTHING_DONE


def act(calls: str = "[]", reply: str = "") -> dict:
    return {"calls": calls, "reply": reply}


def plan(text: str = "1. do it") -> dict:
    return {"plan": text}


def summary(text: str = "progress") -> dict:
    return {"summary": text}


def play(agent: dspy.Module, task: str, answers: list[dict]):
    lm = DummyLM(answers)
    with dspy.context(lm=lm):
        trajectory = agent(task=task).trajectory
    return trajectory


def sequence(trajectory) -> list[tuple[str, int, int]]:
    return [(c.module, c.turn, c.step) for c in trajectory.module_calls]


# bfcl:base:3 solved in two turns: find, then cd, cd, cp, cp.
BASE3_PROGRESS = [
    plan(), act("[find(path='.', name='test')]"), act(reply="Found them."),
    summary("found test files in projects/photography"), plan(),
    act("[cd(folder='projects'), cd(folder='photography')]"),
    act("[cp(source='test_image1.jpg', destination='backup_tests'), "
        "cp(source='test_document.txt', destination='backup_tests')]"),
    act(reply="Copied."),
]


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "[cd(folder='a'), ls(a=True)]",
    "cd(folder='a')\nls(a=True)",
    '[{"name": "cd", "arguments": {"folder": "a"}}, {"name": "ls", "arguments": {"a": true}}]',
    '{"name": "cd", "arguments": {"folder": "a"}}\n{"name": "ls", "arguments": {"a": true}}',
    '```json\n[{"name": "cd", "arguments": {"folder": "a"}}, {"name": "ls", "arguments": {"a": true}}]\n```',
    'Here you go:\n```python\n[cd(folder="a"), ls(a=True)]\n```\nDone.',
    '<tool_call>{"name": "cd", "arguments": {"folder": "a"}}</tool_call>\n'
    '<tool_call>{"name": "ls", "arguments": {"a": true}}</tool_call>',
    '["cd(folder=\'a\')", "ls(a=True)"]',
])
def test_every_call_form_parses_to_the_same_calls(text):
    assert [c.canonical() for c in extract_calls(text)] == ["cd(folder='a')", "ls(a=True)"]


@pytest.mark.parametrize("text", ["", "[]", "None", "no calls.", "  N/A "])
def test_no_call_answers_are_empty(text):
    assert extract_calls(text) == []


@pytest.mark.parametrize("text", ["I will now list the files", "[cd(folder=a)]", "__import__('os').system('x')",
                                  '{"name": "cd", "arguments": ', "cd(folder='a'); rm(file_name='b')"])
def test_unparseable_or_unsafe_text_raises_call_error(text):
    with pytest.raises(CallError):
        extract_calls(text)


def test_salvage_reads_calls_from_output_the_adapter_rejected():
    assert salvage_calls("[[ ## calls ## ]]\n[ls(a=True)]\n")[0].canonical() == "ls(a=True)"
    assert salvage_calls("ls()")[0].name == "ls"
    with pytest.raises(CallError):
        salvage_calls("[[ ## calls ## ]]\n[]\n[[ ## reply ## ]]\nhi")


# --- control flow with a scripted LM -----------------------------------------------------


def test_progress_agent_summarizes_and_plans_once_per_turn_and_acts_until_reply():
    trajectory = play(ProgressAwareAgent(), "bfcl:base:3", BASE3_PROGRESS)
    assert sequence(trajectory) == [
        ("plan", 0, 0), ("act", 0, 0), ("act", 0, 1),  # turn 1: nothing to summarize yet
        ("summarize", 1, 0), ("plan", 1, 0), ("act", 1, 0), ("act", 1, 1), ("act", 1, 2),
    ]
    assert [(t.steps, t.reply, t.passed) for t in trajectory.turns] == [(2, "Found them.", True), (3, "Copied.", True)]
    assert trajectory.passed and trajectory.error_type is None and trajectory.format_validity == 1.0
    first_act, second_turn_act = trajectory.calls_of("act")[0], trajectory.calls_of("act")[2]
    assert first_act.inputs["summary"] == NOTHING_DONE and first_act.inputs["observations"] == "(none yet)"
    assert second_turn_act.inputs["summary"] == "found test files in projects/photography"
    assert "find(path='.', name='test')" in trajectory.calls_of("summarize")[0].inputs["conversation"]
    assert "cd(folder: str)" in first_act.inputs["tools"]
    assert first_act.messages[-1]["role"] == "user" and "[[ ## plan ## ]]" in first_act.messages[-1]["content"]
    assert first_act.completion.startswith("[[ ## calls ## ]]") and first_act.lm_calls == 1
    assert trajectory.executed[1] == [["cd(folder='projects')", "cd(folder='photography')"],
                                      ["cp(source='test_image1.jpg', destination='backup_tests')",
                                       "cp(source='test_document.txt', destination='backup_tests')"]]


def test_error_observation_triggers_a_replan_within_the_turn():
    answers = [plan(), act("[cd(folder='no_such_folder')]"), plan("1. find"), act(reply="Cannot.")]
    trajectory = play(ProgressAwareAgent(), "bfcl:base:3", answers + [summary(), plan(), act(reply="no")])
    assert sequence(trajectory)[:4] == [("plan", 0, 0), ("act", 0, 0), ("plan", 0, 1), ("act", 0, 1)]
    replan = trajectory.calls_of("plan")[1]
    assert "No such" in replan.inputs["observations"] or "error" in replan.inputs["observations"].lower()
    assert trajectory.steps[0].failed and not trajectory.turns[0].passed


def test_step_cap_ends_the_episode_as_force_terminated():
    answers = [plan(), act("[ls()]"), act("[pwd()]"), act("[ls()]")]  # never replies: the third step passes the cap
    trajectory = play(ProgressAwareAgent(max_steps_per_turn=2), "bfcl:base:3", answers)
    assert sequence(trajectory) == [("plan", 0, 0), ("act", 0, 0), ("act", 0, 1), ("act", 0, 2)]
    assert trajectory.turns[0].capped and len(trajectory.turns) == 1
    assert trajectory.passed is False and trajectory.error_type == "multi_turn:force_terminated"


def test_unparseable_output_is_an_error_observation_not_a_crash():
    answers = [plan(), act("I would like to look around first"), plan(), act("[find(path='.', name='test')]"),
               act(reply="ok"), summary(), plan(), act(reply="ok")]
    trajectory = play(ProgressAwareAgent(), "bfcl:base:3", answers)
    bad = trajectory.steps[0]
    assert bad.format_error and bad.calls == [] and bad.observations[0].startswith("Error: not valid call syntax")
    assert "Output: I would like to look around first" in trajectory.calls_of("act")[1].inputs["observations"]
    assert trajectory.format_validity == 3 / 4
    assert trajectory.turns[0].passed  # the model recovered within the turn


def test_output_the_adapter_cannot_read_still_counts_bare_calls():
    # A response with no field markers at all fails DSPy's adapters; bare calls in it are still executed.
    bare = {"answer": "[find(path='.', name='test')]"}
    answers = [plan(), bare, bare, act(reply="ok")]  # ChatAdapter's try and its JSONAdapter fallback
    trajectory = play(ProgressAwareAgent(), "bfcl:base:3", answers + [summary(), plan(), act(reply="ok")])
    first = trajectory.calls_of("act")[0]
    assert first.error and first.outputs == {} and first.lm_calls == 2  # ChatAdapter, then its JSON fallback
    assert trajectory.steps[0].calls == ["find(path='.', name='test')"] and trajectory.turns[0].passed


def test_refresh_every_step_summarizes_and_plans_before_each_step():
    answers = [plan(), act("[find(path='.', name='test')]"), summary(), plan(), act(reply="ok"),
               summary(), plan(), act(reply="ok")]
    trajectory = play(ProgressAwareAgent(refresh="step"), "bfcl:base:3", answers)
    assert sequence(trajectory)[:5] == [("plan", 0, 0), ("act", 0, 0), ("summarize", 0, 1), ("plan", 0, 1),
                                        ("act", 0, 1)]
    assert "find(path='.', name='test')" in trajectory.calls_of("summarize")[0].inputs["conversation"]


def test_miss_func_turn_reveals_tools_and_hidden_calls_are_refused_before():
    answers = [
        plan(), act("[mkdir(dir_name='academic_hub')]"), plan(), act(reply="I cannot create directories."),
        summary(), plan(), act("[cd(folder='academic_venture'), mkdir(dir_name='academic_hub')]"), act(reply="ok"),
        summary(), plan(), act("[find(path='.', name='goal')]"), act(reply="ok"),
        summary(), plan(), act("[cat(file_name='goals.txt')]"), act(reply="ok"),
    ]
    trajectory = play(ProgressAwareAgent(), "bfcl:miss_func:7", answers)
    acts = trajectory.calls_of("act")
    assert "mkdir(" not in acts[0].inputs["tools"] and "mkdir(dir_name: str)" in acts[2].inputs["tools"]
    assert trajectory.steps[0].errors == ["hidden_function"]
    assert trajectory.turns[1].request.startswith("I have updated some more functions")
    assert [t.passed for t in trajectory.turns] == [True, True, True, True] and trajectory.passed


def test_full_history_agent_acts_on_the_raw_transcript_without_summary_or_plan():
    answers = [act("[find(path='.', name='test')]"), act(reply="Found."), act("[cd(folder='projects')]"),
               act(reply="done")]
    trajectory = play(FullHistoryAgent(), "bfcl:base:3", answers)
    assert {c.module for c in trajectory.module_calls} == {"act"}
    later = trajectory.calls_of("act")[2]
    assert later.inputs["plan"] == NO_PLAN
    assert later.inputs["summary"].startswith("[turn 1] User: As part of my latest photography project")
    assert "Call: find(path='.', name='test')" in later.inputs["summary"] and "Assistant: Found." in later.inputs[
        "summary"]
    assert trajectory.turns[0].passed and not trajectory.turns[1].passed and trajectory.passed is False


def test_brief_tool_docs_reach_every_module_that_reads_tools():
    trajectory = play(ProgressAwareAgent(tool_docs="brief"), "bfcl:base:3", BASE3_PROGRESS)
    assert trajectory.passed
    tools = {c.inputs["tools"] for c in trajectory.module_calls if c.module != "summarize"}
    assert len(tools) == 1
    find = next(line for line in tools.pop().splitlines() if line.startswith("find("))
    assert find == "find(path: str = '.', name: str = None) -- Find any file or directories under specific path " \
                   "that contain name in its file name."


def test_program_options_are_checked():
    with pytest.raises(ValueError, match="tool_docs must be one of full, brief"):
        ProgressAwareAgent(tool_docs="short")
    with pytest.raises(ValueError, match="refresh='step' is an option of the progress program"):
        build_program("fullhistory", refresh="step")
    assert build_program("fullhistory", max_steps_per_turn=3, tool_docs="brief").config() == {
        "program": "fullhistory", "max_steps_per_turn": 3, "tool_docs": "brief", "modules": {"act": "Predict"}}


# --- DSPy behaviour: predictors, save/load, optimizers ------------------------------------


def test_named_predictors_are_the_three_modules():
    assert [name for name, _ in ProgressAwareAgent().named_predictors()] == ["summarize", "plan", "act"]
    assert [name for name, _ in FullHistoryAgent().named_predictors()] == ["act"]


def test_bootstrap_few_shot_compiles_the_agent_and_the_result_round_trips(tmp_path):
    optimizer = dspy.BootstrapFewShot(metric=task_success, max_bootstrapped_demos=2, max_labeled_demos=0,
                                      max_rounds=1)
    with dspy.context(lm=DummyLM(BASE3_PROGRESS)):
        compiled = optimizer.compile(ProgressAwareAgent(max_steps_per_turn=7), trainset=examples(["bfcl:base:3"]))
    # one demo per predictor from the passing episode, taken from its recorded module calls
    assert len(compiled.act.demos) == len(compiled.plan.demos) == len(compiled.summarize.demos) == 1
    assert compiled.act.demos[0]["calls"] in {answer.get("calls") for answer in BASE3_PROGRESS}

    compiled.plan.signature = compiled.plan.signature.with_instructions("Plan tersely.")
    compiled.save(tmp_path / "agent.json")
    loaded = load_program(tmp_path / "agent.json")
    assert type(loaded) is ProgressAwareAgent and loaded.max_steps_per_turn == 7 and loaded.refresh == "turn"
    assert loaded.plan.signature.instructions == "Plan tersely."
    assert [d["calls"] for d in loaded.act.demos] == [d["calls"] for d in compiled.act.demos]


def test_predictor_kinds_survive_save_and_load(tmp_path):
    from parlmt.signatures import Act

    agent = FullHistoryAgent(max_steps_per_turn=3, tool_docs="brief", act=dspy.ChainOfThought(Act))
    agent.save(tmp_path / "baseline.json")
    loaded = load_program(tmp_path / "baseline.json")
    assert type(loaded) is FullHistoryAgent and type(loaded.act) is dspy.ChainOfThought
    assert loaded.max_steps_per_turn == 3 and loaded.tool_docs == "brief"
    state = json.loads((tmp_path / "baseline.json").read_text())  # a program saved before the per-turn cap's rename
    state["parlmt_program"]["max_steps"] = state["parlmt_program"].pop("max_steps_per_turn")
    (tmp_path / "old.json").write_text(json.dumps(state))
    assert load_program(tmp_path / "old.json").max_steps_per_turn == 3
    with pytest.raises(ValueError, match="not a saved parlmt program"):
        dspy.Predict("a -> b").save(tmp_path / "other.json")
        load_program(tmp_path / "other.json")


# --- evaluation, resume, BFCL result files -----------------------------------------------


def test_eval_resumes_and_writes_official_bfcl_results_the_official_checker_accepts(tmp_path):
    from parlmt.envs.bfcl import official_check

    out = tmp_path / "run.jsonl"
    task = load_task("bfcl:base:3")
    first = run_episodes(ProgressAwareAgent(), [task], DummyLM(BASE3_PROGRESS), out)
    resumed = run_episodes(ProgressAwareAgent(), [task], DummyLM([]), out)  # would fail if it ran again
    assert [t.to_dict() for t in resumed] == [t.to_dict() for t in first] == [t.to_dict() for t in read_jsonl(out)]
    table = by_category(resumed)
    assert table["base"]["accuracy"] == 1.0 and table["all"]["steps_per_turn"] == 2.5

    (path,) = write_bfcl_results(resumed, tmp_path / "result", "parlmt/progress")
    assert path.relative_to(tmp_path).as_posix() == "result/parlmt_progress/multi_turn/" \
                                                     "BFCL_v4_multi_turn_base_result.json"
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert entry["id"] == "multi_turn_base_3" and len(entry["result"]) == 2
    # BFCL's prompting decoder reads each step as a Python list of calls and skips what it cannot
    # read (here: the replies); its module needs tree-sitter, which the slim bfcl install leaves out,
    # so the same Python-syntax reading is done with the environment's parser.
    decoded = []
    for turn in entry["result"]:
        steps = []
        for text in turn:
            try:
                steps.append([call.canonical() for call in parse_calls(text)])
            except CallError:
                continue
        decoded.append([step for step in steps if step])
    assert official_check(task, decoded)["valid"]


def test_a_crashing_program_is_a_failed_episode_that_resume_retries(tmp_path):
    out = tmp_path / "run.jsonl"
    task = load_task("bfcl:base:3")
    (crashed,) = run_episodes(_Broken(), [task], DummyLM([]), out)
    assert crashed.passed is False and crashed.error_type == "parlmt:program_error" and "boom" in crashed.reason
    (retried,) = run_episodes(ProgressAwareAgent(), [task], DummyLM(BASE3_PROGRESS), out)
    assert retried.passed


class _Broken(dspy.Module):
    program_name = "broken"

    def forward(self, task):
        raise RuntimeError("boom")


def test_eval_cli_resumes_only_an_evaluation_with_the_same_settings(tmp_path, monkeypatch, caplog, capsys):
    import parlmt.models.lm
    from parlmt.programs.evaluate import settings_file

    made = []

    def scripted_lm(*args):  # stands in for the model: replies at once, every turn
        made.append(args)
        return DummyLM([act(reply="Done.")] * 20)

    monkeypatch.setattr(parlmt.models.lm, "make_lm", scripted_lm)
    out = tmp_path / "eval.jsonl"

    def run(*options: str) -> int:
        return main(["eval", "--program", "fullhistory", "--lm", "scripted", "--tasks", "py:todo:0", "--out", str(out),
                     "--mlruns", str(tmp_path / "mlruns"), "--no-progress", "--no-traces", *options])

    assert run() == 0 and len(read_jsonl(out)) == 1
    assert json.loads(settings_file(out).read_text())["max_steps_per_turn"] == 20
    with caplog.at_level("INFO", logger="parlmt.programs.evaluate"):
        assert run() == 0
    assert f"resuming 1 episodes from {out}; 0 to run" in caplog.text and len(read_jsonl(out)) == 1
    capsys.readouterr()

    written = out.read_bytes()
    made.clear()
    assert run("--max-steps-per-turn", "5", "--temperature", "0.7", "--api-base", "http://localhost:8000/v1") == 1
    error = capsys.readouterr().err
    assert f"error: {out} holds episodes run with other settings" in error
    assert "api_base None -> 'http://localhost:8000/v1'; max_steps_per_turn 20 -> 5; temperature 0.0 -> 0.7" in error
    assert "--restart" in error and "--out" in error
    assert out.read_bytes() == written and not made, "a refused resume neither loads the LM nor touches the file"

    assert run("--max-steps-per-turn", "5", "--restart") == 0 and len(read_jsonl(out)) == 1
    assert json.loads(settings_file(out).read_text())["max_steps_per_turn"] == 5

    settings_file(out).unlink()  # a file from before settings were recorded
    assert run("--max-steps-per-turn", "5") == 1 and "without a record of their settings" in capsys.readouterr().err


def test_run_names_change_with_every_setting_that_changes_results():
    from parlmt.cli import build_parser
    from parlmt.programs.cli import config_from_args

    def name(*options: str) -> str:
        return config_from_args(build_parser().parse_args(["eval", "--categories", "base", *options])).run_name()

    assert name() == "progress-embedded_student-base-all"  # defaults keep the names of earlier runs
    changed = [name("--max-steps-per-turn", "5"), name("--refresh", "step"), name("--max-tokens", "64"),
               name("--temperature", "0.7"), name("--api-base", "http://localhost:8000/v1"),
               name("--tool-docs", "brief")]
    assert changed[0] == "progress-embedded_student-base-all-max_steps_per_turn_5"
    assert len({name(), *changed}) == 7 and name("--threads", "4") == name("--batch", "8") == name()
    assert name("--max-user-turns", "5") == name()  # no simulated user on BFCL: the option changes nothing
    assert name("--replayed-turns", "--states-per-entry", "1").endswith("replayed_turns_True-states_per_entry_1")


def test_eval_options_are_the_eval_config_fields_and_bad_values_stop_before_any_work(tmp_path, capsys):
    import dataclasses

    from parlmt.cli import build_parser
    from parlmt.programs.cli import config_from_args
    from parlmt.programs.config import EvalConfig

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"--{item.name.replace('_', '-')}" in text for item in dataclasses.fields(EvalConfig))
    assert "--threads THREADS, --batch THREADS" in text and "--no-traces" in text and "--no-progress" in text
    assert "replayed-turn accuracy" in text and "(default: 20)" in text
    config = config_from_args(build_parser().parse_args(["eval", "--batch", "2", "--no-progress", "--restart"]))
    assert (config.threads, config.progress, config.restart, config.traces) == (2, False, True, True)

    out = tmp_path / "eval.jsonl"
    assert main(["eval", "--categories", "base,bsae", "--out", str(out)]) == 2
    assert "unknown task source 'bsae'; known sources: bfcl:base" in capsys.readouterr().err
    assert main(["eval", "--refresh", "often", "--out", str(out)]) == 2
    assert "refresh must be 'turn' or 'step'" in capsys.readouterr().err
    assert main(["eval", "--states-per-entry", "1", "--out", str(out)]) == 2
    assert "add --replayed-turns" in capsys.readouterr().err
    assert main(["eval", "--replayed-turns", "--states-per-entry", "0", "--out", str(out)]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert not out.exists()


# --- the embedded student, end to end, into MLflow ----------------------------------------


@pytest.mark.slow
def test_eval_cli_runs_the_student_and_logs_an_mlflow_run(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    mlruns, out = tmp_path / "mlruns", tmp_path / "eval.jsonl"
    args = ["eval", "--program", "progress", "--lm", "embedded:student", "--tasks", "bfcl:base:3",
            "--max-steps-per-turn", "1", "--max-tokens", "48", "--mlruns", str(mlruns), "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "base" in printed and "accuracy" in printed and "wall time" in printed

    (trajectory,) = read_jsonl(out)
    assert trajectory.task_id == "bfcl:base:3" and trajectory.passed is not None
    first = trajectory.module_calls[0]
    assert first.module == "plan" and first.prompt_tokens > 500 and first.completion_tokens > 0 and first.messages
    assert trajectory.calls_of("act") and trajectory.calls_of("act")[0].prompt_tokens > first.prompt_tokens

    client = MlflowClient(f"sqlite:///{mlruns / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-eval")
    assert experiment.artifact_location == (mlruns / "artifacts" / "parlmt-eval").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["program"] == "progress" and run.data.params["lm"] == "embedded:student"
    assert run.data.metrics["episodes"] == 1 and "base/accuracy" in run.data.metrics
    assert run.data.metrics["act_prompt_tokens"] > 500
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"trajectories", "episodes.json", "eval.summary.json", "bfcl_results"} <= artifacts
    assert client.search_traces(locations=[experiment.experiment_id])  # DSPy traces via mlflow.dspy.autolog
