"""The Grad-CAM page's latency in a real browser (Chromium via Playwright), default settings,
shipped model: first render, an opacity step, a new answer, method and layer, the five-method
comparison. Prints seconds per action (median of ``--repeats``) and saves screenshots.

    python -m bench.gradcam_browser [--url http://127.0.0.1:PORT] [--shots DIR] [--repeats 3]

Without ``--url`` it starts the app (serve.py) on a free port with GALAXY_RUNS_DIR in a
temporary folder. A step counts as done when the overlay picture has changed (or, for the
comparison, when its pictures are shown; for a method, when the line naming it is) and the app
has stopped running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from galaxy_core.schema import answer_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
IMAGES = '[data-testid="stImage"] img'
RUNNING = '[data-testid="stStatusWidget"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs_dir: str):
    port = free_port()
    env = {**os.environ, "GALAXY_RUNS_DIR": runs_dir}
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError("the app did not start within 120 s")


def overlay_src(page) -> str:
    """The overlay picture's address (the third picture of the main row)."""
    return page.locator(IMAGES).nth(2).get_attribute("src") or ""


def settle(page, timeout_s: float = 120) -> None:
    """Wait until the app is not running (the status widget gone)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.locator(RUNNING).count() == 0:
            return
        time.sleep(0.01)
    raise RuntimeError("the app kept running")


def timed_change(page, action, done) -> float:
    """Seconds from ``action()`` until ``done()`` holds and the app has stopped running."""
    start = time.perf_counter()
    action()
    deadline = start + 120
    while not done():
        if time.perf_counter() > deadline:
            print("  (a step did not finish within 120 s)", flush=True)
            return float("nan")
        time.sleep(0.01)
    settle(page)
    seconds = time.perf_counter() - start
    print(f"  {seconds:.2f} s", flush=True)
    return seconds


def changes_overlay(page):
    before = overlay_src(page)
    return lambda: overlay_src(page) not in ("", before)


def shows_answer(page, column: str) -> bool:
    """Whether the line above the maps names ``column`` as the answer explained."""
    return page.get_by_text(f"of {answer_name(column)} — predicted").count() > 0


def pick(page, label: str, option: str) -> None:
    """Open the selectbox whose label contains ``label``, type ``option`` to find it (the list
    only renders the options near the current one) and click it."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.keyboard.type(option)
    page.locator('[role="option"]').filter(has_text=option).first.click()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gradcam_browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app (default: start one)")
    parser.add_argument("--shots", default="", help="folder for screenshots at 1400 and 400 px")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    runs = tempfile.mkdtemp(prefix="galaxy-runs-")
    process, url = (None, args.url) if args.url else start_server(runs)
    times: dict[str, list[float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            # load the model once (the home page's sidebar does), as a class would have the
            # app open already; then the Grad-CAM page of a galaxy no session has seen yet
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{url}/home", timeout=120_000)
            page.get_by_text("In use:").first.wait_for(timeout=180_000)
            settle(page)
            start = time.perf_counter()
            page.goto(f"{url}/gradcam", timeout=120_000)
            page.locator(IMAGES).nth(2).wait_for(timeout=180_000)
            settle(page)
            times["first render, galaxy not yet seen"] = [time.perf_counter() - start]
            page.close()
            for _ in range(args.repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                start = time.perf_counter()
                page.goto(f"{url}/gradcam", timeout=120_000)
                page.locator(IMAGES).nth(2).wait_for(timeout=180_000)
                settle(page)
                times.setdefault("first render, galaxy seen before", []).append(
                    time.perf_counter() - start)
                slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
                for key in ("ArrowRight", "ArrowLeft"):
                    times.setdefault("opacity step", []).append(timed_change(
                        page, lambda: (slider.focus(), slider.press(key)),
                        changes_overlay(page)))
                for column in [c for c in ("Class1.1", "Class1.3", "Class1.2")
                               if not shows_answer(page, c)][:2]:
                    times.setdefault("new answer", []).append(timed_change(
                        page, lambda: pick(page, "Answer", column),
                        lambda: shows_answer(page, column)))
                for name in [x for x in ("HiResCAM", "Grad-CAM", "LayerCAM")
                             if page.get_by_text(f"{x} of").count() == 0][:2]:
                    times.setdefault("method", []).append(timed_change(
                        page, lambda: page.locator('[data-testid="stRadio"]').first.get_by_text(
                            name, exact=True).click(),
                        lambda: page.get_by_text(f"{name} of", exact=False).count() > 0))
                for layer in [x for x in ("layer2", "layer3", "layer1")
                              if page.get_by_text(f"layer {x}").count() == 0][:2]:
                    times.setdefault("layer", []).append(timed_change(
                        page, lambda: pick(page, "Layer", layer),
                        lambda: page.get_by_text(f"layer {layer}").count() > 0))
                shown = page.locator(IMAGES).count()
                times.setdefault("five-method comparison", []).append(timed_change(
                    page, lambda: page.get_by_text("Compare the five methods").click(),
                    lambda: page.locator(IMAGES).count() >= shown + 5))
                times.setdefault("opacity step, comparison on", []).append(timed_change(
                    page, lambda: (slider.focus(), slider.press("ArrowRight")),
                    changes_overlay(page)))
                if args.shots:
                    os.makedirs(args.shots, exist_ok=True)
                    page.screenshot(path=os.path.join(args.shots, "gradcam_1400.png"),
                                    full_page=True)
                    page.set_viewport_size({"width": 400, "height": 1800})
                    time.sleep(1.0)
                    page.screenshot(path=os.path.join(args.shots, "gradcam_400.png"),
                                    full_page=True)
                page.close()
            browser.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(20)
        shutil.rmtree(runs, ignore_errors=True)
    print(f"load average: {os.getloadavg()}")
    print(f"{'action':32s} {'median s':>9s}  all")
    for name, values in times.items():
        finished = [v for v in values if v == v] or [float("nan")]  # nan: did not finish
        print(f"{name:32s} {statistics.median(finished):9.2f}  "
              + " ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
