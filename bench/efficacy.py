"""Efficacy: does training raise the student's replayed-turn accuracy on held-out dev entries?

Runs ``parlmt experiment`` (the recipe: PAG data, SFT, PAG-RL with and without SFT, every evaluation,
for each seed; resumable) with the options given after ``--``, then copies its ``efficacy.json``
(per variant and category: accuracy, 95% interval, gain over the base student, seeds, wall time,
commit and machine), with the command and this run's wall time, and its two plots into
``bench/results/``:

    python bench/efficacy.py --name efficacy -- --preset recipe --out outputs/recipe
"""

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLOTS = ("efficacy.png", "learning_curve.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="efficacy", help="results name: bench/results/<name>.json and "
                                                           "<name>.png, <name>-learning_curve.png")
    parser.add_argument("--out", type=Path, default=Path("outputs/recipe"),
                        help="the experiment folder (passed on as --out)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="`parlmt experiment` options, after --")
    args = parser.parse_args()
    options = [option for option in args.options if option != "--"]
    command = [sys.executable, "-m", "parlmt.cli", "experiment", *options, "--out", str(args.out)]
    print("$ parlmt " + shlex.join(command[3:]), flush=True)
    started = time.perf_counter()
    if subprocess.run(command, cwd=REPO).returncode:
        raise SystemExit("the experiment stopped; rerun the same command to resume it")
    results = json.loads((REPO / args.out / "efficacy.json").read_text())
    results["command"] = "parlmt " + shlex.join(command[3:])
    results["wall_s_this_run"] = time.perf_counter() - started
    target = REPO / "bench" / "results"
    (target / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    for plot in PLOTS:
        if (REPO / args.out / plot).is_file():
            name = f"{args.name}.png" if plot == "efficacy.png" else f"{args.name}-{plot}"
            shutil.copyfile(REPO / args.out / plot, target / name)
    print(f"-> {target / f'{args.name}.json'}")


if __name__ == "__main__":
    main()
