"""`parlmt ui` over the store a short `parlmt demo` made, checked in headless Chromium: the parent run,
each stage's nested run and a metric value on the page, then a clean stop on Ctrl-C; and a stop on
SIGINT or SIGTERM however it was started, its mlflow server with it."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from parlmt.cli import main
from parlmt.experiment import ExperimentConfig, plan
from parlmt.models.serve import free_port
from parlmt.tracking import UIServer

EXPAND = "button[data-component-id*='runnamecellrenderer']"  # the +/- beside a parent run's name
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Bounds of waits on events (the UI answers, a process ends): generous, other work may share the machine.
STARTUP_S = 300
STOP_S = 120


def ignoring(signals: str) -> list[str]:
    """A launcher that runs its arguments with ``signals`` ignored, as a non-interactive shell starts a
    background job (SIGINT) or as some supervisors and CI runners start a command."""
    return ["bash", "-c", f'trap "" {signals}; exec "$@"', "bash"]


class ParlmtUI(UIServer):
    """``parlmt ui`` as a user starts it (through ``launcher``): the CLI's command, ``UIServer``'s wait
    until the UI answers. ``groups``: the process groups of its children seen so far (the mlflow server
    runs in its own session, so stopping ``parlmt ui``'s group does not reach it)."""

    def __init__(self, root: Path, launcher: Sequence[str] = (), startup_timeout: float = STARTUP_S):
        super().__init__(root, free_port(), startup_timeout)
        self.launcher = list(launcher)
        self.groups: set[int] = set()

    def command(self) -> list[str]:
        return [*self.launcher, sys.executable, "-m", "parlmt.cli", "ui", "--mlruns", str(self.root),
                "--port", str(self.port)]

    def ready(self) -> bool:
        """The UI answers and ``parlmt ui`` said so: it printed its address only once its own wait ended."""
        self.groups |= child_groups(self.process.pid)  # while it starts too: cleaned up if the start fails
        return super().ready() and f"MLflow UI at {self.url}" in self.log_tail()


def live_processes() -> dict[int, tuple[int, int]]:
    """Each process that has not ended: pid -> (parent's pid, process group). Zombies are left out: they
    hold no port, and an init that reaps none (as in some containers) keeps them forever."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # it ended while we looked
            continue
        if state not in "ZX":
            table[int(stat.parent.name)] = (int(parent), int(group))
    return table


def child_groups(pid: int) -> set[int]:
    return {group for parent, group in live_processes().values() if parent == pid}


def live_groups(groups: set[int]) -> set[int]:
    return groups & {group for _, group in live_processes().values()}


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@contextlib.contextmanager
def running(ui: ParlmtUI) -> Iterator[ParlmtUI]:
    """``ui`` started; after, pass or fail, it and its children's process groups are gone."""
    try:
        yield ui.start()
    finally:
        if ui.process is not None and ui.process.poll() is None:
            ui.groups |= child_groups(ui.process.pid)
            ui.stop(STOP_S)
        for group in live_groups(ui.groups):
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(group, signal.SIGKILL)


def assert_stops_on(signum: int, ui: ParlmtUI) -> None:
    """``signum`` ends ``parlmt ui`` with the shell's code for it, its mlflow server and the port with it."""
    assert ui.groups, "parlmt ui runs its mlflow server as a child"
    ui.process.send_signal(signum)
    assert ui.process.wait(STOP_S) == 128 + signum, ui.log_tail()
    assert wait_until(lambda: not live_groups(ui.groups), STOP_S), "the mlflow server outlived parlmt ui"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ui.port), timeout=10).close()


@pytest.fixture(scope="module")
def one_run_store(tmp_path_factory) -> Path:
    """An MLflow store (``mlflow.db``, ``artifacts/``) holding one run with one metric."""
    store = tmp_path_factory.mktemp("one-run") / "mlruns"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("one-run", (store / "artifacts").as_uri()))
    client.log_metric(run.info.run_id, "accuracy", 0.5)
    client.set_terminated(run.info.run_id)
    return store


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ui_stops_on_a_signal_even_when_started_with_it_ignored(one_run_store, signum):
    launcher = ignoring("INT TERM")
    status = subprocess.run([*launcher, "grep", "SigIgn", "/proc/self/status"], capture_output=True, text=True,
                            timeout=STOP_S).stdout
    ignored = int(status.split()[1], 16)  # bit n - 1 set: signal n is ignored in what the launcher starts
    assert all(ignored >> (sig - 1) & 1 for sig in (signal.SIGINT, signal.SIGTERM))
    with running(ParlmtUI(one_run_store, launcher)) as ui:
        assert_stops_on(signum, ui)


class StartingUI(ParlmtUI):
    """``parlmt ui`` taken as ready once its mlflow server runs in its own session, before it answers."""

    def ready(self) -> bool:
        self.groups |= child_groups(self.process.pid)
        return bool(self.groups - {self.process.pid})  # before its setsid, a child is still in our group


def test_ui_stops_on_ctrl_c_while_its_mlflow_server_starts(one_run_store):
    with running(StartingUI(one_run_store, ignoring("INT"))) as ui:
        assert_stops_on(signal.SIGINT, ui)
    assert "MLflow UI at" not in ui.log_tail()  # it was still waiting for the server


def test_ui_shows_every_stage_of_the_demo_and_its_metrics_in_a_browser(demo_run, tmp_path):
    folder, _ = demo_run
    store = folder / "mlruns"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-demo")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium is installed by the set-up (make test)"
    with running(ParlmtUI(store)) as ui:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            url = f"{ui.url}/#/experiments/{experiment.experiment_id}/runs"
            page.goto(url)
            page.get_by_text("demo", exact=True).first.wait_for(timeout=60_000)
            page.locator(EXPAND).first.click()  # the parent's expander: its stage runs
            for name in (stage.name for stage in plan(ExperimentConfig())):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "experiment.png"))
            page.goto(f"{url}/{runs['data'].info.run_id}")
            page.get_by_text("sft_rows").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
            browser.close()
        assert_stops_on(signal.SIGINT, ui)  # Ctrl-C
    rows = int(runs["data"].data.metrics["sft_rows"])
    assert f"sft_rows\n{rows}\n" in body  # the metrics table shows the stored value
    assert (tmp_path / "experiment.png").stat().st_size > 10_000


def test_ui_refuses_a_folder_without_a_store(tmp_path, capsys):
    assert main(["ui", "--mlruns", str(tmp_path)]) == 1
    assert "no MLflow store" in capsys.readouterr().err
