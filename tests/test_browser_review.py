"""End to end in a real browser: JupyterLab serves 07_review.ipynb, headless Chromium runs it,
a person's clicks relabel an image, and the override file changes. Needs Debian's chromium and
chromium-driver (installed by .ci/run); skipped with that reason when they are missing, except in CI
(`CI` set), where a missing browser is a failure."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import papermill as pm
import pytest
from notebook_runs import NOTEBOOKS

from helpers.core.paths import PROJECT_ROOT

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = "Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; .ci/run does this)"
TOKEN = "review-test"
SCREENSHOT = PROJECT_ROOT / "docs" / "review_widget.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_browser() -> None:
    """Skip without a browser on a developer's machine; in CI, where .ci/run installs one, fail."""
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {MISSING}")
        pytest.skip(MISSING)


@pytest.fixture
def lab(tiny_pipeline, tmp_path):
    require_browser()
    overrides = tmp_path / "overrides.csv"
    dirs = tiny_pipeline.dirs
    root = tmp_path / "lab"
    root.mkdir()
    pm.execute_notebook(str(NOTEBOOKS / "07_review.ipynb"), str(root / "07_review.ipynb"), prepare_only=True,
                        parameters={**dirs, "overrides_path": str(overrides), "per_page": 8}, kernel_name="python3")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.terminate()
        pytest.fail("JupyterLab did not start")
    yield url, overrides
    server.terminate()
    server.wait(timeout=20)


def _driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(condition, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        try:
            result = condition()
            if result:
                return result
        except Exception:  # the page is still loading
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_relabel_in_the_browser_writes_the_override_file(lab, tmp_path):
    from selenium.webdriver.common.by import By

    url, overrides = lab
    driver = _driver(tmp_path)
    try:
        driver.get(f"{url}/lab/tree/07_review.ipynb?token={TOKEN}")
        _wait(lambda: driver.execute_script(
            "const app = window.jupyterapp; const w = app && app.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel);"),
            120, "the notebook and its kernel")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        toggles = _wait(lambda: driver.find_elements(By.XPATH, "//button[normalize-space()='select']"), 240,
                        "the review grid")
        driver.execute_script("arguments[0].scrollIntoView()", toggles[0])
        toggles[0].click()
        relabel = _wait(lambda: driver.find_element(By.XPATH, "//button[contains(normalize-space(), '→ unsure')]"),
                        30, "the relabel button")
        relabel.click()
        try:
            records = _wait(lambda: pd.read_csv(overrides).to_dict("records") if overrides.is_file() else [], 30,
                            "the override file")
        except BaseException:
            driver.save_screenshot(str(tmp_path / "failure.png"))  # for whoever debugs this
            raise
        assert [(r["field"], r["new"]) for r in records] == [("label", "unsure")]
        top = driver.find_element(By.XPATH, "//label[normalize-space()='sort']")  # JupyterLab scrolls its own panel
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", top)
        time.sleep(1)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))  # docs/review_widget.png: generated, not committed
    finally:
        driver.quit()


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setitem(globals(), "CHROMIUM", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_browser()
