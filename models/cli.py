"""``parlmt info`` and ``parlmt serve``: the stack, the embedded models, the llama.cpp server."""

import argparse
import importlib.metadata
import platform
import sys

STACK = ["torch", "transformers", "dspy", "litellm", "trl", "peft", "datasets", "mlflow", "accelerate",
         "gguf", "bfcl-eval", "llama-cpp-python"]


def register(subparsers: argparse._SubParsersAction) -> None:
    info = subparsers.add_parser("info", help="print the installed stack and verify the embedded models")
    info.add_argument("--no-verify", action="store_true", help="skip the sha256 check of assembled models")
    info.set_defaults(func=run_info)

    serve = subparsers.add_parser("serve", help="serve a GGUF model with llama.cpp (OpenAI-compatible)")
    serve.add_argument("--model", default="embedded:student", help="embedded:student, embedded:teacher or a .gguf")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--n-ctx", type=int, default=8192, help="context window in tokens")
    serve.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    serve.set_defaults(func=run_serve)


def run_info(args: argparse.Namespace) -> int:
    from parlmt.models.embedded import EMBEDDED_MODELS, ModelPartsError, assemble, sha256_of

    print(f"parl-mt {importlib.metadata.version('parl-mt')} on Python {platform.python_version()} "
          f"({platform.machine()})")
    for name in STACK:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {name:<18} {version}")
    import torch

    from parlmt.models.loading import default_dtype

    device = f"cuda x{torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    print(f"  {'torch device':<18} {device}")
    dtype, why = default_dtype("cuda" if torch.cuda.is_available() else "cpu")
    print(f"  {'default dtype':<18} {dtype}: {why} (--dtype overrides it)")
    print("embedded models:")
    failures = 0
    for name, model in EMBEDDED_MODELS.items():
        print(f"  {name}: {model.upstream} (GGUF Q4_K_M, license {model.license})")
        try:
            path = assemble(name)
        except ModelPartsError as error:
            print(f"    not available: {error}")
            failures += name == "student"
            continue
        print(f"    file    {path} ({path.stat().st_size:,} bytes)")
        if args.no_verify:
            continue
        digest = sha256_of(path)
        verdict = "verified" if digest == model.sha256 else f"MISMATCH (expected {model.sha256})"
        failures += digest != model.sha256
        print(f"    sha256  {digest} {verdict}")
    return 1 if failures else 0


def run_serve(args: argparse.Namespace) -> int:
    from parlmt.models.serve import LlamaServer, ServerError
    from parlmt.server import run_until_stopped

    try:
        server = LlamaServer(args.model, port=args.port, n_ctx=args.n_ctx, n_threads=args.threads)
        banner = (f"serving {server.gguf.name} at {server.api_base}  (model: {server.litellm_model})\n"
                  f'  dspy.LM("{server.litellm_model}", api_base="{server.api_base}", api_key="local")\n'
                  "Ctrl-C to stop")
        return run_until_stopped(server, banner)
    except (ServerError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
