"""A local HTTP server in a child process, as a context manager: start it, wait until it answers,
stop it (SIGTERM to its process group, then SIGKILL). The llama.cpp server (``models.serve``) and the
MLflow UI (``programs.tracking``) are both one; a subclass says what to run and when it is ready.
"""

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server is not installed, did not start, or died."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Base of a child-process server: ``command()`` starts it, ``ready()`` says it answers.

    Args:
        port: TCP port on 127.0.0.1 (a free one by default).
        startup_timeout: seconds to wait for ``ready()``.
    """

    name = "server"

    def __init__(self, port: int | None = None, startup_timeout: float = 120.0):
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.name.replace(' ', '-')}-", suffix=".log", delete=False)

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> "ServerProcess":
        log.info("starting %s on 127.0.0.1:%d (log: %s)", self.name, self.port, self._log.name)
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with code {self.process.returncode}: {self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"{self.name} did not answer within {self.startup_timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        log.info("%s stopped", self.name)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (stdout and stderr)."""
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
