"""Start the web app: ``python serve.py [streamlit options]`` (what ``make run`` does).

Same as ``streamlit run app.py``, except for two things. The server reports the real TCP peer
of each connection (uvicorn's proxy-header rewriting is off), which the access rule judges.
And Streamlit treats a folder named
``pages/`` beside the main script as a legacy (v1) multipage app until ``st.navigation`` is
first called in the process, so a visitor whose first request is a deep link such as
``/classify`` would get that page without the router, its sidebar or its page titles. Our
``pages/`` holds ``st.navigation`` pages only, so the legacy mode is switched off up front.

A background thread keeps the Grad-CAM page's default image computed (``pages.common.keep_warm``),
so a class opening that page waits for no model work; ``GALAXY_WARM_UP=0`` turns it off.
"""

import logging
import os
import sys
import threading
import time

from streamlit.runtime import Runtime
from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")


def warm_up_when_running() -> None:
    """Once Streamlit's runtime exists (its caches are the ones the pages use), keep the
    Grad-CAM page's default image computed (pages.common.keep_warm)."""
    while not Runtime.exists():
        time.sleep(0.2)
    from pages.common import LOG_FORMAT, keep_warm  # late: the caches belong to the runtime
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # before any page's run does
    keep_warm()


if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    # Streamlit's server (uvicorn) would otherwise replace a loopback peer's address with what
    # its X-Forwarded-For says; the access rule wants the real TCP peer (galaxy_core/access.py)
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    if os.environ.get("GALAXY_WARM_UP", "1") != "0":
        threading.Thread(target=warm_up_when_running, name="warm-up", daemon=True).start()
    sys.argv = ["streamlit", "run", APP, *sys.argv[1:]]
    sys.exit(cli.main())
