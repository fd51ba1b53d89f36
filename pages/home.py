"""Home: what the tool does, the decision tree at a glance, a sample gallery, credits."""

import os

import pandas as pd
import streamlit as st

from galaxy_core.schema import QUESTIONS
from galaxy_core.checkpoint import trained_on_reframed, training_stages
from galaxy_core.registry import describe_model
from pages.common import active_model, sample_paths, thumb

st.title("🌌 Galaxy Zoo morphology")
st.markdown(
    "Upload a galaxy image and a ResNet18 trained on Galaxy Zoo 2 volunteer votes predicts "
    "how people would describe it: the 37 answer probabilities of the Galaxy Zoo decision "
    "tree, with a one-line verdict. **Grad-CAM** shows which pixels drove each answer."
)

st.subheader("Try it")
samples = sample_paths()
if not samples:
    st.info("No sample galaxies are installed (assets/samples).")
gallery = st.container(horizontal=True, gap="small")  # wraps: 6-8 a row wide, 2 on a phone
for path in samples[:12]:
    with gallery.container(width=150, gap=None):
        image = thumb(path, 140, 0.6)
        if image is not None:
            st.image(image, width="stretch")
        galaxy_id = os.path.splitext(os.path.basename(path))[0]
        if st.button(f"Classify {galaxy_id}", key=f"home_try_{galaxy_id}", width="stretch"):
            st.session_state["classify_samples"] = [path]
            st.switch_page("pages/classify.py")

st.subheader("The decision tree at a glance")
tree = pd.DataFrame([{
    "question": f"Q{q.number}",
    "asks": q.text,
    "answers": "; ".join(a.label for a in q.answers),
    "asked when": "always" if q.number in (1, 6) else
    ", ".join(f"{a.label} ({a.column})" for p in QUESTIONS for a in p.answers
              if a.next_question == q.number),
} for q in QUESTIONS]).set_index("question")
# a static table, its text wrapped to the page (a scrolling grid cut off its last row and its
# "asked when" column)
st.table(tree)
st.caption("Kaggle weighting: a question's answers sum to the value of the answer it hangs off "
           "(Q1 and Q6 sum to 1).")

st.subheader("Credits and limitations")
loaded = active_model()
limits = ""
if loaded is not None:
    info = describe_model(loaded)
    reframed = trained_on_reframed(training_stages(loaded.meta))
    if info["not_learned_questions"]:
        limits += (f"- The active model learned {', '.join(info['learned_questions'])}; the "
                   f"other answers ({', '.join(info['not_learned_questions'])}) had no training "
                   f"targets and are shown greyed out as *not learned*.\n")
    limits += (f"- It was trained on {info['data']} (SDSS galaxies centred in 424 px cut-outs, "
               f"like the Kaggle images{', then also re-framed: zoomed and shifted' if reframed else ''}"
               f"). Other telescopes, processed images or framings far from those are outside "
               f"what it has seen.\n")
st.markdown(
    "- Images: **Sloan Digital Sky Survey**. Labels: **Galaxy Zoo 2** volunteers (Willett et al. "
    "2013, MNRAS 435, 2835), as released for the Kaggle *Galaxy Challenge* (Dieleman, Willett & "
    "Dambre 2015, MNRAS 450, 1441).\n" + limits +
    "- Predictions estimate what volunteers would vote, not physical truth. See the **Model "
    "card** page for accuracy per question."
)
