"""Bring your own tools: any Python class as a multi-turn environment.

The class's public methods are the tools: their type hints give the parameter types, their
Google-style docstrings the descriptions (summary, ``Args:`` section), and the class docstring's
first paragraph is the blurb shown once above them. State lives in the instance's public
attributes. Tasks come from a YAML or JSON file::

    tools: parlmt.envs.examples.todo:TodoList   # module:Class
    tasks:
      - id: groceries                           # optional name
        initial_state: {items: [], next_id: 1}  # public attributes (or the class's _load_scenario)
        turns: ["Add milk to my list.", "Make it urgent."]
        ground_truth: [["add_item(title='milk')"], ["set_priority(item_id=1, priority=1)"]]

Scoring is BFCL's: after each turn the model's instance and an instance replaying the ground
truth must have equal public attributes, and the ground truth's results must all be among the
model's results so far.
"""

import copy
import importlib
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from parlmt.envs.base import Task, ToolEnv
from parlmt.envs.calls import CallError, bind_call, check_literal, parse_calls
from parlmt.envs.splits import split_of
from parlmt.envs.tooldocs import BLURB_MARKER

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_SECTIONS = ("Args", "Arguments", "Parameters")
_ARG_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "float", dict: "dict", tuple: "tuple"}
_TASK_FIELDS = {"id", "turns", "initial_state", "ground_truth"}


class TaskFileError(ValueError):
    """A task file or task spec that cannot be loaded; the message names the file, task and field."""


class PythonToolsEnv(ToolEnv):
    """An environment whose backend is one instance of the task's tool class."""

    def _backends(self, task: Task) -> dict[str, object]:
        cls = task.meta["tools_class"]
        return {cls.__name__: new_instance(cls, task.initial_state)}


def tool_schemas(cls: type) -> list[dict]:
    """BFCL-style schemas of the public methods of ``cls`` (alphabetical)."""
    paragraphs = _paragraphs(inspect.cleandoc(cls.__dict__.get("__doc__") or ""))  # not object's
    blurb = paragraphs[0] if paragraphs else ""
    schemas = []
    for name, function in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        summary, arg_docs = _parse_docstring(inspect.getdoc(function) or "")
        hints = typing.get_type_hints(function)
        properties, required = {}, []
        parameters = list(inspect.signature(function).parameters.values())
        if not isinstance(inspect.getattr_static(cls, name), staticmethod):
            parameters = parameters[1:]  # self
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.{name}: *args/**kwargs cannot be described as tool parameters")
            if parameter.name not in hints:
                raise TypeError(f"{cls.__name__}.{name}: parameter '{parameter.name}' needs a type hint")
            spec = _type_spec(hints[parameter.name], f"{cls.__name__}.{name}.{parameter.name}")
            spec["description"] = arg_docs.get(parameter.name, "")
            if parameter.default is parameter.empty:
                required.append(parameter.name)
            elif _is_literal(parameter.default):  # other defaults stay out of the (JSON) schema
                spec["default"] = parameter.default
            properties[parameter.name] = spec
        description = f"{blurb} {BLURB_MARKER} {summary}" if blurb else summary
        schemas.append(
            {
                "name": name,
                "description": description,
                "parameters": {"type": "dict", "properties": properties, "required": required},
            }
        )
    return schemas


def new_instance(cls: type, state: dict) -> object:
    """A fresh ``cls()`` put in ``state``: through its ``_load_scenario(state)`` if it has one,
    else by setting public attributes that ``__init__`` created (others are refused)."""
    instance = cls()
    state = copy.deepcopy(state)
    load = getattr(instance, "_load_scenario", None)
    if callable(load):
        load(state)
        return instance
    for key, value in state.items():
        if key.startswith("_") or key not in vars(instance):
            raise ValueError(f"{cls.__name__} has no public attribute {key!r} to set from the initial state")
        setattr(instance, key, value)
    return instance


def make_tasks(cls: type, specs: list[dict], source: str) -> list[Task]:
    """Tasks over ``cls`` from specs (``turns``, ``ground_truth``, optional ``initial_state``
    and ``id``), checked on the way: unknown fields, bad types, and ground-truth calls that do
    not parse or fit the schemas raise ``TaskFileError``."""
    schemas = tool_schemas(cls)
    by_name = {schema["name"]: schema for schema in schemas}
    if not isinstance(specs, list) or not specs:
        raise TaskFileError(f"{source}: 'tasks' must be a non-empty list")
    tasks = []
    for index, spec in enumerate(specs):
        where = f"{source}: task {index}"
        if not isinstance(spec, dict):
            raise TaskFileError(f"{where}: must be a mapping")
        for name in ("turns", "ground_truth"):
            if name not in spec:
                raise TaskFileError(f"{where}: missing field '{name}'")
        unknown = set(spec) - _TASK_FIELDS
        if unknown:
            raise TaskFileError(f"{where}: unknown field(s) {sorted(unknown)}; fields are {sorted(_TASK_FIELDS)}")
        turns, truth, state = spec["turns"], spec["ground_truth"], spec.get("initial_state") or {}
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise TaskFileError(f"{where}: 'turns' must be a non-empty list of strings")
        if not isinstance(truth, list) or len(truth) != len(turns):
            raise TaskFileError(f"{where}: 'ground_truth' must be a list with one list of calls per turn")
        if not isinstance(state, dict):
            raise TaskFileError(f"{where}: 'initial_state' must be a mapping")
        try:
            new_instance(cls, state)
        except (TypeError, ValueError) as e:  # TypeError: the class needs constructor arguments
            raise TaskFileError(f"{where}: initial_state: {e}") from None
        for turn, calls in enumerate(truth):
            if not isinstance(calls, list) or not all(isinstance(c, str) for c in calls):
                raise TaskFileError(f"{where}: ground_truth[{turn}] must be a list of call strings")
            for text in calls:
                _check_truth_call(text, by_name, f"{where}: ground_truth[{turn}]")
        tasks.append(
            Task(
                id=f"py:{source}:{index}",
                turns=tuple(turns),
                tools=tuple(schemas),
                initial_state=state,
                ground_truth=tuple(tuple(calls) for calls in truth),
                meta={
                    "source": "py",
                    "collection": source,
                    "index": index,
                    "name": str(spec.get("id", index)),
                    "tools_class": cls,
                    "classes": (cls.__name__,),
                    "split": split_of(index, len(specs)),
                },
            )
        )
    return tasks


def load_task_file(path: str | Path, source: str | None = None) -> list[Task]:
    """Tasks from a YAML/JSON file with ``tools: module:Class`` and ``tasks: [...]``; task ids are
    ``py:<source>:<index>`` (``source`` defaults to the path)."""
    path = Path(path)
    source = source or str(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise TaskFileError(f"{path}: cannot read the task file: {e}") from None
    if not isinstance(data, dict):
        raise TaskFileError(f"{path}: the file must hold a mapping with 'tools' and 'tasks'")
    for name in ("tools", "tasks"):
        if name not in data:
            raise TaskFileError(f"{path}: missing field '{name}'")
    return make_tasks(_import_class(data["tools"], path), data["tasks"], source)


def _import_class(spec: Any, path: Path) -> type:
    module_name, _, class_name = str(spec).partition(":")
    if not class_name:
        raise TaskFileError(f"{path}: 'tools' must be 'module:Class', got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise TaskFileError(f"{path}: cannot import the tool class {spec!r}: {e}") from None
    if not isinstance(cls, type):
        raise TaskFileError(f"{path}: {spec!r} is not a class")
    return cls


def _check_truth_call(text: str, schemas: dict[str, dict], where: str) -> None:
    try:
        calls = parse_calls(text)
        if len(calls) != 1:
            raise CallError("each ground-truth entry must be exactly one call")
        if calls[0].name not in schemas:
            raise CallError(f"unknown function {calls[0].name!r}")
        bind_call(calls[0], schemas[calls[0].name])
    except CallError as e:
        raise TaskFileError(f"{where}: {text!r}: {e}") from None


def _type_spec(hint: Any, where: str) -> dict:
    """A schema type for a type hint (str, int, float, bool, list[X], dict, tuple, Literal,
    Optional/``X | None``, Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {"type": "any"}
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            return _type_spec(others[0], where) | {"nullable": True}
        return {"type": "any"}
    if origin is typing.Literal:
        kinds = {_SCALARS.get(type(v)) for v in args}
        return {"type": kinds.pop() if len(kinds) == 1 else "any", "enum": list(args)}
    if hint is list or origin is list:
        spec = {"type": "array"}
        if args:
            spec["items"] = _type_spec(args[0], where)
        return spec
    base = origin or hint
    if base in _SCALARS:
        return {"type": _SCALARS[base]}
    raise TypeError(f"{where}: unsupported type hint {hint!r}")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {argument: description}) of a Google-style docstring (already dedented)."""
    summary, args = [], {}
    section, entry_indent, current = None, None, None
    for line in doc.splitlines():
        stripped = line.strip()
        header = _SECTION.match(stripped)
        if header and not line[:1].isspace():
            section, entry_indent, current = header.group(1), None, None
        elif section is None:
            summary.append(stripped)
        elif section in _ARG_SECTIONS and stripped:
            indent = len(line) - len(line.lstrip())
            entry_indent = indent if entry_indent is None else entry_indent
            match = _ARG_LINE.match(stripped)
            if indent == entry_indent and match:  # deeper lines continue the entry above
                current = match.group(1)
                args[current] = match.group(2)
            elif current:
                args[current] += " " + stripped
    return " ".join(" ".join(summary).split()), {k: " ".join(v.split()) for k, v in args.items()}


def _is_literal(value: Any) -> bool:
    try:
        check_literal(value)
    except CallError:
        return False
    return True


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
