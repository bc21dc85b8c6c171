"""Our BFCL result files score in bfcl_eval's own evaluation path as our environment scores them.

Episodes are played through the real environment by a scripted LM; their files go through what
``bfcl evaluate`` runs for each entry: the registered model's handler decodes every step
(``decode_execute``), then eval_runner's per-entry function checks the entry with the official
``multi_turn_checker``. eval_runner itself cannot be imported without the provider SDKs that its
model registry imports, so its per-entry function is compiled from its installed source as it is.
"""

import ast
import copy
import functools
import importlib
import importlib.util
import uuid
from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from parlmt.envs import load_tasks, make_env, parse_calls
from parlmt.envs.bfcl import _bfcl, _module_globals_guard
from parlmt.programs import FullHistoryAgent, write_bfcl_results
from parlmt.programs.evaluate import BFCL_MODEL

BFCL_SOURCE = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0])
BASE3 = [["[find(path='.', name='test')]"],
         ["[cd(folder='projects')]", "[cd(folder='photography')]",
          "[cp(source='test_image1.jpg', destination='backup_tests'), "
          "cp(source='test_document.txt', destination='backup_tests')]"]]
TWEET = "[post_tweet(content='file1.txt, file2.txt', tags=['#fileshowcase'])]"


def play(task_id: str, steps: list[list[str]], max_steps_per_turn: int = 20):
    """The trajectory of the full-history agent whose Act writes ``steps`` (per turn, the calls
    text of each step), then replies; a turn passed the step cap gets no reply."""
    answers = []
    for turn in steps:
        answers += [{"calls": text, "reply": ""} for text in turn] + [{"calls": "[]", "reply": "Done."}]
    with dspy.context(lm=DummyLM(answers)):
        return FullHistoryAgent(max_steps_per_turn=max_steps_per_turn)(task=task_id).trajectory


def registered(name: str) -> dict:
    """The settings bfcl_eval registers for model ``name``, read from its model_config.py (importing
    it needs every provider SDK): handler class, the module it comes from, and the keywords."""
    tree = ast.parse((BFCL_SOURCE / "constants" / "model_config.py").read_text())
    origin = {alias.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == name:
                    settings = {k.arg: k.value for k in value.keywords}
                    handler = settings.pop("model_handler").id
                    return {"handler": handler, "module": origin[handler],
                            **{k: ast.literal_eval(v) for k, v in settings.items()
                               if k in ("model_name", "is_fc_model")}}
    raise AssertionError(f"{name} is not registered in bfcl_eval")


@functools.cache
def official_handler():
    """The handler ``bfcl evaluate`` builds for BFCL_MODEL (eval_runner.get_handler)."""
    config = registered(BFCL_MODEL)
    handler = getattr(importlib.import_module(config["module"]), config["handler"])
    return handler(model_name=config["model_name"], temperature=0, registry_name=BFCL_MODEL,
                   is_fc_model=config["is_fc_model"])


@functools.cache
def official_entry_check():
    """eval_runner._evaluate_single_multi_turn_entry, compiled from bfcl_eval's source unchanged."""
    bfcl = _bfcl()  # sets BFCL_PROJECT_ROOT before bfcl_eval is imported
    path = BFCL_SOURCE / "eval_checker" / "eval_runner.py"
    tree = ast.parse(path.read_text())
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                   and n.name == "_evaluate_single_multi_turn_entry"]
    from bfcl_eval.model_handler.base_handler import BaseHandler

    namespace = {"BaseHandler": BaseHandler, "multi_turn_checker": bfcl.checker.multi_turn_checker,
                 "is_empty_execute_response": bfcl.executor.is_empty_execute_response}
    exec(compile(ast.Module([function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["_evaluate_single_multi_turn_entry"]


@functools.cache
def official_data(category: str) -> tuple[dict, dict]:
    """Prompt entries and ground truth by id, loaded as eval_runner.evaluate_task loads them."""
    utils = _bfcl().utils
    prompts = utils.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
    truths = utils.load_ground_truth_entry(category)
    return {e["id"]: e for e in prompts}, {e["id"]: e["ground_truth"] for e in truths}


def official_verdicts(folder: Path) -> dict[str, str | None]:
    """Each entry in the result files under ``folder``: None when bfcl evaluate passes it, else its
    error type. Every check runs under a fresh model name whose cached backends are deleted after
    (the official executor keeps instances per model name and entry id in module globals)."""
    (model_folder,) = folder.iterdir()
    assert model_folder.name.replace("_", "/") == BFCL_MODEL  # how eval_runner.runner names the model
    verdicts = {}
    for path in sorted(model_folder.rglob("BFCL_v4_*_result.json")):
        category = _bfcl().utils.extract_test_category(path)
        prompts, truths = official_data(category)
        for entry in _bfcl().utils.load_file(path, sort_by_id=True):
            verdicts[entry["id"]] = official_verdict(entry, category, prompts, truths)
    return verdicts


def official_verdict(entry: dict, category: str, prompts: dict, truths: dict) -> str | None:
    model_name = f"parlmt_{uuid.uuid4().hex}"
    try:
        with _module_globals_guard():
            result = official_entry_check()(official_handler(), entry["id"], entry["result"], truths[entry["id"]],
                                            copy.deepcopy(prompts[entry["id"]]), model_name, category)
    finally:
        cache = vars(_bfcl().executor)
        for key in [key for key in cache if key.startswith(model_name)]:
            del cache[key]
    return None if result["valid"] else result["error"]["error_type"]


def exported_verdict(trajectory, tmp_path: Path) -> str | None:
    folder = tmp_path / f"result-{uuid.uuid4().hex[:8]}"
    write_bfcl_results([trajectory], folder)
    (verdict,) = official_verdicts(folder).values()
    return verdict


def test_the_default_model_name_is_a_registered_prompt_model_whose_decoder_reads_our_calls():
    config = registered(BFCL_MODEL)
    assert "_" not in BFCL_MODEL and config["is_fc_model"] is False
    assert official_handler().decode_execute("[cd(folder='a b'), ls(a=True)]", has_tool_call_tag=False) == [
        "cd(folder='a b')", "ls(a=True)"]


def test_every_ground_truth_call_as_we_write_it_decodes_to_the_same_call():
    handler = official_handler()
    for task in load_tasks("bfcl"):
        env = make_env(task)
        for turn in range(len(task.turns)):
            calls = env.ground_truth(turn)
            if calls:
                text = f"[{', '.join(call.canonical() for call in calls)}]"
                decoded = [parse_calls(t)[0] for t in handler.decode_execute(text, has_tool_call_tag=False)]
                assert decoded == calls, task.id


@pytest.mark.parametrize(("case", "task_id", "steps", "max_steps_per_turn", "expected"), [
    ("ground truth", "bfcl:base:3", BASE3, 20, None),
    ("skipped call", "bfcl:base:3", [BASE3[0], BASE3[1][:2] + ["[cp(source='test_image1.jpg', "
                                                               "destination='backup_tests')]"]], 20,
     "multi_turn:instance_state_mismatch"),
    ("wrong argument", "bfcl:base:3", [["[find(path='.', name='photo')]"], BASE3[1]], 20,
     "multi_turn:execution_response_mismatch"),
    ("long refused call beside correct ones", "bfcl:base:3",
     [BASE3[0], [f"[cd(folder='projects'), no_such_tool(note='{'x' * 250}'), cd(folder='photography')]",
                 BASE3[1][2]]], 20, None),
    ("step cap passed in the last turn, state matches", "bfcl:base:3", BASE3, 2, None),
    ("step cap passed before the last turn", "bfcl:base:3", [BASE3[0] * 3], 2, "multi_turn:force_terminated"),
])
def test_exported_episodes_score_the_same_in_bfcls_evaluation(tmp_path, case, task_id, steps, max_steps_per_turn,
                                                              expected):
    trajectory = play(task_id, steps, max_steps_per_turn)
    ours = None if trajectory.passed else trajectory.error_type
    assert ours == exported_verdict(trajectory, tmp_path) == expected, case


def test_a_refused_hidden_function_is_not_exported(tmp_path):
    # miss_func 11 reveals post_tweet in turn 2; called in turn 1 our environment refuses it. Exported,
    # BFCL's checker would run it, post twice and fail the state check.
    trajectory = play("bfcl:miss_func:11", [["[ls(a=True)]"], [TWEET], [TWEET]])
    assert trajectory.steps[2].errors == ["hidden_function"] and trajectory.passed
    assert exported_verdict(trajectory, tmp_path) is None
    folder = tmp_path / "with-refused"
    (path,) = write_bfcl_results([trajectory], folder)
    entry = _bfcl().utils.load_file(path)[0]
    entry["result"][1] = [TWEET]
    prompts, truths = official_data("multi_turn_miss_func")
    assert official_verdict(entry, "multi_turn_miss_func", prompts, truths) == "multi_turn:instance_state_mismatch"


def test_a_long_refused_call_is_cut_in_the_trajectory_but_absent_from_the_file(tmp_path):
    steps = [BASE3[0], [f"[cd(folder='projects'), no_such_tool(note='{'x' * 250}'), cd(folder='photography')]",
                        BASE3[1][2]]]
    trajectory = play("bfcl:base:3", steps)
    refused = trajectory.steps[2]
    assert refused.errors == [None, "unknown_function", None] and "truncated" in refused.calls[1]
    (path,) = write_bfcl_results([trajectory], tmp_path)
    assert _bfcl().utils.load_file(path)[0]["result"][1][0] == "[cd(folder='projects'), cd(folder='photography')]"

