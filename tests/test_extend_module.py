"""A new module touches its signature and the program that composes it, nothing else: a ``Reflect`` step,
defined only in this file, flows through the reference (PAG) rows of ``parlmt train data``, the PAG
dataset's SFT rows (optimize/), and one PAG-RL step on the tiny model.

The program is registered in ``PROGRAMS`` and the oracle's answer for the signature in ``oracle.ANSWERS``
(both undone after each test): that is all the rest of the package needs to know about it."""

import dspy
import pytest

from parlmt.envs import load_task
from parlmt.optimize.config import PAGConfig
from parlmt.optimize.dataset import collect
from parlmt.optimize.pag import play_task
from parlmt.programs.agents import PROGRAMS, ProgressAwareAgent
from parlmt.programs.oracle import ANSWERS, remaining_calls
from parlmt.programs.trajectory import ACT
from parlmt.rl.config import PAGRLConfig
from parlmt.rl.data import reference_rows
from parlmt.signatures import Act, Plan, Summarize

TASK = "py:todo:0"  # two turns, one call each


class Reflect(dspy.Signature):
    """Reflect on the progress so far: say what is left to do for the user's current request."""

    summary: str = dspy.InputField(desc="progress so far")
    request: str = dspy.InputField(desc="the user's current request")
    reflection: str = dspy.OutputField(desc="one sentence on what is left to do")


class ReflectingAgent(ProgressAwareAgent):
    """Summarize -> Reflect -> Plan -> Act: the reflection joins the summary that Plan and Act read."""

    program_name = "reflecting"
    MODULES = (("summarize", Summarize), ("reflect", Reflect), ("plan", Plan), (ACT, Act))

    def summarize_progress(self, episode, current_turn: bool = False) -> str:
        summary = super().summarize_progress(episode, current_turn)
        reflection = episode.text("reflect", self.reflect, "reflection", summary=summary, request=episode.request)
        return f"{summary}\nReflection: {reflection}"


def reflect_answer(env, calls_per_step) -> dict[str, str]:
    return {"reflection": f"{len(remaining_calls(env))} call(s) left for this request."}


@pytest.fixture
def reflecting(monkeypatch):
    monkeypatch.setitem(PROGRAMS, ReflectingAgent.program_name, ReflectingAgent)
    monkeypatch.setitem(ANSWERS, Reflect, reflect_answer)


def modules_by_turn(rows: list[dict]) -> dict[int, list[str]]:
    by_turn = {}
    for row in rows:
        by_turn.setdefault(row["turn"], []).append(row["module"])
    return by_turn


def test_reference_rows_include_the_new_module_in_call_order(reflecting):
    rows = reference_rows([load_task(TASK)], program="reflecting")
    # Turn 0 has nothing to summarize (no LM call); each turn's calls come in one Act step, then the reply.
    assert modules_by_turn(rows) == {0: ["reflect", "plan", "act", "act"],
                                     1: ["summarize", "reflect", "plan", "act", "act"]}
    reflect = next(r for r in rows if r["module"] == "reflect")
    assert "[[ ## request ## ]]" in reflect["prompt"][-1]["content"]
    assert reflect["completion"][0]["content"].startswith("[[ ## reflection ## ]]\n1 call(s) left")
    act = next(r for r in rows if r["module"] == "act")
    assert "Reflection: 1 call(s) left" in act["prompt"][-1]["content"]  # the program fed it to Act
    assert {r["module"] for r in reference_rows([load_task(TASK)], "reflecting", modules=["reflect"])} == {"reflect"}
    with pytest.raises(ValueError, match="progress program has no module reflect"):
        reference_rows([load_task(TASK)], modules=["reflect"])


def test_pag_records_and_sft_rows_include_the_new_module(reflecting, tmp_path):
    config = PAGConfig(program="reflecting", verify_student=False, out=str(tmp_path / "pag"))
    entry = play_task(load_task(TASK), config, program=None, lm=None, check=None)
    assert entry["status"] == "done" and entry["passed"]
    assert [m["module"] for m in entry["modules"]] == ["reflect", "plan", "summarize", "reflect", "plan"]
    accepted, rejected, sft = collect({TASK: entry})
    assert len(accepted) == 4 and not rejected
    assert modules_by_turn(sft) == {0: ["reflect", "plan", "act", "act"],
                                    1: ["summarize", "reflect", "plan", "act", "act"]}
    # The same module call renders the same row on both data paths.
    reference = [r for r in reference_rows([load_task(TASK)], program="reflecting") if r["module"] == "reflect"]
    assert [r for r in sft if r["module"] == "reflect"] == reference


SCRIPT = {  # what ScriptedPolicy (conftest.py) writes at turn 1 of TASK, by the output field the prompt asks for
    "summary": ["Turn 1: add_item(title='buy milk', tags=['home'])."],
    "reflection": ["One call left: add file taxes."],
    "plan": ["1. add_item(title='file taxes', priority=1)"],
    # One Act step and the capped one after it: rollouts alternate a right call (the turn passes) and a broken one.
    "calls": ["[add_item(title='file taxes', priority=1)]", "[add_item(title='file", "[add_item(title='file",
              "[add_item(title='file"],
}


@pytest.mark.slow
def test_one_pag_rl_step_trains_on_the_new_module(reflecting, tiny_model_dir, scripted_trainer, tmp_path):
    config = PAGRLConfig(model=str(tiny_model_dir), dtype="float32", program="reflecting", categories="py:todo",
                         tasks=TASK, start_turns="1", num_generations=2, states_per_step=1, max_completion_tokens=12,
                         max_steps_per_turn=1, max_steps=1, save_steps=0, eval_steps=0, learning_rate=5e-3,
                         lora_r=4, lora_alpha=8, batch_rollouts=False, output_dir=str(tmp_path / "rl"),
                         mlruns=str(tmp_path / "mlruns"))
    trainer = scripted_trainer(config, SCRIPT)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    table = trainer.pop_table()
    assert [r["module"] for r in table if r["rollout"] == 0] == ["summarize", "reflect", "plan", "act", "act"]
    reflect = [r for r in table if r["module"] == "reflect"]
    # One group (task, turn, reflect, call 0) across the two rollouts; the turn passed in one of them only.
    assert len(reflect) == 2 and sorted(r["reward_turn"] for r in reflect) == [0.0, 1.0]
    assert reflect[0]["advantage"] == -reflect[1]["advantage"] != 0
    assert trainer.state.log_history[0]["pag/samples_reflect"] == 2
    assert any(not p.equal(before[n]) for n, p in trainer.model.named_parameters() if n in before)
