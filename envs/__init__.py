"""Multi-turn tool environments: BFCL multi-turn, tau2-bench (airline, retail, telecom) and
bring-your-own Python tools.

The protocol (``ToolEnv``)
--------------------------
A ``Task`` has user turns, tool schemas (some may be revealed only at a later turn), an
initial state and, optionally, ground-truth calls per turn. An environment runs one episode
of a task at a time::

    env = make_env("bfcl:base:0")            # or BFCLEnv().reset(task); first message in env.user_message
    obs = env.step("[cd(folder='document'), mkdir(dir_name='temp')]")   # or a list of Call
    env.next_turn()                          # closes (and scores) the turn; next message, or None
    env.score_turn(0)                        # TurnScore(passed, reason, error_type, checked)
    env.score_episode()                      # EpisodeScore(passed, reason, error_type, turns)

- ``reset(task) -> str`` starts an episode and returns the first user message.
- ``step(calls) -> list[str]`` executes ``Call`` objects or raw model text (parsed safely,
  never evaluated) and returns one observation per call. Observations are strings (dicts as
  JSON), cut past ``max_observation_chars`` with a visible ``...[truncated N characters]``.
  Bad input never raises: text that does not parse gives one error observation; an unknown or
  hidden function, bad arguments or a backend exception give an error observation for that call.
- ``next_turn() -> str | None`` moves to the next user turn; ``done`` says when it is over.
- ``visible_tools()`` are the current turn's schemas; ``render_tool_docs(schemas)`` is their
  compact prompt text. ``ground_truth(turn)`` gives the turn's reference calls (for rewards).
- ``trajectory`` lists every ``Step`` with one ``CallResult`` per call; ``executed_calls()``
  the canonical text of executed calls per turn and step.
- ``reply(text)`` hands the env the agent's message that ends a turn (scripted turns ignore it;
  tau2 checks what the agent told the user, and a simulated user answers it).
- Scoring is BFCL's: after each turn with ground truth, the model's backend state must equal
  the state of a ground-truth replay, and the replay's results must all appear among the
  model's results so far. For BFCL, ``score_episode`` is the official ``multi_turn_checker``;
  for tau2 (``Tau2Env``, ``tau2.py``) it is tau2's own evaluator and ``reward()`` its reward.

Episodes own their backend instances and nothing is shared through module globals, so many
environments can run in one process and in threads. ``load_tasks(source, split)`` gives tasks
with deterministic train/dev/test splits (``splits.py``); ``select_tasks(sources, split, limit, tasks)``
is the selection every stage's ``--categories``/``--split``/``--limit``/``--tasks`` options make.
"""

from parlmt.envs.base import CallResult, EpisodeScore, Step, Task, ToolEnv, TurnScore
from parlmt.envs.bfcl import CATEGORIES, BFCLEnv, load_bfcl
from parlmt.envs.calls import Call, CallError, bind_call, parse_calls
from parlmt.envs.python_tools import PythonToolsEnv, TaskFileError, load_task_file, make_tasks, tool_schemas
from parlmt.envs.registry import load_task, load_tasks, make_env, select_tasks, sources
from parlmt.envs.splits import SPLITS, split_indices, split_of
from parlmt.envs.tau2 import Tau2Env, load_tau2
from parlmt.envs.tooldocs import TOOL_DOCS, render_tool_docs

__all__ = [
    "CATEGORIES",
    "SPLITS",
    "BFCLEnv",
    "Call",
    "CallError",
    "CallResult",
    "EpisodeScore",
    "PythonToolsEnv",
    "Step",
    "Task",
    "TaskFileError",
    "Tau2Env",
    "ToolEnv",
    "TurnScore",
    "bind_call",
    "load_bfcl",
    "load_task",
    "load_task_file",
    "load_tau2",
    "load_tasks",
    "make_env",
    "make_tasks",
    "parse_calls",
    "render_tool_docs",
    "select_tasks",
    "TOOL_DOCS",
    "sources",
    "split_indices",
    "split_of",
    "tool_schemas",
]
