"""The fast inference path: llama.cpp's OpenAI-compatible server for a GGUF model.

``LlamaServer`` starts ``python -m llama_cpp.server`` on 127.0.0.1 in a child process,
waits until it answers, and stops it cleanly (SIGTERM, then SIGKILL). Point litellm or
``dspy.LM(server.litellm_model, api_base=server.api_base, api_key="local")`` at it; the
optional extra ``parl-mt[serve]`` provides ``llama-cpp-python[server]``.
"""

import importlib.util
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from parlmt.models.embedded import EMBEDDED_MODELS, assemble
from parlmt.server import ServerError, ServerProcess, free_port

__all__ = ["LlamaServer", "ServerError", "free_port", "gguf_path"]

def gguf_path(spec: str) -> Path:
    """An embedded model name (``embedded:student``) or a path to a .gguf file."""
    name = spec.removeprefix("embedded:")
    if name in EMBEDDED_MODELS:
        return assemble(name)
    path = Path(spec).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise FileNotFoundError(f"{spec!r} is neither an embedded model nor an existing .gguf file")
    return path


class LlamaServer(ServerProcess):
    """A llama.cpp server for one GGUF model, as a context manager (log: ``log_tail()``).

    Args:
        model: ``embedded:student``, ``embedded:teacher`` or a .gguf path.
        port: TCP port on 127.0.0.1 (a free one by default).
        n_ctx: context window in tokens.
        n_threads: CPU threads (default: all cores).
        startup_timeout: seconds to wait for the server to answer.
    """

    name = "llama.cpp server"

    def __init__(
        self,
        model: str = "embedded:student",
        port: int | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
    ):
        self.gguf = gguf_path(model)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ServerError(
                "llama.cpp server is not installed. Install the optional extra: "
                "pip install 'parl-mt[serve]' (builds llama-cpp-python from source, ~7 min on 2 cores)"
            )
        super().__init__(port, startup_timeout)
        self.alias = self.gguf.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def litellm_model(self) -> str:
        """The model string for litellm / ``dspy.LM`` (with ``api_base=self.api_base``)."""
        return f"openai/{self.alias}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", self.alias,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.n_threads)]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_base}/models", timeout=2) as response:
                return self.alias in {m["id"] for m in json.load(response)["data"]}
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False
