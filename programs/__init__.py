"""The progress-aware agent and its baseline as DSPy modules, their trajectories and evaluation.

- ``agents``: ``ProgressAwareAgent`` (Summarize -> Plan -> Act) and ``FullHistoryAgent`` (Act on raw history).
- ``episode``: the bookkeeping both share (prompts from the environment, recorded module calls, scoring).
- ``parsing``: Act's calls text -> ``Call`` objects (Python calls, JSON, fences, ``<tool_call>`` tags).
- ``trajectory``: the per-episode record, saved as JSON lines; what optimize/ and rl/ consume.
- ``metrics``: DSPy metrics for optimizers and the aggregate figures of an evaluation (pass^k over trials).
- ``evaluate``: threaded, resumable runs over tasks, as MLflow runs; official BFCL result files.
- ``oracle``: the ground-truth oracle as the agent's modules (reference teacher, RL replay, SFT rows).
- ``user``: ``SimulatedUser``, a tau2 customer (tau2's user-simulator prompt) played by any DSPy LM.

Names are imported on first use (PEP 562) so that ``parlmt --help`` does not load DSPy.
"""

from parlmt import lazy_exports

_EXPORTS = {
    "ProgressAwareAgent": "agents", "FullHistoryAgent": "agents", "build_program": "agents",
    "load_program": "agents", "PROGRAMS": "agents",
    "Episode": "episode",
    "extract_calls": "parsing", "salvage_calls": "parsing",
    "Trajectory": "trajectory", "ModuleCall": "trajectory", "ActStep": "trajectory", "TurnRecord": "trajectory",
    "append_jsonl": "trajectory", "read_jsonl": "trajectory",
    "task_success": "metrics", "turn_accuracy": "metrics", "feedback": "metrics", "examples": "metrics",
    "aggregate": "metrics", "by_category": "metrics", "act_prompt_tokens_by_turn": "metrics",
    "trials": "metrics", "pass_hat_k": "metrics",
    "oracle_program": "oracle",
    "run_episodes": "evaluate", "EvalResult": "evaluate", "bfcl_results": "evaluate", "write_bfcl_results": "evaluate",
    "SimulatedUser": "user",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
