"""Decode attention: milliseconds per decode step of the embedded student with transformers' SDPA against
``models.attention.packed_sdpa_attention``, on a 1,500-token context, per batch layout: one row, equal rows
(no mask: transformers' SDPA has torch expand the key/value heads) and padded rows (a mask: both take the
packed layout). Same model, same prefilled cache (copied), same steps; the two implementations alternate,
and each figure is the median step over repetitions. Also the largest logit difference of their first
steps (from the same cache; bfloat16 rounds), and whether their greedy tokens agree over all steps.

    python bench/attention.py [--dtype auto] [--steps 24] [--repeats 3] [--out bench/results/attention.json]
"""

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from parlmt.models import ModelConfig, load_model  # noqa: E402
from parlmt.models.attention import NAME  # noqa: E402
from parlmt.models.loading import default_dtype  # noqa: E402
from parlmt.tracking import cpu_model  # noqa: E402

CONTEXT = 1500
LAYOUTS = {"1 row": (1, 0), "8 equal rows": (8, 0), "8 padded rows": (8, 100)}


def prefill(model, rows: int, padding: int) -> tuple:
    """The cache, next tokens and mask after a prefill of ``rows`` rows (the first half left-padded by
    ``padding``)."""
    torch.manual_seed(0)
    ids = torch.randint(100, 20000, (rows, CONTEXT))
    mask = torch.ones_like(ids)
    mask[: rows // 2, :padding] = 0
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    return out.cache, out.logits[:, -1:].argmax(-1), mask


def decode(model, implementation: str, start: tuple, steps: int) -> tuple[float, torch.Tensor]:
    """Median ms per greedy decode step from a copy of the prefill ``start``, and the steps' logits."""
    model.set_attn_implementation(implementation)
    cache, token, mask = copy.deepcopy(start)
    seconds, logits = [], []
    with torch.no_grad():
        for _ in range(steps):
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
            started = time.perf_counter()
            out = model(input_ids=token, attention_mask=mask, cache=cache, use_cache=True)
            seconds.append(time.perf_counter() - started)
            token = out.logits[:, -1:].argmax(-1)
            logits.append(out.logits[:, -1].float())
    return 1000 * median(seconds), torch.stack(logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attention.json")
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    model, _ = load_model(ModelConfig(dtype=args.dtype))
    layouts = {}
    for name, (rows, padding) in LAYOUTS.items():
        start, times = prefill(model, rows, padding), {"sdpa": [], NAME: []}
        for _ in range(args.repeats):
            for implementation in times:
                ms, logits = decode(model, implementation, start, args.steps)
                times[implementation].append(ms)
                if implementation == "sdpa":
                    reference = logits
        plain, packed = median(times["sdpa"]), median(times[NAME])
        layouts[name] = {"sdpa_ms_per_step": round(plain, 1), "packed_ms_per_step": round(packed, 1),
                         "speedup": round(plain / packed, 2),
                         # the first step reads the same cache on both; later ones may follow other greedy tokens
                         "first_step_max_logit_difference": float((logits[0] - reference[0]).abs().max()),
                         "same_greedy_tokens": bool((logits.argmax(-1) == reference.argmax(-1)).all())}
        print(name, layouts[name], flush=True)
    report = {
        "benchmark": "attention", "model": "embedded:student (Qwen2.5-Coder-0.5B-Instruct, 14 query heads on 2 "
                                           "key/value heads)",
        "dtype": str(model.dtype), "context_tokens": CONTEXT, "steps": args.steps, "repeats": args.repeats,
        "layouts": layouts,
        "command": f"python bench/attention.py --dtype {args.dtype} --steps {args.steps} --repeats {args.repeats}",
    }
    write_report(report, args.out, load_at_start)


def write_report(report: dict, out: Path, load_at_start: float) -> None:
    """Write ``report`` to ``out`` (and print it) with the machine, torch, dtype choice and load it ran under."""
    report |= {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}", "torch": torch.__version__,
               "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "default_dtype_reason": default_dtype()[1],
               "load_avg_at_start": load_at_start, "load_avg_at_end": round(os.getloadavg()[0], 2)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
