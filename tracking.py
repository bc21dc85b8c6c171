"""The MLflow store every stage logs to: a SQLite backend and an artifact folder, both under ``mlruns/``;
``parlmt ui`` opens it.

The tracking URI is always set explicitly (never read from the environment), so a run lands where
the caller says: by default the repository's ``mlruns/`` (``mlruns/mlflow.db`` and
``mlruns/artifacts/<experiment>``), or any other folder, or any tracking URI. Eval, optimize, train
and experiments all go through ``experiment``; what only training runs need is in ``rl/tracking.py``.
"""

import argparse
import platform
import sys
from pathlib import Path

from parlmt.server import ServerProcess, run_until_stopped

_PACKAGE_ROOT = Path(__file__).resolve().parent  # the repository root is the package


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor string elsewhere), for the
    machine every result records."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def default_root() -> Path:
    """The repository's ``mlruns/`` in a source checkout (editable install), else ``./mlruns``."""
    if (_PACKAGE_ROOT / "pyproject.toml").is_file():
        return _PACKAGE_ROOT / "mlruns"
    return Path.cwd() / "mlruns"


def configure(root: str | Path | None = None, tracking_uri: str | None = None) -> Path:
    """Point MLflow at ``tracking_uri`` (default: ``sqlite:///<root>/mlflow.db``); returns the root
    folder, under whose ``artifacts/`` new experiments keep their artifacts."""
    import mlflow

    root = Path(root or default_root()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{root / 'mlflow.db'}")
    return root


def experiment(name: str, root: str | Path | None = None, tracking_uri: str | None = None) -> str:
    """Configure the store and make ``name`` the active experiment (created with its artifacts in
    ``<root>/artifacts/<name>``); returns its id."""
    import mlflow

    root = configure(root, tracking_uri)
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        location = (root / "artifacts" / name).as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


class UIServer(ServerProcess):
    """``mlflow server`` over a store, on 127.0.0.1, as a context manager that waits until the UI answers.

    The backend store and artifact root are the ones runs write (``sqlite:///<root>/mlflow.db`` and
    ``<root>/artifacts``), so every run's params, metrics, artifacts and traces show up.
    """

    name = "mlflow server"

    def __init__(self, root: str | Path | None = None, port: int = 5000, startup_timeout: float = 120.0):
        self.root = Path(root or default_root()).resolve()
        if not (self.root / "mlflow.db").is_file():
            raise FileNotFoundError(f"no MLflow store at {self.root} (mlflow.db): run an eval, optimize or train first")
        super().__init__(port, startup_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--default-artifact-root", (self.root / "artifacts").as_uri(), "--workers", "1"]

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False


def register(subparsers: argparse._SubParsersAction) -> None:
    ui = subparsers.add_parser("ui", help="open the MLflow UI over mlruns/ (every eval, optimize and train run)")
    ui.add_argument("--mlruns", type=Path, help="MLflow folder (default: the repository's mlruns/)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    try:
        server = UIServer(args.mlruns, args.port)
        return run_until_stopped(server, f"MLflow UI at {server.url}  (store: {server.root}; Ctrl-C to stop)")
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
