"""LoRA merged for sampling: milliseconds of the embedded student's prefill and decode steps with a LoRA
adapter of the recipe's shape (``PAGRLConfig``'s rank, alpha and targets: all linear layers), through
PEFT's separate LoRA path against the adapter merged into the base weights (``models.loading.merged_lora``,
what PAG-RL rollouts sample with): the prefill of one 1,500-token prompt, and a decode step on that
context with 1 and 8 rows (the same prefilled cache, copied; the same steps). The two alternate; each
figure is the median over repetitions. Also the seconds one merge takes (copying the base weights, then
merging) and the largest logit difference of the first steps (the merged weights round once; the
adapter's B is random here, far larger than a trained one's).

    python bench/merge.py [--dtype auto] [--steps 24] [--repeats 3] [--out bench/results/merge.json]
"""

import argparse
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from statistics import median

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from attention import CONTEXT, decode, prefill, write_report  # noqa: E402

from parlmt.models import ModelConfig, load_model  # noqa: E402
from parlmt.models.attention import NAME  # noqa: E402
from parlmt.models.loading import merged_lora  # noqa: E402
from parlmt.rl.config import PAGRLConfig  # noqa: E402

ROWS = (1, 8)


def main() -> None:
    from peft import LoraConfig, get_peft_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "merge.json")
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    recipe = PAGRLConfig()
    model, _ = load_model(ModelConfig(dtype=args.dtype))
    torch.manual_seed(0)  # B nonzero, as after training (PEFT starts it at zero)
    model = get_peft_model(model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                             target_modules=recipe.lora_targets(), init_lora_weights=False))
    model.eval()
    starts = {rows: prefill(model, rows, 0) for rows in ROWS}
    times = {variant: {part: [] for part in ("prefill", *ROWS)} for variant in ("unmerged", "merged")}
    first, merges = {}, []
    for _ in range(args.repeats):
        for variant, figures in times.items():
            started = time.perf_counter()
            with merged_lora(model) if variant == "merged" else nullcontext():
                merges.append(time.perf_counter() - started)
                started = time.perf_counter()
                prefill(model, 1, 0)
                figures["prefill"].append(1000 * (time.perf_counter() - started))
                for rows, start in starts.items():
                    ms, logits = decode(model, NAME, start, args.steps)
                    figures[rows].append(ms)
                    first[variant, rows] = logits[0]
    parts = {"prefill, 1 row of 1,500 tokens (ms)": "prefill",
             **{f"decode step, {rows} row{'s' * (rows > 1)} (ms)": rows for rows in ROWS}}
    results = {}
    for name, part in parts.items():
        unmerged, merged = median(times["unmerged"][part]), median(times["merged"][part])
        results[name] = {"unmerged": round(unmerged, 1), "merged": round(merged, 1),
                         "speedup": round(unmerged / merged, 2),
                         "each_repeat": {variant: [round(ms, 1) for ms in times[variant][part]] for variant in times}}
    for rows in ROWS:  # from the same cache; the merged weights round once
        results[f"decode step, {rows} row{'s' * (rows > 1)} (ms)"]["first_step_max_logit_difference"] = float(
            (first["merged", rows] - first["unmerged", rows]).abs().max())
    print(json.dumps(results, indent=2), flush=True)
    report = {
        "benchmark": "merge", "model": "embedded:student (Qwen2.5-Coder-0.5B-Instruct)",
        "lora": {"r": recipe.lora_r, "alpha": recipe.lora_alpha, "targets": recipe.lora_target_modules},
        "dtype": str(model.dtype), "context_tokens": CONTEXT, "steps": args.steps, "repeats": args.repeats,
        "results": results, "merge_s": round(median(merges[1::2]), 2),
        "command": f"python bench/merge.py --dtype {args.dtype} --steps {args.steps} --repeats {args.repeats}",
    }
    write_report(report, args.out, load_at_start)


if __name__ == "__main__":
    main()
