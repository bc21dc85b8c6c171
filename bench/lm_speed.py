"""Student inference speed: prompt (prefill) and generation tokens/s, per backend, same prompts.

Backends: the in-process ``TransformersLM`` in bfloat16 and float32, and llama.cpp's
server when ``llama-cpp-python`` is installed. Each backend runs in its own process so
its peak RSS is its own. Ratios are against transformers in the dtype this machine's CPU gets
by default (``models.loading.default_dtype``), measured in the same run; the CPU model, torch's
CPU capability and the default dtype's reason go into the JSON.

    python bench/lm_speed.py [--new-tokens 64] [--out bench/results/lm_speed.json]
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from parlmt.tracking import cpu_model

TOOLS = [
    {"type": "function", "function": {
        "name": name, "description": f"{name.replace('_', ' ').capitalize()} in the user's workspace.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "A file or folder path relative to the current folder."},
            "content": {"type": "string", "description": "Text to write, when the operation writes."},
        }, "required": ["path"]}}}
    for name in ["list_files", "read_file", "write_file", "delete_file", "move_file", "copy_file", "make_folder",
                 "search_files", "file_size", "change_folder", "word_count", "sort_lines"]
]
PROMPTS = [
    [{"role": "user", "content": "Write a Python function that checks whether a string is a palindrome, "
                                 "with a docstring and three doctests."}],
    [{"role": "system", "content": "You manage files. Call the tools to do what the user asks."},
     {"role": "user", "content": "Create a folder named reports, move every .csv file from data into it, "
                                 "then tell me how many words the largest one has."}],
]


def run_transformers(dtype: str, new_tokens: int) -> dict:
    from parlmt.models import ModelConfig, TransformersLM

    started = time.perf_counter()
    lm = TransformersLM(ModelConfig(dtype=dtype), prefix_cache=False)  # each call pays its whole prefill
    load_s = time.perf_counter() - started
    lm.generate(PROMPTS[0], max_tokens=4)  # warm-up: first call pays one-off allocation costs
    prefill, decode, rows = [], [], []
    for index, messages in enumerate(PROMPTS):
        tools = TOOLS if index else None
        started = time.perf_counter()
        first = lm.generate(messages, tools=tools, max_tokens=1)
        prefill_s = time.perf_counter() - started
        started = time.perf_counter()
        full = lm.generate(messages, tools=tools, max_tokens=new_tokens)
        total_s = time.perf_counter() - started
        generated = len(full.completion_ids)
        prefill.append(len(first.prompt_ids) / prefill_s)
        decode.append((generated - 1) / (total_s - prefill_s))
        rows.append({"prompt_tokens": len(first.prompt_ids), "generated_tokens": generated,
                     "prefill_s": round(prefill_s, 3), "total_s": round(total_s, 3)})
    return {"load_s": round(load_s, 1), "prompt_tok_s": round(median(prefill), 1),
            "gen_tok_s": round(median(decode), 2), "prompts": rows}


def run_llama_cpp(new_tokens: int) -> dict:
    import urllib.request

    from parlmt.models import LlamaServer

    def post(server, messages, tools, max_tokens):
        body = {"model": server.alias, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
        if tools:
            body["tools"] = tools
        request = urllib.request.Request(f"{server.api_base}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            usage = json.load(response)["usage"]
        return usage, time.perf_counter() - started

    started = time.perf_counter()
    with LlamaServer("embedded:student", n_ctx=4096) as server:
        load_s = time.perf_counter() - started
        post(server, PROMPTS[0], None, 4)
        prefill, decode, rows = [], [], []
        for index, messages in enumerate(PROMPTS):
            tools = TOOLS if index else None
            post(server, [{"role": "user", "content": "reset the prompt cache"}], None, 1)
            usage, prefill_s = post(server, messages, tools, 1)
            # llama.cpp reuses the cached prompt prefix, so this second call is (almost) decode only.
            full, total_s = post(server, messages, tools, new_tokens)
            prefill.append(usage["prompt_tokens"] / prefill_s)
            decode.append(full["completion_tokens"] / total_s)
            rows.append({"prompt_tokens": usage["prompt_tokens"], "generated_tokens": full["completion_tokens"],
                         "prefill_s": round(prefill_s, 3), "decode_s": round(total_s, 3)})
        peak_kb = int(next(line.split()[1] for line in Path(f"/proc/{server.process.pid}/status").read_text()
                           .splitlines() if line.startswith("VmHWM")))
    return {"load_s": round(load_s, 1), "prompt_tok_s": round(median(prefill), 1),
            "gen_tok_s": round(median(decode), 2), "prompts": rows, "server_peak_rss_mb": round(peak_kb / 1024)}


def child(backend: str, new_tokens: int) -> None:
    result = run_llama_cpp(new_tokens) if backend == "llama.cpp" else run_transformers(backend.split(":")[1],
                                                                                       new_tokens)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def main() -> None:
    import torch

    from parlmt.models.loading import default_dtype

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lm_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.new_tokens)

    load_at_start = round(os.getloadavg()[0], 2)
    backends = ["transformers:bfloat16", "transformers:float32"]
    if importlib.util.find_spec("llama_cpp"):
        backends.append("llama.cpp")
    results = {}
    for backend in backends:
        print(f"running {backend} ...", file=sys.stderr)
        done = subprocess.run([sys.executable, __file__, "--child", backend, "--new-tokens", str(args.new_tokens)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            results[backend] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    default, reason = default_dtype("cpu")
    base = results[f"transformers:{default}"]
    for result in results.values():
        if "error" not in result and "error" not in base:
            result["gen_speed_vs_default"] = round(result["gen_tok_s"] / base["gen_tok_s"], 2)
            result["prompt_speed_vs_default"] = round(result["prompt_tok_s"] / base["prompt_tok_s"], 2)
    report = {"benchmark": "lm_speed", "model": "embedded:student (Qwen2.5-Coder-0.5B-Instruct Q4_K_M)",
              "new_tokens": args.new_tokens, "cpus": os.cpu_count(), "machine": platform.machine(),
              "cpu": cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "default_dtype": default, "default_dtype_reason": reason,
              "load_avg_at_start": load_at_start, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
