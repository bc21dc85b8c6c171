"""A local HTTP server in a child process, as a context manager: start it, wait until it answers,
stop it (SIGTERM to its process group, then SIGKILL). The llama.cpp server (``models.serve``) and the
MLflow UI (``tracking``) are both one; a subclass says what to run and when it is ready.
``run_until_stopped`` runs one in the foreground of a command (``parlmt serve``, ``parlmt ui``).
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        deadline = time.monotonic() + self.startup_timeout
        try:
            self._spawn()
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerError(f"{self.name} exited with code {self.process.returncode}: {self.log_tail()}")
                if self.ready():
                    return self
                time.sleep(0.5)
            raise ServerError(f"{self.name} did not answer within {self.startup_timeout:.0f} s: {self.log_tail()}")
        except BaseException:  # also Ctrl-C while waiting: the child is in its own session, no one else stops it
            self.stop()
            raise

    def _spawn(self) -> None:
        """Popen with SIGINT and SIGTERM held back until ``self.process`` is set: an exception from a
        handler while it forks would leave the child running in its own session, unknown, never stopped."""
        held: list[int] = []
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        # Only Python handlers raise; they run in the main thread, whichever thread starts the server.
        raising = [sig for sig, handler in handlers.items()
                   if callable(handler) and threading.current_thread() is threading.main_thread()]
        for sig in raising:
            signal.signal(sig, lambda signum, frame: held.append(signum))
        try:
            self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        finally:
            for sig in raising:
                signal.signal(sig, handlers[sig])
            for signum in held:
                signal.raise_signal(signum)

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


class Stopped(Exception):
    """SIGINT or SIGTERM arrived; ``exit_code`` is the shell's for it (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _raise_stopped(signum: int, frame) -> None:
    for sig in STOP_SIGNALS:  # a second Ctrl-C must not cut the child's shutdown short
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def run_until_stopped(server: ServerProcess, banner: str) -> int:
    """Start ``server``, print ``banner``, and wait until SIGINT or SIGTERM (exit code 130 or 143) or until
    the server dies (1); it is stopped either way. Raises ``ServerError`` if it does not start.

    The handlers are installed explicitly: Python turns SIGINT into KeyboardInterrupt only if it was not
    ignored at start-up, and a background job of a script (or a supervisor) starts with it ignored; the
    default SIGTERM ends this process without stopping the child, which runs in its own session.
    """
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    try:
        with server:  # started after the handlers are in: the child then gets the default ones, not SIG_IGN
            print(banner, flush=True)
            code = server.process.wait()
        print(f"{server.name} exited with code {code}: {server.log_tail()}", file=sys.stderr)
        return 1
    except Stopped as stopped:
        return stopped.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
