"""Training data: the PAG dataset contract (SFT), reference rows from ground truth, RL states.

The PAG dataset
---------------
The SFT warm-up reads a Hugging Face ``datasets`` dataset (a ``save_to_disk`` folder, or a
``.parquet`` / ``.jsonl`` file) in TRL's conversational prompt-completion format, one row per
module call of a verified trajectory:

- ``prompt``: the chat messages ``[{"role", "content"}, ...]`` exactly as the student's DSPy
  adapter (``dspy.ChatAdapter``) renders the module's signature and inputs;
- ``completion``: ``[{"role": "assistant", "content": ...}]``, the module's outputs in the same
  adapter's format (``[[ ## field ## ]]`` sections, then ``[[ ## completed ## ]]``);
- ``module`` (a module name the program declares: ``summarize`` | ``plan`` | ``act`` for the progress
  program), ``task_id``, ``turn``, ``step``: where the call happened, for filtering and statistics.

optimize/ produces it from the teacher's verified trajectories; ``reference_rows`` produces it
from the ground truth alone (the calls of each turn, their numbered list as the plan, the calls
and results of earlier turns as the summary, the environment's reference reply at each turn's end): the
reference data path, used in tests and as an SFT baseline. For tau2 a task is one conversation: Act makes
the agent's expected actions (tau2's order) and replies with what the task wants communicated (and, in
telecom, the steps the customer takes on their phone, which they then carry out: ``Tau2Env.reference``).

RL states
---------
``state_rows`` lists the ``(task_id, turn)`` states GRPO samples from, with the turn's user
message as ``prompt`` (what TRL's tables show; the rollout renders its own prompts).
"""

from collections.abc import Iterable
from pathlib import Path

import dspy

from parlmt.envs import Task, make_env
from parlmt.envs.splits import fixed_share
from parlmt.programs.agents import program_class
from parlmt.programs.oracle import oracle_program
from parlmt.programs.trajectory import ACT, SFT_COLUMNS, ModuleCall, sft_row


def reference_rows(tasks: Iterable[Task], program: str = "progress", modules: Iterable[str] | None = None,
                   max_steps_per_turn: int = 20, tool_docs: str = "full", replies: float = 1.0,
                   refresh: str = "turn") -> list[dict]:
    """PAG rows of every module call (or those of ``modules``) when ``program`` plays each task from its
    ground truth (``max_steps_per_turn``, ``tool_docs`` and ``refresh``: the program's options).

    ``replies`` is the share of Act reply rows kept (the step that ends a turn with no calls): a turn's
    calls come in one step, so otherwise every other Act row is a reply, and a small student trained on
    that mix learns to reply at once. Which turns keep theirs is fixed by a hash of (task, turn).
    """
    wanted = check_reference_options(program, modules, replies)
    rows = []
    for task in tasks:
        env = make_env(task, reference=True, max_steps_per_turn=max_steps_per_turn)
        agent = oracle_program(program, env, calls_per_step=None, max_steps_per_turn=max_steps_per_turn,
                               refresh=refresh, tool_docs=tool_docs)
        with dspy.context(adapter=dspy.ChatAdapter()):
            trajectory = agent(task=env).trajectory
        rows += [sft_row(call.module, call.inputs, call.outputs, task.id, call.turn, call.step)
                 for call in trajectory.module_calls if call.module in wanted
                 and not (_is_reply(call) and fixed_share(f"{task.id}@{call.turn}") >= replies)]
    return rows


def check_reference_options(program: str, modules: Iterable[str] | None, replies: float) -> set[str]:
    """The modules whose rows ``reference_rows`` keeps (``modules``, or all that ``program`` declares);
    ``ValueError`` for an unknown program or module, or ``replies`` outside [0, 1]."""
    if not 0.0 <= replies <= 1.0:
        raise ValueError(f"replies is a share of the reply rows, between 0 and 1; got {replies}")
    declared = program_class(program).module_names()
    wanted = set(modules or declared)
    if wanted - set(declared):
        raise ValueError(f"the {program} program has no module {', '.join(sorted(wanted - set(declared)))}; "
                         f"its modules are {', '.join(declared)}")
    return wanted


def _is_reply(call: ModuleCall) -> bool:
    return call.module == ACT and call.outputs.get("calls") == "[]"


def write_reference_rows(config, tasks: list[Task]) -> tuple[Path, dict[str, int]]:
    """``parlmt train data`` (and the demo's data stage): the reference rows of ``tasks`` as ``config`` (a
    ``DataConfig``) says, written to ``config.out``; the path and the rows per module. ``ValueError`` when
    the tasks give no row."""
    rows = reference_rows(tasks, program=config.program, modules=config.module_names(),
                          max_steps_per_turn=config.max_steps_per_turn, tool_docs=config.tool_docs,
                          replies=config.replies, refresh=config.refresh)
    if not rows:
        raise ValueError(f"the reference teacher made no rows from {len(tasks)} tasks")
    counts = {m: sum(r["module"] == m for r in rows) for m in sorted({r["module"] for r in rows})}
    return save_rows(rows, config.out), counts


def save_rows(rows: list[dict], path: str | Path) -> Path:
    """Write rows as a dataset: a ``save_to_disk`` folder, or a ``.parquet`` / ``.jsonl`` file."""
    from datasets import Dataset

    path = Path(path)
    dataset = Dataset.from_list(rows)
    if path.suffix == ".parquet":
        dataset.to_parquet(str(path))
    elif path.suffix == ".jsonl":
        dataset.to_json(str(path), lines=True)
    else:
        dataset.save_to_disk(str(path))
    return path


def load_pag_dataset(path: str | Path):
    """A PAG dataset from a ``save_to_disk`` folder or a ``.parquet`` / ``.jsonl`` file, checked
    against the contract (``ValueError`` naming what is missing)."""
    from datasets import load_dataset, load_from_disk

    path = Path(path)
    if path.is_dir():
        dataset = load_from_disk(str(path))
    elif path.suffix in (".parquet", ".jsonl", ".json"):
        kind = "parquet" if path.suffix == ".parquet" else "json"
        dataset = load_dataset(kind, data_files=str(path), split="train")
    else:
        raise ValueError(f"{path}: expected a dataset folder (save_to_disk), a .parquet or a .jsonl file")
    missing = [column for column in SFT_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{path} lacks the PAG dataset column(s) {', '.join(missing)} (see parlmt.rl.data)")
    first = dataset[0]
    if not (isinstance(first["prompt"], list) and first["completion"][0].get("role") == "assistant"):
        raise ValueError(f"{path}: prompt must be a list of chat messages and completion one assistant message")
    return dataset


def state_rows(tasks: Iterable[Task], turns: Iterable[int] | None = None) -> list[dict]:
    """One row per ``(task, turn)`` state (``turns`` None: every turn of each task)."""
    rows = []
    for task in tasks:
        for turn in range(len(task.turns)) if turns is None else [t for t in turns if t < len(task.turns)]:
            rows.append({"prompt": [{"role": "user", "content": task.turns[turn]}], "task_id": task.id, "turn": turn})
    return rows
