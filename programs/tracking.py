"""The MLflow store every stage logs to: a SQLite backend and an artifact folder, both under ``mlruns/``.

The tracking URI is always set explicitly (never read from the environment), so a run lands where
the caller says: by default the repository's ``mlruns/`` (``mlruns/mlflow.db`` and
``mlruns/artifacts/<experiment>``), or any other folder, or any tracking URI.
"""

from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


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
