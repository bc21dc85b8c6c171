"""PAG bootstrapping throughput: steps per minute, acceptance rate, and where the time goes.

Teachers on the same BFCL train tasks: the reference oracle and ``embedded:teacher`` (the 1.5B,
in-process; needs ``make teacher``), both with model-aware verification by the embedded student.
The ratio is against the reference teacher, measured in the same run.

    python bench/optimize.py [--limit 1] [--teachers reference,embedded:teacher] [--no-verify-student]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from parlmt.models import ModelConfig, TransformersLM
from parlmt.optimize import PAGConfig, StudentCheck, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1, help="train tasks per category")
    parser.add_argument("--categories", default="base")
    parser.add_argument("--teachers", default="reference,embedded:teacher")
    parser.add_argument("--no-verify-student", dest="verify", action="store_false")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "optimize.json")
    args = parser.parse_args()

    started = time.perf_counter()
    check = StudentCheck(TransformersLM(ModelConfig(), max_tokens=160)) if args.verify else None
    student_load_s = time.perf_counter() - started
    results = {}
    for teacher in args.teachers.split(","):
        with tempfile.TemporaryDirectory() as folder:
            config = PAGConfig(teacher=teacher, categories=args.categories, limit=args.limit,
                               verify_student=args.verify, out=f"{folder}/pag", mlruns=f"{folder}/mlruns")
            started = time.perf_counter()
            summary = run(config, check=check)
            wall_s = time.perf_counter() - started
        results[teacher] = {
            "tasks": summary["tasks"], "tasks_passed": summary["tasks_passed"], "steps": summary["steps"],
            "steps_accepted": summary["steps_accepted"], "acceptance_rate": round(summary["acceptance_rate"], 3),
            "rejected_by_reason": summary["rejected_by_reason"], "wall_s": round(wall_s, 1),
            "steps_per_minute": round(summary["steps"] / wall_s * 60, 2),
            "time_s": {"teacher_lm": summary["time_teacher_lm_s"], "student_verification": summary["time_verify_s"],
                       "environment": summary["time_env_s"]},
        }
    reference = results.get("reference", {}).get("steps_per_minute")
    if reference:
        for result in results.values():
            result["steps_per_minute_vs_reference"] = round(result["steps_per_minute"] / reference, 3)
    report = {"benchmark": "optimize", "categories": args.categories, "limit_per_category": args.limit,
              "model_aware_verification": args.verify, "student_load_s": round(student_load_s, 1),
              "results": results}
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
