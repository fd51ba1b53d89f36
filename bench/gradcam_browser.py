"""The Grad-CAM page's latency in a real browser (Chromium via Playwright), default settings,
shipped model: first render, an opacity step, a new answer, method and layer, the five-method
comparison. Prints seconds per action (median of ``--repeats``) and saves screenshots.

The first render is timed three ways: from the sidebar while the app is open on its home page
(what a class does), in a new tab while another tab has the app open, and in a new tab with no
tab of the app open (the browser then starts a new page process for the site). For reference the
same new-tab loads are timed for the app's home page and for a one-line Streamlit app (Streamlit's
own floor on this machine, before any of this app's work).

Up to three times per action: *shown*, until what the action changes is on the screen (the new
overlay picture, the line naming the new answer, method or layer, the five pictures of the
comparison); *scored*, for a new map, until its faithfulness numbers have changed too; and
*idle*, until the app has also finished the rest of the page and Streamlit's "running"
indicator is gone. The indicator lingers 0.2-0.4 s after
the server's last message (measured with the websocket frames), so *idle* overstates the wait.

    python -m bench.gradcam_browser [--url http://127.0.0.1:PORT] [--shots DIR] [--repeats 3]

Without ``--url`` it starts the app (serve.py) on a free port with GALAXY_RUNS_DIR in a
temporary folder.
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

from galaxy_core import paths
from galaxy_core.data import read_labels
from galaxy_core.schema import answer_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
IMAGES = '[data-testid="stImage"] img'
OVERLAY = f"{IMAGES} >> nth=2"  # the main row's third picture
RUNNING = '[data-testid="stStatusWidget"]'
NAVIGATION = '[data-testid="stSidebarNav"]'
METRIC = '[data-testid="stMetric"]'
WARMED = "default image computed in advance"  # pages.common.keep_warm's log line
PLAIN_TEXT = "A one-line Streamlit app"
TITLE = "Grad-CAM: where does the model look?"  # the page's title, without its icon


# learned answers of the shipped model, tried in turn: for the default sample (100204) each has
# a probability of at least faithfulness.MIN_PROBABILITY (so each step also computes its
# scores), and none is on its verdict's path (Class1.2, Class2.2, Class6.2), whose maps the
# first render's "Why this verdict?" row already computed
FRESH_ANSWERS = ("Class1.1", "Class2.1", "Class7.2", "Class7.3", "Class6.1")


def unseen_samples() -> list[str]:
    """Shipped samples other than the page's default (the first), in the page's order."""
    return [str(g) for g in read_labels(paths.SAMPLE_LABELS).galaxy_ids][1:]


def median(values: list[tuple[float, ...]], column: int) -> float:
    """Median of one column over the steps that got there (nan: none did)."""
    got = [v[column] for v in values if len(v) > column and v[column] == v[column]]
    return statistics.median(got) if got else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, process, log_path: str, ready=lambda text: True,
                    timeout_s: float = 120) -> None:
    """Return once ``url`` answers its health check and ``ready(log text)`` holds."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                with open(log_path, encoding="utf-8", errors="replace") as log:
                    if ready(log.read()):
                        return
        except OSError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"{url} did not start within {timeout_s:.0f} s")


def start_plain_streamlit(folder: str):
    """A one-line Streamlit app (``st.write``), served the same way: Streamlit's own floor."""
    script = os.path.join(folder, "plain.py")
    with open(script, "w", encoding="utf-8") as out:
        out.write(f"import streamlit as st\nst.write({PLAIN_TEXT!r})\n")
    port = free_port()
    log_path = os.path.join(folder, "plain.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, process, log_path)
    return process, url


def start_server(runs_dir: str):
    """The app as ``make run`` serves it; returns once it answers and, unless GALAXY_WARM_UP=0,
    once its warm-up has computed the Grad-CAM page's default image (its log says so)."""
    port = free_port()
    env = {**os.environ, "GALAXY_RUNS_DIR": runs_dir}
    log_path = os.path.join(runs_dir, "server.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "serve.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    warming = os.environ.get("GALAXY_WARM_UP", "1") != "0"

    def warmed(text: str) -> bool:
        if any(failure in text for failure in ("could not warm", "no shipped samples",
                                               "warming up the Grad-CAM page failed")):
            process.terminate()
            raise RuntimeError(f"the app's warm-up did not happen: {text[-1000:]}")
        return not warming or WARMED in text

    wait_for_health(url, process, log_path, warmed)
    return process, url


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


def timed_change(page, action, done, prepare=None, scored=None) -> tuple[float, ...]:
    """Seconds from ``action()`` (after ``prepare()``, untimed, which may return the action)
    until ``done()`` holds (shown), until the app has also stopped running (idle), and, for
    steps that change the map, until the faithfulness numbers shown have changed too (scored;
    nan where not asked or where they did not change within 10 s)."""
    if prepare is not None:
        action = prepare() or action
    scores_before = score_text(page) if scored else None
    start = time.perf_counter()
    action()
    deadline = start + 120
    while not done():
        if time.perf_counter() > deadline:
            print("  (a step did not finish within 120 s)", flush=True)
            return float("nan"), float("nan"), float("nan")
        time.sleep(0.005)
    shown = time.perf_counter() - start
    scored_s = float("nan")
    while scored and time.perf_counter() < start + 10:
        if score_text(page) not in ("", scores_before):
            scored_s = time.perf_counter() - start
            break
        time.sleep(0.005)
    settle(page)
    idle = time.perf_counter() - start
    print(f"  shown {shown:.2f} s, scored {scored_s:.2f} s, idle {idle:.2f} s", flush=True)
    return shown, idle, scored_s


def score_text(page) -> str:
    """The faithfulness numbers on the page (values and their 'vs centre' deltas)."""
    return " ".join(page.locator('[data-testid="stMetric"]').all_inner_texts())


def timed_load(page, url: str, ready_selector: str,
               scored_selector: str | None = None) -> tuple[float, ...]:
    """Seconds from opening ``url`` until ``ready_selector`` is visible, until idle, and until
    ``scored_selector`` is visible (nan if not asked)."""
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.locator(ready_selector).first.wait_for(timeout=180_000)
    shown = time.perf_counter() - start
    scored = float("nan")
    if scored_selector:
        page.locator(scored_selector).first.wait_for(timeout=180_000)
        scored = time.perf_counter() - start
    settle(page)
    return shown, time.perf_counter() - start, scored


def open_page(page, url: str, ready: str):
    """Open ``url`` in ``page`` (untimed) and wait until ``ready`` is shown and the app idle."""
    page.goto(url, timeout=120_000)
    page.locator(ready).first.wait_for(timeout=180_000)
    settle(page)
    return page


def time_new_tabs(browser, times, url: str, ready: str, scored: str | None, label: str,
                  repeats: int, context=None) -> None:
    """Time ``repeats`` loads of ``url`` in a new tab, first with no tab of the site open (the
    browser starts a new page process for it), then with another tab open on it."""
    own = context is None
    if own:
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        open_page(context.new_page(), url, ready).close()  # Streamlit's scripts into the cache
    for _ in range(repeats):
        page = context.new_page()
        times.setdefault(f"{label}, new tab, no tab of it open", []).append(
            timed_load(page, url, ready, scored))
        page.close()
    other = open_page(context.new_page(), url, ready)
    for _ in range(repeats):
        page = context.new_page()
        times.setdefault(f"{label}, new tab, another tab open", []).append(
            timed_load(page, url, ready, scored))
        page.close()
    other.close()
    if own:
        context.close()


def sidebar_link(page, title: str):
    return page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first


def opened_gradcam(page):
    """Whether the Grad-CAM page has replaced the home page and shows its overlay (a picture
    the home page did not have)."""
    before = set(page.locator(IMAGES).evaluate_all("images => images.map(i => i.src)"))

    def done() -> bool:
        if page.get_by_text(TITLE).count() == 0 or page.locator(IMAGES).count() < 3:
            return False
        return overlay_src(page) not in before | {""}
    return done


def changes_overlay(page):
    before = overlay_src(page)
    return lambda: overlay_src(page) not in ("", before)


def shows_answer(page, column: str) -> bool:
    """Whether the line above the maps names ``column`` as the answer explained."""
    return page.get_by_text(f"of {answer_name(column)} — predicted").count() > 0


def open_list(page, label: str, option: str):
    """Open the selectbox whose label contains ``label`` and type ``option`` to find it (the
    list only renders the options near the current one); returns the click that picks it, the
    moment a person's wait begins."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.keyboard.type(option)
    choice = page.locator('[role="option"]').filter(has_text=option).first
    choice.wait_for()
    return choice.click


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
    times: dict[str, list[tuple[float, float]]] = {}
    used: set[str] = set()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            # Streamlit's own floor: a one-line app, loaded as the rows below load this one
            plain_process, plain_url = start_plain_streamlit(runs)
            try:
                time_new_tabs(browser, times, plain_url, f"text={PLAIN_TEXT}", None,
                              "reference: one-line Streamlit app", args.repeats)
            finally:
                plain_process.terminate()
                plain_process.wait(20)
            # one context for every tab: after the first page Streamlit's scripts come from the
            # browser's cache, as for anyone who has opened the app before
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            # load the model once (the home page's sidebar does), as a class would have the
            # app open already
            open_page(context.new_page(), f"{url}/", "text=In use:").close()
            time_new_tabs(browser, times, f"{url}/", NAVIGATION, None,
                          "reference: the app's home page", args.repeats, context)
            time_new_tabs(browser, times, f"{url}/gradcam", OVERLAY, METRIC,
                          "first render", args.repeats, context)
            home = open_page(context.new_page(), f"{url}/", NAVIGATION)
            for _ in range(args.repeats):
                times.setdefault("first render, from the sidebar (app open on Home)", []).append(
                    timed_change(home, None, opened_gradcam(home), scored=True,
                                 prepare=lambda: sidebar_link(home, "Grad-CAM").click))
                sidebar_link(home, "Home").click()
                home.get_by_text(TITLE).first.wait_for(state="detached", timeout=60_000)
                settle(home)
            home.close()
            # the steps below, each on a tab opened with no other tab of the app open
            for _ in range(args.repeats):
                page = open_page(context.new_page(), f"{url}/gradcam", OVERLAY)
                slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
                for key in ("ArrowRight", "ArrowLeft"):
                    times.setdefault("opacity step", []).append(timed_change(
                        page, lambda: slider.press(key), changes_overlay(page),
                        prepare=slider.focus))
                # answers no earlier step has shown (the server keeps every map and score it
                # computed, for every session): each step below costs what a new one costs
                for column in [c for c in FRESH_ANSWERS
                               if c not in used and not shows_answer(page, c)][:2]:
                    used.add(column)
                    changed = changes_overlay(page)
                    times.setdefault("new answer", []).append(timed_change(
                        page, None, lambda: shows_answer(page, column) and changed(),
                        prepare=lambda: open_list(page, "Answer", column), scored=True))
                for name in [x for x in ("HiResCAM", "Grad-CAM", "LayerCAM")
                             if page.get_by_text(f"{x} of").count() == 0][:2]:
                    changed = changes_overlay(page)
                    times.setdefault("method", []).append(timed_change(
                        page, lambda: page.locator('[data-testid="stRadio"]').first.get_by_text(
                            name, exact=True).click(),
                        lambda: page.get_by_text(f"{name} of", exact=False).count() > 0
                        and changed(), scored=True))
                for layer in [x for x in ("layer2", "layer3", "layer1")
                              if page.get_by_text(f"layer {x}").count() == 0][:2]:
                    changed = changes_overlay(page)
                    times.setdefault("layer", []).append(timed_change(
                        page, None,
                        lambda: page.get_by_text(f"layer {layer}").count() > 0 and changed(),
                        prepare=lambda: open_list(page, "Layer", layer), scored=True))
                shown = page.locator(IMAGES).count()
                times.setdefault("five-method comparison", []).append(timed_change(
                    page, lambda: page.get_by_text("Compare the five methods").click(),
                    lambda: page.locator(IMAGES).count() >= shown + 5))
                times.setdefault("opacity step, comparison on", []).append(timed_change(
                    page, lambda: slider.press("ArrowRight"), changes_overlay(page),
                    prepare=slider.focus))
                if args.shots:
                    os.makedirs(args.shots, exist_ok=True)
                    page.screenshot(path=os.path.join(args.shots, "gradcam_1400.png"),
                                    full_page=True)
                    page.set_viewport_size({"width": 400, "height": 1800})
                    time.sleep(1.0)
                    page.screenshot(path=os.path.join(args.shots, "gradcam_400.png"),
                                    full_page=True)
                page.close()
            # a galaxy no one has asked for: another shipped sample, picked on a fresh page
            for sample in unseen_samples()[:args.repeats]:
                page = open_page(context.new_page(), f"{url}/gradcam", OVERLAY)
                changed = changes_overlay(page)
                times.setdefault("another galaxy, not seen before", []).append(timed_change(
                    page, None, changed, prepare=lambda: open_list(page, "shipped sample", sample),
                    scored=True))
                page.close()
            browser.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(20)
        shutil.rmtree(runs, ignore_errors=True)
    print(f"load average: {os.getloadavg()}")
    print(f"{'action':66s} {'shown s':>8s} {'scored s':>9s} {'idle s':>7s}  all (shown/idle)")
    for name, values in times.items():
        print(f"{name:66s} {median(values, 0):8.2f} {median(values, 2):9.2f} "
              f"{median(values, 1):7.2f}  "
              + " ".join(f"{v[0]:.2f}/{v[1]:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
