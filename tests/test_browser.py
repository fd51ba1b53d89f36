"""The main flow in a real browser: start the server, upload a galaxy, wait for the chart.

Needs Debian's Chromium (`apt-get install chromium`) and the `playwright` Python package
(`make test` installs both where it can). A developer without them gets a skip that says what
to install; under CI (`CI=true`) the test must run, so a missing browser fails it instead.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

from bench.gradcam_browser import WARMED
from galaxy_core import paths
from tests.conftest import free_port, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
SCREENSHOT_DIR = os.environ.get("BROWSER_SCREENSHOTS", "")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

try:
    from playwright import sync_api as playwright
except ImportError:
    playwright = None


def missing_tools() -> str:
    """Why the browser test cannot run here ('' when it can)."""
    if playwright is None:
        return "the playwright package is missing: pip install -r requirements.txt (make test does)"
    if not CHROMIUM:
        return ("no Chromium found: apt-get install chromium (make test does, as root), or set "
                "CHROMIUM_PATH")
    return ""


@pytest.fixture(scope="module")
def chromium():
    reason = missing_tools()
    if reason and IN_CI:
        pytest.fail(f"CI=true, so the real-browser test must run, but {reason}", pytrace=False)
    if reason:
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory, server_log):
    port = free_port()
    env = {**os.environ, "GALAXY_RUNS_DIR": str(tmp_path_factory.mktemp("runs"))}
    env.pop("GALAXY_WARM_UP", None)  # as make run serves it: the Grad-CAM page kept warm
    with open(server_log, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_upload_a_galaxy_and_see_the_chart(chromium, server, tmp_path):
    sample = os.path.join(paths.SAMPLE_IMAGES, sorted(os.listdir(paths.SAMPLE_IMAGES))[0])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{server}/classify", timeout=60_000)
            page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
            page.set_input_files("input[type=file]", sample)
            page.get_by_text("Verdict:").first.wait_for(timeout=90_000)
            page.wait_for_selector(".vega-embed", timeout=60_000)
            text = page.inner_text("body")
            assert "Verdict:" in text
            assert "Download predictions (Kaggle CSV)" in text
            folder = SCREENSHOT_DIR or str(tmp_path)
            os.makedirs(folder, exist_ok=True)
            shot = os.path.join(folder, "classify.png")
            page.screenshot(path=shot, full_page=True)
            assert os.path.getsize(shot) > 10_000
        finally:
            browser.close()


def test_the_grad_cam_overlay_downloads_as_a_png(chromium, server, server_log, tmp_path):
    """The server computed the Grad-CAM page's default galaxy before anyone asked (serve.py's
    warm-up thread, quietly); the page makes the PNG only when the button is clicked (a
    deferred download): the file a visitor gets must still be the overlay, a valid PNG."""
    deadline = time.time() + 120
    while WARMED not in server_log.read_text(errors="replace") and time.time() < deadline:
        time.sleep(0.5)
    log = server_log.read_text(errors="replace")
    assert WARMED in log, log[-2000:]
    assert "ScriptRunContext" not in log and "Traceback" not in log, log[-2000:]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800},
                                    accept_downloads=True)
            page.goto(f"{server}/gradcam", timeout=60_000)
            button = page.get_by_text("Download overlay (PNG)")
            button.wait_for(timeout=90_000)
            with page.expect_download(timeout=60_000) as download:
                button.click()
            path = tmp_path / download.value.suggested_filename
            download.value.save_as(path)
            assert path.name.startswith("gradcam_") and path.suffix == ".png"
            with Image.open(path) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                assert image.size[0] == image.size[1] >= 160  # the square shown on the page
        finally:
            browser.close()
