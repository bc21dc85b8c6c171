"""`parlmt ui`: the MLflow UI over a store made by real runs, checked in headless Chromium."""

import shutil

import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from parlmt.cli import main
from parlmt.models.serve import free_port
from parlmt.optimize import PAGConfig, run
from parlmt.programs.tracking import UIServer

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An MLflow store with two real PAG runs (reference teacher, different task counts)."""
    root = tmp_path_factory.mktemp("mlruns")
    for limit in (1, 2):
        run(PAGConfig(limit=limit, verify_student=False, out=str(root.parent / f"pag{limit}"), mlflow_root=str(root)))
    return root


def test_ui_shows_the_runs_and_their_metrics_in_a_browser(store, tmp_path):
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-optimize")
    runs = client.search_runs([experiment.experiment_id], order_by=["metrics.tasks DESC"])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium is installed by the set-up (make test)"
    with UIServer(store, port=free_port()) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{server.url}/#/experiments/{experiment.experiment_id}/runs")
        for found in runs:
            page.get_by_text(found.info.run_name).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "experiment.png"))
        page.goto(f"{server.url}/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}")
        page.get_by_text("steps_accepted").first.wait_for(timeout=60_000)
        body = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        browser.close()
    accepted = int(runs[0].data.metrics["steps_accepted"])
    assert f"steps_accepted\n{accepted}\n" in body  # the metrics table shows the stored value
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
    assert server.process.poll() is not None  # stopped cleanly on exit


def test_ui_refuses_a_folder_without_a_store(tmp_path, capsys):
    assert main(["ui", "--mlruns", str(tmp_path)]) == 1
    assert "no MLflow store" in capsys.readouterr().err
