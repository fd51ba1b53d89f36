"""Start the web app: ``python serve.py [streamlit options]`` (what ``make run`` does).

Same as ``streamlit run app.py``, except for two things. The server reports the real TCP peer
of each connection (uvicorn's proxy-header rewriting is off), which the access rule judges.
And Streamlit treats a folder named
``pages/`` beside the main script as a legacy (v1) multipage app until ``st.navigation`` is
first called in the process, so a visitor whose first request is a deep link such as
``/classify`` would get that page without the router, its sidebar or its page titles. Our
``pages/`` holds ``st.navigation`` pages only, so the legacy mode is switched off up front.
"""

import os
import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    # Streamlit's server (uvicorn) would otherwise replace a loopback peer's address with what
    # its X-Forwarded-For says; the access rule wants the real TCP peer (galaxy_core/access.py)
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    sys.argv = ["streamlit", "run", APP, *sys.argv[1:]]
    sys.exit(cli.main())
