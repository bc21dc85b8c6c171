"""`parlmt ui` over the store a short `parlmt demo` made, checked in headless Chromium: the parent run,
each stage's nested run and a metric value on the page, then a clean stop on Ctrl-C."""

import shutil
import signal
import sys
import urllib.request

import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from parlmt import demo
from parlmt.cli import main
from parlmt.models.serve import free_port
from parlmt.programs.tracking import UIServer

EXPAND = "button[data-component-id*='runnamecellrenderer']"  # the +/- beside a parent run's name
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ParlmtUI(UIServer):
    """``parlmt ui`` as a user starts it: the CLI's command, ``UIServer``'s wait until the UI answers."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "parlmt.cli", "ui", "--mlruns", str(self.root), "--port", str(self.port)]


def test_ui_shows_every_stage_of_the_demo_and_its_metrics_in_a_browser(demo_run, tmp_path):
    folder, _ = demo_run
    store = folder / "mlruns"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parlmt-demo")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium is installed by the set-up (make test)"
    ui = ParlmtUI(store, port=free_port()).start()
    port = ui.port
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            url = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
            page.goto(url)
            page.get_by_text("demo", exact=True).first.wait_for(timeout=60_000)
            page.locator(EXPAND).first.click()  # the parent's expander: its stage runs
            for name in demo.STAGES:
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "experiment.png"))
            page.goto(f"{url}/{runs['pag'].info.run_id}")
            page.get_by_text("sft_rows").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
            browser.close()
    finally:
        ui.process.send_signal(signal.SIGINT)
        ui.process.wait(30)
    rows = int(runs["pag"].data.metrics["sft_rows"])
    assert f"sft_rows\n{rows}\n" in body  # the metrics table shows the stored value
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
    assert ui.process.returncode == 130 and "MLflow UI at http://127.0.0.1" in ui.log_tail()
    with pytest.raises(OSError):  # the mlflow server went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_ui_refuses_a_folder_without_a_store(tmp_path, capsys):
    assert main(["ui", "--mlruns", str(tmp_path)]) == 1
    assert "no MLflow store" in capsys.readouterr().err
