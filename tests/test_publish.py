"""The published app attacked as strangers would, against a real server on loopback.

The server runs as `make run` starts it (127.0.0.1, no password). A plain loopback visitor is a
maintainer and sees the Start button; the same machine's visitor through a reverse proxy (a
forwarder on loopback that adds `X-Forwarded-For`, as nginx, Caddy or a tunnel does) and a page
opened under a foreign host name (DNS rebinding, simulated with Chromium's host-resolver rules)
are strangers: no Start button, no model picker, no path box. Every address used is loopback.

Needs Debian's Chromium and the `playwright` package, as tests/test_browser.py; under CI=true a
missing browser is a failure, not a skip.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import free_port, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
IN_CI = os.environ.get("CI") == "true"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - make test installs it
    sync_playwright = None
if not (CHROMIUM and sync_playwright):
    reason = "Chromium and playwright are needed (apt-get install chromium; pip install playwright)"
    if IN_CI:
        raise RuntimeError(f"{reason}: CI must run the publishing attacks, not skip them")
    pytest.skip(reason, allow_module_level=True)


class ForwardingProxy:
    """A reverse proxy on loopback that adds ``header`` to the first request of every
    connection (a WebSocket's upgrade request included), then relays bytes both ways."""

    def __init__(self, target_port: int, header: str):
        self.target_port, self.header = target_port, header.encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.5)
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        head = b""
        while b"\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                upstream.close()
                return
            head += chunk
        line, rest = head.split(b"\r\n", 1)
        upstream.sendall(line + b"\r\n" + self.header + b"\r\n" + rest)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.listener.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALAXY_")}
    env["GALAXY_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    env["GALAXY_WARM_UP"] = "0"  # these tests never open the Grad-CAM page
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        yield port
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--host-resolver-rules=MAP rebound.test 127.0.0.1"])
        yield browser
        browser.close()


def train_page_says(browser, url: str) -> str:
    """Open the Train page and return which of the two outcomes it shows."""
    page = browser.new_page()
    try:
        page.goto(f"{url}/train", wait_until="domcontentloaded")
        page.get_by_text("Train a model").first.wait_for(timeout=60_000)
        locked = page.get_by_text("is for the app's maintainers")
        unlocked = page.get_by_role("button", name="Start training")
        deadline = time.time() + 60
        while time.time() < deadline:
            if locked.count():
                assert not unlocked.count()
                assert not page.get_by_text("Model for this session").count()  # no picker
                return "locked"
            if unlocked.count():
                return "unlocked"
            page.wait_for_timeout(250)
        raise AssertionError(f"{url}/train showed neither outcome in 60 s")
    finally:
        page.close()


def test_a_plain_loopback_visitor_may_train(server, chromium):
    assert train_page_says(chromium, f"http://127.0.0.1:{server}") == "unlocked"
    assert train_page_says(chromium, f"http://localhost:{server}") == "unlocked"


@pytest.mark.parametrize("header", ["X-Forwarded-For: 203.0.113.7",
                                    "X-Forwarded-For: 127.0.0.1",  # spoofed by the stranger
                                    "Forwarded: for=203.0.113.7;proto=https",
                                    "X-Real-IP: 203.0.113.7"])
def test_a_visitor_through_a_reverse_proxy_on_this_machine_is_a_stranger(server, chromium,
                                                                          header):
    proxy = ForwardingProxy(server, header)
    try:
        assert train_page_says(chromium, f"http://127.0.0.1:{proxy.port}") == "locked"
    finally:
        proxy.close()


def test_a_page_opened_under_a_foreign_host_name_is_a_stranger(server, chromium):
    """DNS rebinding: a name the attacker controls resolves to 127.0.0.1."""
    assert train_page_says(chromium, f"http://rebound.test:{server}") == "locked"
