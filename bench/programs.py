"""Progress-aware vs full-history agents: prompt tokens per Act call, and framework overhead per step.

1. Tokens, replay: both programs replay each entry's ground truth (DSPy's DummyLM answers; the
   progress agent's summary lists the calls done so far, its plan the turn's calls), and every
   Act prompt is counted with the student's tokenizer and chat template, exactly as the
   in-process student would see it. Deterministic, so the two programs see the same episode.
2. Tokens, live (``--student``): both programs run the embedded student (greedy) on the same
   entries; prompt tokens as the model reports them. The student's own actions decide how many
   turns each episode reaches.
3. Overhead: time outside LM calls / time inside them, per Act step, for the scripted LM (pure
   framework cost) and, with ``--student``, for the student. LM time is measured by a DSPy
   callback around each LM call.

    python bench/programs.py [--tasks bfcl:base:0,...] [--student] [--student-tasks bfcl:base:3]
                             [--max-steps-per-turn 4] [--max-tokens 128] [--out bench/results/programs.json]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path
from statistics import mean

import dspy
from dspy.utils import DummyLM
from dspy.utils.callback import BaseCallback

from parlmt.envs import load_task
from parlmt.programs import FullHistoryAgent, ProgressAwareAgent
from parlmt.programs.trajectory import ACT


class LMTimer(BaseCallback):
    """Adds up wall time spent inside LM calls (from the call's start to its end)."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.total_s = 0.0

    def on_lm_start(self, call_id, instance, inputs):
        self.started[call_id] = time.perf_counter()

    def on_lm_end(self, call_id, outputs, exception=None):
        self.total_s += time.perf_counter() - self.started.pop(call_id)


def timed_episode(program: dspy.Module, task, lm: dspy.BaseLM) -> tuple:
    timer = LMTimer()
    started = time.perf_counter()
    with dspy.context(lm=lm, callbacks=[timer]):
        trajectory = program(task=task).trajectory
    return trajectory, time.perf_counter() - started, timer.total_s


def overhead(runs: list[tuple]) -> dict:
    wall = sum(r[1] for r in runs)
    lm_s = sum(r[2] for r in runs)
    steps = sum(len(r[0].steps) for r in runs)
    return {"act_steps": steps, "wall_s": round(wall, 3), "lm_s": round(lm_s, 3),
            "outside_lm_ms_per_step": round(1000 * (wall - lm_s) / steps, 3),
            "outside_over_inside": round((wall - lm_s) / lm_s, 5) if lm_s else None}


def replay_answers(task, program: str) -> list[dict]:
    """A script that solves ``task`` with its ground truth, one call per Act step; for the progress
    agent, a summary that lists the calls done so far and a plan that lists the turn's calls."""
    answers = []
    for turn, calls in enumerate(task.ground_truth):
        if program == "progress":
            done = [f"Turn {t + 1}: {', '.join(c) or 'nothing could be done'}." for t, c in
                    enumerate(task.ground_truth[:turn])]
            answers += [{"summary": " ".join(done)}] if turn else []
            answers.append({"plan": "\n".join(f"{i + 1}. {c}" for i, c in enumerate(calls)) or "1. reply"})
        answers += [{"calls": f"[{c}]", "reply": ""} for c in calls]
        answers.append({"calls": "[]", "reply": "Done."})
    return answers


def token_figures(trajectories: list, count) -> dict:
    acts = [c for t in trajectories for c in t.calls_of(ACT)]
    by_turn = {}
    for call in acts:
        by_turn.setdefault(call.turn + 1, []).append(count(call))
    late = [n for turn, tokens in by_turn.items() if turn >= 3 for n in tokens]
    return {
        "act_calls": len(acts),
        "mean_act_prompt_tokens": round(mean(count(c) for c in acts), 1),
        "mean_act_prompt_tokens_turn3plus": round(mean(late), 1) if late else None,
        "by_turn": {str(turn): round(mean(tokens), 1) for turn, tokens in sorted(by_turn.items())},
        "turns_played": [len(t.turns) for t in trajectories],
        "passed": [t.passed for t in trajectories],
        "summarize_plan_prompt_tokens": sum(count(c) for t in trajectories for c in t.module_calls
                                            if c.module != ACT),
    }


def ratio(tokens: dict) -> float | None:
    late = [tokens[name]["mean_act_prompt_tokens_turn3plus"] for name in ("fullhistory", "progress")]
    return round(late[0] / late[1], 3) if all(late) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(f"bfcl:base:{i}" for i in range(10)))
    parser.add_argument("--student", action="store_true", help="also run the embedded student live")
    parser.add_argument("--student-tasks", default="bfcl:base:3")
    parser.add_argument("--max-steps-per-turn", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/results/programs.json"))
    args = parser.parse_args()
    from parlmt.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:student")

    def chat_tokens(call) -> int:  # what TransformersLM reports as prompt tokens for these messages
        return len(tokenizer.apply_chat_template(call.messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])

    tasks = [load_task(t) for t in args.tasks.split(",")]
    programs = {"progress": ProgressAwareAgent, "fullhistory": FullHistoryAgent}
    replay = {name: [timed_episode(build(), task, DummyLM(replay_answers(task, name))) for task in tasks]
              for name, build in programs.items()}
    replay_tokens = {name: token_figures([r[0] for r in runs], chat_tokens) for name, runs in replay.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "replay": {"tasks": args.tasks, "tokenizer": "embedded:student chat template",
                   "act_prompt_tokens": replay_tokens,
                   "fullhistory_over_progress_turn3plus": ratio(replay_tokens)},
        "overhead": {f"scripted_{name}": overhead(runs) for name, runs in replay.items()},
    }
    if args.student:
        from parlmt.models import ModelConfig, TransformersLM

        lm = TransformersLM(ModelConfig(), max_tokens=args.max_tokens)
        student_tasks = [load_task(t) for t in args.student_tasks.split(",")]
        live = {name: [timed_episode(build(max_steps_per_turn=args.max_steps_per_turn), task, lm)
                       for task in student_tasks] for name, build in programs.items()}
        live_tokens = {name: token_figures([r[0] for r in runs], lambda c: c.prompt_tokens)
                       for name, runs in live.items()}
        result["student"] = {"tasks": args.student_tasks, "max_steps_per_turn": args.max_steps_per_turn,
                             "max_tokens": args.max_tokens,
                             "lm": "embedded:student (Qwen2.5-Coder-0.5B-Instruct, bf16, greedy, transformers)",
                             "act_prompt_tokens": live_tokens,
                             "fullhistory_over_progress_turn3plus": ratio(live_tokens)}
        result["overhead"] |= {f"student_{name}": overhead(runs) for name, runs in live.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
