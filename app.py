"""Galaxy Zoo morphology: the Streamlit router (page config, shared sidebar, navigation)."""

import logging

import streamlit as st

from pages.common import LOG_FORMAT, model_sidebar

logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # a no-op if serve.py's warm-up did

st.set_page_config(page_title="Galaxy Zoo morphology", page_icon="🌌", layout="wide")
# a wide Markdown table (the model card's) scrolls inside its own box instead of pushing the
# whole page sideways on a phone (a fixed style of ours; nothing a visitor sends is in it)
st.markdown("<style>[data-testid='stMarkdownContainer'] table {display: block; overflow-x: auto;}"
            "</style>", unsafe_allow_html=True)

navigation = st.navigation([
    # the default page lives at the root URL ("/"); Streamlit ignores a url_path given to it
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/classify.py", title="Classify", icon="🔭", url_path="classify"),
    st.Page("pages/gradcam.py", title="Grad-CAM", icon="🔥", url_path="gradcam"),
    st.Page("pages/browse.py", title="Dataset browser", icon="🗂️", url_path="browse"),
    st.Page("pages/similar.py", title="Similar galaxies", icon="🔍", url_path="similar"),
    st.Page("pages/model_card.py", title="Model card", icon="📄", url_path="model"),
    st.Page("pages/train.py", title="Train", icon="🛠️", url_path="train"),
])
model_sidebar()
navigation.run()
