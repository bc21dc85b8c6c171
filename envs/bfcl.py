"""BFCL multi-turn (v4) as an environment, on the pinned ``bfcl-eval`` package.

Data, ground truth, the 8 backend classes and the scoring are the package's own; what this
module changes is how model calls reach the backends, because the official pipeline is unsafe
to run on model text and leaks state between rollouts:

- the official executor ``eval()``s model text; here calls are parsed (``calls.py``) and
  dispatched by attribute lookup to the functions visible at the current turn;
- the official executor caches backend instances in module globals keyed by model name and
  entry id; here each episode builds its own instances, and the official checker (used for
  ``score_episode``) runs under a fresh model name whose cached instances are deleted after;
- ``miss_func`` hides functions only in the official prompt; here a hidden function cannot be
  called until the turn that reveals it (that turn's user message is BFCL's reveal message);
- the official decoder drops positional arguments; here they are named in schema order.

Randomness is per episode: TravelAPI, VehicleControlAPI, MessageAPI and TradingBot draw from
a ``random.Random`` seeded by the scenario, so a replay is deterministic; calling
``authenticate_travel`` twice draws a new token and, as in BFCL, fails the state check.

Two backend methods write module globals (``MathAPI.logarithm`` sets mpmath's precision;
``VehicleControlAPI.get_outside_temperature_from_google`` mutates a shared dict in long
context); they run under a lock that restores mpmath's precision, and so does the official
checker, so episodes in threads do not see each other.
"""

import contextlib
import copy
import decimal
import functools
import importlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from parlmt.envs.base import FORCE_TERMINATED, EpisodeScore, Task, ToolEnv, cache_root, require_version
from parlmt.envs.splits import split_of

BFCL_VERSION = os.environ.get("PARLMT_BFCL_VERSION", "2026.3.23")
CATEGORIES = ("base", "miss_func", "miss_param", "long_context")
ENTRIES_PER_CATEGORY = 200

# Data errata: scenario 173 (all categories) stores TicketAPI ids as strings ('ticket_001')
# although the schemas say integer, and its ground truth closes the ticket by that string.
# The schemas calls are checked against accept both; prompts keep BFCL's schemas unchanged.
_ARGUMENT_TYPE_ERRATA = {"ticket_id": ["integer", "string"]}
_WRITES_MODULE_GLOBALS = {"logarithm", "get_outside_temperature_from_google"}
_GLOBALS_LOCK = threading.Lock()


def bfcl_project_root() -> Path:
    """Writable folder bfcl-eval creates its result/score/lock folders in at import time:
    ``$BFCL_PROJECT_ROOT``, else ``$PARLMT_CACHE/bfcl`` (default ``~/.cache/parlmt/bfcl``)."""
    if os.environ.get("BFCL_PROJECT_ROOT"):
        return Path(os.environ["BFCL_PROJECT_ROOT"])
    return cache_root() / "bfcl"


@functools.cache
def _bfcl() -> SimpleNamespace:
    """bfcl-eval's modules, imported once after checking the pinned version."""
    require_version("bfcl-eval", BFCL_VERSION, "PARLMT_BFCL_VERSION",
                    f"pip install --no-deps bfcl-eval=={BFCL_VERSION}")
    os.environ["BFCL_PROJECT_ROOT"] = str(bfcl_project_root())  # read at import: set it first
    from bfcl_eval import utils
    from bfcl_eval.constants import default_prompts, executable_backend_config
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker, multi_turn_utils

    return SimpleNamespace(
        utils=utils,
        prompts=default_prompts,
        backends=executable_backend_config,
        checker=multi_turn_checker,
        executor=multi_turn_utils,
    )


@functools.cache
def load_bfcl(category: str) -> tuple[Task, ...]:
    """The 200 tasks of a category (``base``, ``miss_func``, ``miss_param``, ``long_context``),
    read with the official loader, with ground truth and split."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; choose from {', '.join(CATEGORIES)}")
    bfcl = _bfcl()
    name = f"multi_turn_{category}"
    truths = {entry["id"]: entry["ground_truth"] for entry in bfcl.utils.load_ground_truth_entry(name)}
    reveal_message = bfcl.prompts.DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    tasks = []
    for index, entry in enumerate(bfcl.utils.load_dataset_entry(name)):
        if entry["id"] != f"{name}_{index}":
            raise RuntimeError(f"unexpected BFCL entry order: {entry['id']} at position {index}")
        revealed = {int(turn): tuple(docs) for turn, docs in entry.get("missed_function", {}).items()}
        turns = tuple(
            reveal_message if turn in revealed else "\n\n".join(m["content"] for m in messages)
            for turn, messages in enumerate(entry["question"])
        )
        tasks.append(
            Task(
                id=f"bfcl:{category}:{index}",
                turns=turns,
                tools=tuple(entry["function"]),
                initial_state=entry["initial_config"],
                ground_truth=tuple(tuple(calls) for calls in truths[entry["id"]]),
                revealed_tools=revealed,
                meta={
                    "source": "bfcl",
                    "category": category,
                    "index": index,
                    "official_id": entry["id"],
                    "classes": tuple(entry["involved_classes"]),
                    "long_context": category == "long_context",
                    "split": split_of(index, ENTRIES_PER_CATEGORY),
                },
            )
        )
    return tuple(tasks)


class BFCLEnv(ToolEnv):
    """An environment over BFCL multi-turn tasks (see the module docstring for the semantics)."""

    def _backends(self, task: Task) -> dict[str, object]:
        bfcl = _bfcl()
        backends = {}
        for class_name in task.meta["classes"]:
            module = importlib.import_module(bfcl.backends.CLASS_FILE_PATH_MAPPING[class_name])
            instance = getattr(module, class_name)()
            if class_name not in bfcl.backends.STATELESS_CLASSES:
                # long context pads the scenario inside the backend, as the official executor asks it to
                config = copy.deepcopy(task.initial_state.get(class_name, {}))
                instance._load_scenario(config, long_context=task.meta["long_context"])
            backends[class_name] = instance
        return backends

    def _call_schemas(self, task: Task) -> dict[str, dict]:
        schemas = super()._call_schemas(task)
        for name, schema in schemas.items():
            properties = schema["parameters"]["properties"]
            if _ARGUMENT_TYPE_ERRATA.keys() & properties.keys():
                patched = copy.deepcopy(schema)
                for parameter, kinds in _ARGUMENT_TYPE_ERRATA.items():
                    if parameter in properties:
                        patched["parameters"]["properties"][parameter]["type"] = kinds
                schemas[name] = patched
        return schemas

    def _invoke(self, method: Callable, kwargs: dict) -> tuple[str, bool]:
        if method.__name__ in _WRITES_MODULE_GLOBALS:
            with _module_globals_guard():  # serialising the result happens inside, too
                return super()._invoke(method, kwargs)
        return super()._invoke(method, kwargs)

    def _check_state(self, model: dict[str, object], truth: dict[str, object]) -> tuple[str, str] | None:
        result = _bfcl().checker.state_checker(model, truth)
        if result["valid"]:
            return None
        differing = ", ".join(result["details"]["differences"])
        return result["error_type"], f"{result['error_message']} Differing attributes: {differing}"

    def _check_responses(self, results: list[str], expected: list[str], turn: int) -> tuple[str, str] | None:
        result = _bfcl().checker.response_checker(results, expected, turn)
        if result["valid"]:
            return None
        missing = "; ".join(m[:200] for m in result["details"]["missing_items"])
        return result["error_type"], f"{result['error_message']} Missing: {missing}"

    def score_episode(self) -> EpisodeScore:
        """The official ``multi_turn_checker`` verdict on the executed calls, with per-turn scores."""
        ours = super().score_episode()
        if ours.error_type == FORCE_TERMINATED:
            return ours  # the official runner fails these before calling the checker
        verdict = official_check(self.task, self.executed_calls())
        if verdict["valid"]:
            return EpisodeScore(True, "", None, ours.turns)
        return EpisodeScore(False, verdict["error_message"], verdict["error_type"], ours.turns)


def official_check(task: Task, calls: list[list[list[str]]]) -> dict:
    """BFCL's ``multi_turn_checker`` verdict on ``calls`` (per turn, per step, call texts), safe
    to use from threads: backend code that writes module globals is serialised and undone.

    The checker ``eval()``s the call texts: pass only canonical calls from the parser (or BFCL's
    own ground truth).
    """
    with _module_globals_guard():
        return run_official_checker(task, calls)


def run_official_checker(task: Task, calls: list[list[list[str]]]) -> dict:
    """``multi_turn_checker`` called as BFCL's runner calls it, under a fresh model name: the
    backend instances it caches in its module globals under that name are deleted afterwards."""
    bfcl = _bfcl()
    model_name = f"parlmt_{uuid.uuid4().hex}"
    entry = {
        "id": task.meta["official_id"],
        "initial_config": task.initial_state,
        "involved_classes": list(task.meta["classes"]),
    }
    truth = [list(turn) for turn in task.ground_truth]
    try:
        return bfcl.checker.multi_turn_checker(calls, truth, entry, f"multi_turn_{task.meta['category']}", model_name)
    finally:
        cache = vars(bfcl.executor)
        for key in [key for key in cache if key.startswith(model_name)]:
            del cache[key]


@contextlib.contextmanager
def _module_globals_guard():
    """Serialise backend code that writes module globals and undo what it leaves behind."""
    import mpmath

    with _GLOBALS_LOCK, decimal.localcontext():
        precision = mpmath.mp.prec
        try:
            yield
        finally:
            mpmath.mp.prec = precision


def official_tool_docs(functions: list[dict]) -> str:
    """The tool section of BFCL's default system prompt: the schemas as indented JSON."""
    style = _bfcl().prompts.PROMPT_STYLE_TEMPLATES["classic"]
    return style["available_tools"].format(format="json", functions=json.dumps(functions, indent=4))


def official_system_prompt(functions: list[dict]) -> str:
    """BFCL's default system prompt for prompting models, as ``formulate_system_prompt`` builds it
    for ``DEFAULT_SYSTEM_PROMPT_FORMAT`` (rebuilt from the package's templates, because importing
    that function needs tree-sitter)."""
    prompts = _bfcl().prompts
    style = prompts.PROMPT_STYLE_TEMPLATES["classic"]
    return prompts.PROMPT_TEMPLATE_MAPPING["plaintext"].format(
        persona=style["persona"],
        task=style["task"],
        tool_call_format=style["tool_call_no_tag"].format(
            output_format=prompts.OUTPUT_FORMAT_MAPPING["python"],
            param_types=prompts.PARAM_TYPE_MAPPING["python"],
        ),
        multiturn_behavior=style["multiturn_behavior"],
        available_tools=official_tool_docs(functions),
    )
