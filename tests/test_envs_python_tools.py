"""Bring-your-own Python tools: schemas from a class, task files, scoring by ground-truth replay."""

import json
from typing import Any, Literal

import pytest

from parlmt.envs import PythonToolsEnv, TaskFileError, load_task_file, load_tasks, make_env, make_tasks, tool_schemas
from parlmt.envs.base import EMPTY_TURN, RESPONSE_MISMATCH, STATE_MISMATCH
from parlmt.envs.examples.todo import TodoList


class Counter:
    """A counter with a label.

    More text that is not the blurb.
    """

    def __init__(self) -> None:
        self.value = 0
        self.label = ""

    def add(self, amount: int, note: str | None = None, mode: Literal["up", "down"] = "up") -> int:
        """Add to the counter.

        Longer explanation.

        Args:
            amount (int): How much to add,
                possibly a lot.
            note: A note.
            mode: Direction.

        Returns:
            The new value.
        """
        self.value += amount if mode == "up" else -amount
        return self.value

    def scale(self, factors: list[float], extra: Any = None, table: dict | None = None) -> dict:
        """Multiply by each factor."""
        for factor in factors:
            self.value *= factor
        return {"value": self.value}

    def explode(self) -> None:
        """Raise an error."""
        raise RuntimeError("boom")

    @staticmethod
    def double(x: float, marker: Any = object()) -> float:  # noqa: B008 - a non-literal default on purpose
        """Twice x."""
        return 2 * x

    def _secret(self) -> None:
        """Never a tool."""


def test_schemas_from_type_hints_and_docstrings():
    schemas = {s["name"]: s for s in tool_schemas(Counter)}
    assert list(schemas) == ["add", "double", "explode", "scale"]
    double = schemas["double"]["parameters"]
    assert double["required"] == ["x"] and "default" not in double["properties"]["marker"]
    add = schemas["add"]
    assert add["description"] == "A counter with a label. Tool description: Add to the counter. Longer explanation."
    props = add["parameters"]["properties"]
    assert add["parameters"]["required"] == ["amount"]
    assert props["amount"] == {"type": "integer", "description": "How much to add, possibly a lot."}
    assert props["note"] == {"type": "string", "nullable": True, "description": "A note.", "default": None}
    assert props["mode"]["enum"] == ["up", "down"] and props["mode"]["type"] == "string"
    scale = schemas["scale"]["parameters"]["properties"]
    assert scale["factors"]["type"] == "array" and scale["factors"]["items"] == {"type": "float"}
    assert scale["extra"]["type"] == "any" and scale["table"]["type"] == "dict"
    assert tool_schemas(TodoList)[0]["description"].startswith("A personal to-do list")


def test_schema_errors_are_clear():
    class NoHint:
        def f(self, x) -> None:
            """Doc."""

    class Odd:
        def f(self, x: set) -> None:
            """Doc."""

    with pytest.raises(TypeError, match="parameter 'x' needs a type hint"):
        tool_schemas(NoHint)
    with pytest.raises(TypeError, match="unsupported type hint"):
        tool_schemas(Odd)


def test_example_tasks_replay_and_score():
    tasks = load_tasks("py:todo")
    assert len(tasks) >= 5
    for task in tasks:
        env = make_env(task)
        assert isinstance(env, PythonToolsEnv)
        for turn in range(len(task.turns)):
            env.step(env.ground_truth(turn))
            env.next_turn()
        assert env.score_episode().passed, task.id
    assert {t.meta["split"] for t in tasks} == {"train", "dev", "test"}


def test_example_perturbations_fail_with_reasons():
    env = make_env("py:todo:0")
    env.step("add_item(title='buy milk', tags=['work'])")
    env.next_turn()
    assert env.score_turn(0).error_type == STATE_MISMATCH and "items" in env.score_turn(0).reason
    env.next_turn()
    assert env.score_episode().error_type == STATE_MISMATCH
    assert env.score_episode().turns[1].error_type == EMPTY_TURN

    env = make_env("py:todo:1")
    env.step("find_items(query='mom')")  # state unchanged, but the listing never happened
    assert env.score_turn().error_type == RESPONSE_MISMATCH

    env = make_env("py:todo:4")  # turn 0 has no ground truth: the title is missing
    assert env.next_turn().startswith("Sorry")
    assert not env.score_turn(0).checked and env.score_turn(0).passed


def test_bad_calls_and_raising_tools_are_observations():
    env = make_env("py:todo:1")
    assert env.step("complete_item(item_id=99)") == ["Error during execution: 'no item with id 99'"]
    assert env.trajectory[-1].results[0].error == "execution"
    assert env.step("_get(item_id=1)") == ["Error: there is no function named '_get'."]
    assert env.step("set_priority(item_id=1, priority=7)")[0].startswith("Error: set_priority: argument 'priority'")
    assert env.step("add_item()")[0] == "Error: add_item: missing required argument(s) 'title'"
    assert env.step("list_items(include_done='yes')")[0].startswith("Error: list_items: argument 'include_done'")
    assert env.step("items.clear()")[0].startswith("Error: attribute calls")
    assert len(env.task.initial_state["items"]) == 3  # nothing reached the task's own data


def test_in_code_tasks_for_any_class():
    tasks = make_tasks(
        Counter,
        [
            {
                "turns": ["add 2", "then explode"],
                "initial_state": {"value": 1},
                "ground_truth": [["add(2)"], ["explode()"]],
            }
        ],
        source="counter",
    )
    env = PythonToolsEnv(tasks[0])
    assert env.step("add(amount=2)") == ["3"]
    env.next_turn()
    assert env.step("explode()") == ["Error during execution: boom"]
    env.next_turn()
    assert env.score_episode().passed and tasks[0].id == "py:counter:0"


def test_a_class_that_cannot_be_built_is_a_load_error():
    class NeedsArgs:
        def __init__(self, x: int) -> None:
            self.x = x

        def f(self) -> None:
            """Doc."""

    with pytest.raises(TaskFileError, match="needs: task 0: initial_state: .*missing 1 required positional"):
        make_tasks(NeedsArgs, [{"turns": ["a"], "ground_truth": [[]]}], source="needs")


TOOLS = "parlmt.envs.examples.todo:TodoList"


@pytest.mark.parametrize(
    "content, message",
    [
        ({"tasks": []}, "missing field 'tools'"),
        ({"tools": TOOLS}, "missing field 'tasks'"),
        ({"tools": TOOLS, "tasks": []}, "'tasks' must be a non-empty list"),
        ({"tools": TOOLS, "tasks": [{"ground_truth": [[]]}]}, "task 0: missing field 'turns'"),
        ({"tools": TOOLS, "tasks": [{"turns": ["hi"]}]}, "task 0: missing field 'ground_truth'"),
        ({"tools": TOOLS, "tasks": [{"turns": ["hi"], "ground_truth": [], "x": 1}]}, "unknown field(s) ['x']"),
        ({"tools": TOOLS, "tasks": [{"turns": ["a", "b"], "ground_truth": [[]]}]}, "one list of calls per turn"),
        ({"tools": TOOLS, "tasks": [{"turns": [3], "ground_truth": [[]]}]}, "non-empty list of strings"),
        ({"tools": TOOLS, "tasks": [{"turns": ["a"], "ground_truth": [["nope()"]]}]}, "unknown function 'nope'"),
        ({"tools": TOOLS, "tasks": [{"turns": ["a"], "ground_truth": [["add_item(title=x)"]]}]}, "the name 'x'"),
        ({"tools": TOOLS, "tasks": [{"turns": ["a"], "ground_truth": [["add_item()"]]}]}, "missing required"),
        (
            {"tools": TOOLS, "tasks": [{"turns": ["a"], "ground_truth": [[]], "initial_state": {"bogus": 1}}]},
            "no public attribute 'bogus'",
        ),
        ({"tools": "os:system", "tasks": [{"turns": ["a"], "ground_truth": [[]]}]}, "is not a class"),
        ({"tools": "no.such.module:X", "tasks": []}, "cannot import the tool class"),
        ({"tools": "TodoList", "tasks": []}, "must be 'module:Class'"),
        ([1, 2], "must hold a mapping"),
    ],
)
def test_task_file_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(content))
    with pytest.raises(TaskFileError) as error:
        load_task_file(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_task_file_unreadable_or_malformed(tmp_path):
    with pytest.raises(TaskFileError, match="cannot read"):
        load_task_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools: [unclosed")
    with pytest.raises(TaskFileError, match="cannot read"):
        load_task_file(bad)


def test_task_file_from_any_path_through_the_registry(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(f"tools: {TOOLS}\ntasks:\n  - turns: [Add tea]\n    ground_truth: [[\"add_item(title='tea')\"]]\n")
    env = make_env(f"py:{path}:0")
    env.step("add_item('tea')")
    env.next_turn()
    assert env.score_episode().passed
