"""Every page through Streamlit's AppTest, on the shipped model and sample galaxies."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from galaxy_core import paths
from galaxy_core.access import Visitor
from galaxy_core.checkpoint import load_checkpoint, read_checkpoint
from tests.conftest import galaxy_image

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")
PAGES = ["pages/home.py", "pages/classify.py", "pages/gradcam.py", "pages/browse.py",
         "pages/model_card.py", "pages/train.py"]


LOCAL = Visitor("127.0.0.1", {"host": "localhost:8501"})


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    """Training page runs and the active-model file go to a temporary folder; no password,
    dataset or trusted proxy is configured, and no earlier test's password attempts count."""
    monkeypatch.setattr(paths, "RUNS_DIR", str(tmp_path / "runs"))
    for name in ("GALAXY_ADMIN_PASSWORD", "GALAXY_DATASETS", "GALAXY_TRUSTED_PROXIES",
                 "GALAXY_LOCAL_ADMIN"):
        monkeypatch.delenv(name, raising=False)
    from pages.common import password_throttle
    password_throttle.clear()


@pytest.fixture
def visitor(monkeypatch):
    """Sets who this session's request came from. AppTest has no connection, so without this
    every session is a stranger whose address is unknown (as a real stranger's would be)."""
    import pages.common

    def as_(who: Visitor):
        monkeypatch.setattr(pages.common, "current_visitor", lambda: who)
    return as_


@pytest.fixture(autouse=True)
def router_only(monkeypatch):
    """As serve.py does for the real server: pages/ is st.navigation's, not legacy auto-pages
    (AppTest re-detects the folder before every run, so switch it off after each detection)."""
    from streamlit.runtime.pages_manager import PagesManager
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def app(page=None):
    at = AppTest.from_file(APP, default_timeout=120).run()  # registers st.navigation's pages
    if page:
        at.switch_page(page).run()
    return at


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def verdicts(at):
    return [m.value for m in at.markdown if m.value.startswith("**Verdict:**")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(page):
    at = app(page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def in_use(at) -> str:
    return next(m.value for m in at.sidebar.markdown if m.value.startswith("**In use:**"))


def test_sidebar_shows_the_active_model_and_what_it_did_not_learn():
    at = app()
    captions = " ".join(c.value for c in at.sidebar.caption)
    # the shipped model was trained on all 4000 galaxies: its accuracy is its recipe's, held out
    assert "held-out RMSE" in captions and "Not learned" in captions
    assert in_use(at) == "**In use:** shipped model (the app's model)"
    assert not at.sidebar.selectbox  # a visitor cannot swap the model


def test_model_card_reports_the_recipes_heldout_accuracy_for_the_shipped_model():
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.evaluate import mean_over_splits
    splits = load_checkpoint(paths.DEFAULT_MODEL).meta["recipe_validation"]["splits"]
    at = app("pages/model_card.py")
    assert not at.exception
    metric = at.metric[0]
    # the shipped model is the recipe's, fine-tuned once: its scores are of the recipe's model
    # short enough not to be cut off in a quarter of the page; the note above says the rest
    assert metric.label == "Pre-fine-tune held-out RMSE"
    assert f"(mean over {len(splits)} splits)" in metric.help
    assert "not itself run on those splits" in metric.help
    assert "before its last fine-tune" in at.metric[1].help and "n/a" not in at.metric[1].help
    assert at.info[0].value.startswith("These held-out scores are of the model **before its last "
                                       "training stage** (20 epochs with 'reframe' augmentation")
    assert any("epoch 20 of its last stage, after 170 epochs before it" in c and
               "the fine-tune was not itself run on them" in c for c in at.caption.values)
    assert metric.value == f"{mean_over_splits(splits)['model']['rmse']:.4f}"
    # the app averages 8 views by default, so that score is shown beside the one-view one
    assert at.metric[1].label == "Averaged over 8 views"
    assert at.metric[1].value == f"{mean_over_splits(splits)['model_tta']['rmse']:.4f}"
    table = [d.value for d in at.dataframe if "held-out RMSE" in d.value.columns][0]
    for column in ("held-out RMSE", "held-out RMSE, 8 views", "mean baseline"):
        assert table[column].notna().sum() == 5  # Q1, Q2, Q6, Q7, Q8 have targets
    assert (table["held-out RMSE, 8 views"] < table["mean baseline"]).sum() == 5


def test_model_card_shows_agreement_with_the_volunteers_majority(tmp_path, visitor):
    """A held-out record that counted agreement (train.evaluate does since it existed) shows it
    per question, of the 8-view predictions the app makes by default, beside the baseline."""
    import torch
    raw = read_checkpoint(paths.DEFAULT_MODEL)
    for split, share in zip(raw["recipe_validation"]["splits"], (0.9, 0.8, 0.7)):
        split["model"]["majority_agreement"] = {"Q1": {"agreement": 0.1, "galaxies": 800}}
        split["model_tta"]["majority_agreement"] = {"Q1": {"agreement": share, "galaxies": 800}}
        split["mean_baseline"]["majority_agreement"] = {"Q1": {"agreement": 0.5, "galaxies": 800}}
    path = tmp_path / "runs" / "counted" / "best.pt"
    path.parent.mkdir(parents=True)
    torch.save(raw, path)
    visitor(LOCAL)  # a maintainer looks at a model before activating it
    at = app("pages/model_card.py")
    at.sidebar.selectbox[0].set_value(str(path)).run()
    assert not at.exception and not at.error
    table = [d.value for d in at.dataframe if "held-out RMSE" in d.value.columns][0]
    q1 = table[table["question"] == "Q1 shape"].iloc[0]
    assert q1["top answer = volunteers' majority"] == pytest.approx(80.0)
    assert q1["same, always the training majority"] == pytest.approx(50.0)
    assert table["top answer = volunteers' majority"].notna().sum() == 1  # only Q1 was counted


def test_classify_an_upload_shows_verdict_and_37_probabilities():
    at = app("pages/classify.py")
    sample = os.path.join(paths.SAMPLE_IMAGES, sorted(os.listdir(paths.SAMPLE_IMAGES))[0])
    at.file_uploader[0].set_value(("galaxy.png", png_bytes(Image.open(sample)), "image/png")).run()
    assert not at.exception
    assert len(verdicts(at)) == 1
    tables = [d.value for d in at.dataframe if len(d.value) == 37]
    assert tables and tables[0]["probability"].between(0, 1).all()
    assert (~tables[0]["learned"]).sum() == 20  # the shipped model learned 17 of 37 answers
    assert at.get("download_button")


def test_classify_shows_and_judges_the_region_its_prediction_cut():
    """A wide field is zoomed in on by the prediction; the picture is that region, and the flags
    judge it too (not the image as it is), so the verdict is not hedged; with framing off the
    same upload is shown whole and flagged."""
    from tests.test_framing import kaggle_like
    at = app("pages/classify.py")
    at.file_uploader[0].set_value(("wide.png", png_bytes(kaggle_like(0.0774 / 2.5)),
                                   "image/png")).run()
    assert not at.exception, at.exception
    captions = [p.caption for element in at.get("image") for p in element.proto.imgs]
    assert any("the region the model sees (zoomed in" in c for c in captions), captions
    assert "unlike the training images" not in verdicts(at)[0]
    assert not [w for w in at.warning if w.value.startswith("Unlike the training images")]
    table = [d.value for d in at.dataframe if len(d.value) == 37][0]
    assert table[table["learned"]][["low", "high"]].notna().all().all()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "rule"]
    at.toggle(key="classify_framing").set_value(False).run()
    assert not at.exception, at.exception
    captions = [p.caption for element in at.get("image") for p in element.proto.imgs]
    assert not any("zoomed in" in c for c in captions), captions
    assert "unlike the training images, so these answers are a guess" in verdicts(at)[0]
    assert [w for w in at.warning if w.value.startswith("Unlike the training images")]
    # a flagged image gets no interval: calibrated on cut-outs, it would promise nothing here
    table = [d.value for d in at.dataframe if len(d.value) == 37][0]
    assert "low" not in table.columns
    assert not any(c.value.startswith("The black line") for c in at.caption)
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "layer" not in spec and spec["mark"]["type"] == "bar"  # bars, no interval lines


def test_a_blank_upload_is_said_to_hold_no_galaxy():
    """A flat image is still predicted, but its verdict does not read as a galaxy's: it starts
    by saying no galaxy was found, and the batch table says so too."""
    at = app("pages/classify.py")
    at.file_uploader[0].set_value([
        ("black.png", png_bytes(Image.new("RGB", (424, 424))), "image/png"),
        ("sample.jpg", open(os.path.join(paths.SAMPLE_IMAGES, "100204.jpg"), "rb").read(),
         "image/jpeg")]).run()
    assert not at.exception, at.exception
    assert verdicts(at)[0].startswith("**Verdict:** *no galaxy was found in this image")
    assert not verdicts(at)[1].startswith("**Verdict:** *")  # a cut-out: a plain verdict
    batch = [d.value for d in at.dataframe if "verdict" in d.value.columns][0]
    assert batch.set_index("GalaxyID").loc["black", "verdict"].startswith("(no galaxy found) ")


def test_classify_keeps_one_row_per_galaxy_id_and_says_which_it_left_out():
    """A Kaggle CSV has one row per GalaxyID: a sample uploaded and also picked is shown once."""
    at = app("pages/classify.py")
    name = sorted(os.listdir(paths.SAMPLE_IMAGES))[0]
    sample = os.path.join(paths.SAMPLE_IMAGES, name)
    at.file_uploader[0].set_value((name, open(sample, "rb").read(), "image/jpeg"))
    at.multiselect[0].set_value([os.path.splitext(name)[0]])
    at.run()
    assert not at.exception
    assert len(verdicts(at)) == 1
    assert any(name in w.value and "one row per GalaxyID" in w.value for w in at.warning)


def test_classify_shows_each_learned_answers_calibrated_interval(tmp_path):
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    assert loaded.calibration is not None  # the shipped model carries its intervals
    at = app("pages/classify.py")
    at.multiselect[0].set_value([os.path.splitext(sorted(os.listdir(paths.SAMPLE_IMAGES))[0])[0]])
    at.run()
    table = [d.value for d in at.dataframe if len(d.value) == 37][0]
    learned = table[table["learned"]]
    assert len(learned) == 17 and learned[["low", "high"]].notna().all().all()
    assert (learned["low"] <= learned["probability"] + 5e-4).all()
    assert (learned["probability"] <= learned["high"] + 5e-4).all()
    # a real interval, not a point (the narrowest: a rare answer predicted near 0, e.g. dust lane)
    assert (learned["high"] - learned["low"]).min() > 0.002
    assert (learned["high"] - learned["low"]).max() > 0.1
    assert table[~table["learned"]][["low", "high"]].isna().all().all()
    assert sum(c.value.startswith("The black line across a bar is an 80% range") for c in
               at.caption) == 1
    # the shipped model's intervals were calibrated before its fine-tune, and the page says so
    assert loaded.calibration.stage == 1
    assert any("(on galaxies kept out of training by the model before its fine-tune: 80%)"
               in c.value for c in at.caption)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download 80% intervals (CSV)" in labels

    # a model that was never calibrated shows bars without intervals, and says nothing of them
    raw = read_checkpoint(paths.DEFAULT_MODEL)
    del raw["intervals"]
    from galaxy_core.checkpoint import atomic_save
    from galaxy_core.registry import set_active_model
    atomic_save(raw, tmp_path / "plain.pt")
    set_active_model(str(tmp_path / "plain.pt"), confirm=True)
    at = app("pages/classify.py")
    at.multiselect[0].set_value([os.path.splitext(sorted(os.listdir(paths.SAMPLE_IMAGES))[0])[0]])
    at.run()
    assert not at.exception
    table = [d.value for d in at.dataframe if len(d.value) == 37][0]
    assert "low" not in table.columns
    assert not any(c.value.startswith("The black line") for c in at.caption)
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "layer" not in spec and spec["mark"]["type"] == "bar"  # bars, no interval lines


def test_model_card_shows_how_often_the_intervals_held():
    from galaxy_core.schema import QUESTIONS
    measured = load_checkpoint(paths.DEFAULT_MODEL).calibration.coverage
    at = app("pages/model_card.py")
    assert not at.exception
    table = [d.value for d in at.dataframe if "coverage" in d.value.columns][0]
    learned = [f"Q{q.number} {q.topic}" for q in QUESTIONS if q.number in (1, 2, 6, 7, 8)]
    assert list(table["question"]) == learned + ["all"]
    for name, row in zip(table["question"], table.itertuples()):
        key = measured["all"] if name == "all" else measured["per_question"][name.split()[0]]
        assert row.coverage == pytest.approx(100 * key["coverage"])


def test_classify_averages_rotations_by_default_and_can_switch_it_off():
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.predict import predict_image
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    sample = sorted(os.listdir(paths.SAMPLE_IMAGES))[0]
    at = app("pages/classify.py")
    at.multiselect[0].set_value([os.path.splitext(sample)[0]]).run()
    path = os.path.join(paths.SAMPLE_IMAGES, sample)
    expected = {tta: predict_image(loaded, path, tta=tta) for tta in (True, False)}
    assert np.abs(expected[True] - expected[False]).max() > 1e-3  # the test can tell them apart
    for tta in (True, False):
        assert at.toggle(key="classify_tta").value is tta
        shown = [d.value for d in at.dataframe if len(d.value) == 37][0]["probability"]
        np.testing.assert_allclose(shown, expected[tta], atol=6e-5)  # shown to 4 decimals
        at.toggle(key="classify_tta").set_value(False).run()


def test_one_click_samples_and_bad_uploads_do_not_break_the_page():
    at = app("pages/classify.py")
    at.button[0].click().run()  # "Try 4 samples"
    assert len(verdicts(at)) == 4
    # the batch table: one row per galaxy, a sortable column per learned answer
    batch = [d.value for d in at.dataframe if "verdict" in d.value.columns][0]
    assert len(batch) == 4
    assert "Q8 merger (Class8.6)" in batch.columns and "Q4 spiral arms (Class4.1)" not in batch
    assert batch["Q1 smooth (Class1.1)"].between(0, 1).all()
    at.file_uploader[0].set_value([
        ("empty.jpg", b"", "image/jpeg"),
        ("junk.png", b"definitely not a png", "image/png"),
        ("grey16.png", png_bytes(Image.fromarray(
            (np.asarray(galaxy_image(2).convert("L"), dtype=np.uint16) * 200))), "image/png"),
        ("cmyk.jpg", _jpeg(galaxy_image(3).convert("CMYK")), "image/jpeg"),
    ]).run()
    assert not at.exception
    errors = " ".join(e.value for e in [*at.error, *at.warning])
    assert "empty.jpg" in errors and "junk.png" in errors
    assert "Error" not in errors  # no exception class names (UnidentifiedImageError, ...)
    assert len(verdicts(at)) == 6  # 2 odd-but-valid uploads + 4 samples


def test_refused_uploads_are_explained_on_the_page():
    at = app("pages/classify.py")
    at.file_uploader[0].set_value([
        ("m51.fits", b"SIMPLE  =                    T" + b" " * 2850, "application/fits"),
        ("huge.png", b"\x89PNG" + b"\0" * (26 * 1024 * 1024), "image/png"),
        ("notes.txt", b"hello", "text/plain"),
        ("IMG_0001.CR2", b"II*\0", "image/x-canon-cr2"),
    ]).run()
    assert not at.exception
    warnings = {w.value.split("**")[1]: w.value for w in at.warning}
    assert "not an image this app reads" in warnings["IMG_0001.CR2"]
    assert any("m51.fits" in e.value and "FITS" in e.value for e in at.error)  # a hollow FITS
    assert "27.3 MB is over the 25 MB limit" in warnings["huge.png"]
    assert "a .txt file" in warnings["notes.txt"]
    assert sum("MB" in c.value for c in at.caption) == 1  # the limit is said once


def test_the_batch_table_shows_the_answers_along_each_verdict(monkeypatch):
    import streamlit

    downloads = {}  # each download button's data, by label (the page runs in this process)
    original = streamlit.download_button

    def recording(label, data, *args, **kwargs):
        downloads[label] = data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", recording)
    at = app("pages/classify.py")
    at.button[0].click().run()  # "Try 4 samples"
    batch = [d.value for d in at.dataframe if "verdict" in d.value.columns][0]
    assert "top learned answer" not in batch.columns
    assert batch["Q1 shape"].str.fullmatch(r"(smooth|features or disk|star or artifact) \(\d+%\)").all()
    first = walk_tree_of(batch["GalaxyID"].iloc[0])
    assert batch["Q1 shape"].iloc[0] == f"{first.steps[0].answer.label} ({first.steps[0].share:.0%})"

    # with a wide field (zoomed in on) and a tiny image (flagged) among them, the table says
    # what framing did and marks the flagged verdict as a guess
    from tests.test_framing import kaggle_like
    at.file_uploader[0].set_value([
        ("wide.png", png_bytes(kaggle_like(0.0774 / 2.5)), "image/png"),
        ("tiny.png", png_bytes(Image.open(os.path.join(paths.SAMPLE_IMAGES, "100204.jpg"))
                               .resize((50, 50))), "image/png")]).run()
    assert not at.exception, at.exception
    element = [d for d in at.dataframe if "verdict" in d.value.columns][0]
    batch = element.value.set_index("GalaxyID")
    assert len(batch) == 6 and batch.loc["wide", "framing"].startswith("zoomed in ")
    assert (batch.drop(index=["wide", "tiny"])["framing"] == "").all()
    assert batch.loc["tiny", "verdict"].startswith("(a guess) ")
    assert "is small" in batch.loc["tiny", "unlike the training images"]
    assert not batch.drop(index="tiny")["verdict"].str.startswith("(a guess)").any()
    # the intervals CSV has none for the flagged image, and says why, as the page does
    from galaxy_core.uncertainty import FLAGS_COLUMN
    import pandas as pd
    intervals = pd.read_csv(io.BytesIO(downloads["Download 80% intervals (CSV)"])).set_index(
        "GalaxyID")
    assert list(intervals.index) == list(batch.index) and intervals.columns[-1] == FLAGS_COLUMN
    bounds = intervals.drop(columns=FLAGS_COLUMN)
    assert bounds.loc["tiny"].isna().all() and "is small" in intervals.loc["tiny", FLAGS_COLUMN]
    assert bounds.drop(index="tiny").notna().all().all()
    assert intervals.drop(index="tiny")[FLAGS_COLUMN].isna().all()
    # a cell does not wrap, so each text column is as wide as its longest entry needs, and the
    # IDs stay pinned while the columns after them scroll
    columns = json.loads(element.proto.columns)
    for column in ("verdict", "unlike the training images", "framing", "Q1 shape",
                   "Q7 roundness"):
        assert columns[column]["width"] >= 7 * batch[column].str.len().max(), column
    assert columns["GalaxyID"]["pinned"] is True


def walk_tree_of(galaxy_id):
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.predict import predict_image
    from galaxy_core.verdict import walk_tree
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    preds = predict_image(loaded, os.path.join(paths.SAMPLE_IMAGES, f"{galaxy_id}.jpg"), tta=True)
    return walk_tree(preds, loaded.trained_columns)


def _jpeg(image):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_gradcam_page_produces_an_overlay_for_every_method():
    at = app("pages/gradcam.py")
    # what the model sees, heatmap, overlay, the colour bar, then one map per question walked
    assert len(at.get("image")) >= 3 + 1 + 1
    from galaxy_core.explain import METHOD_NAMES
    assert at.radio[0].options == list(METHOD_NAMES.values())
    for method, name in METHOD_NAMES.items():
        at.radio[0].set_value(method).run()
        assert not at.exception
        assert any(m.value.startswith(f"**{name}** of") for m in at.markdown), name
        assert at.get("download_button")
    # averaged over the 8 views by default, as Classify predicts; one view when switched off
    assert any("averaged over 8 views" in m.value for m in at.markdown)
    next(t for t in at.toggle if t.label.startswith("Average over")).set_value(False).run()
    assert not at.exception
    assert not any("averaged over" in m.value for m in at.markdown)
    assert any(m.value.startswith("**LayerCAM** of") for m in at.markdown)
    # for teaching: all five methods side by side
    images = len(at.get("image"))
    next(t for t in at.toggle if t.label.startswith("Compare the five")).set_value(True).run()
    assert not at.exception and not at.error
    assert len(at.get("image")) == images + len(METHOD_NAMES)


def test_browser_filters_and_shows_labels_beside_predictions():
    at = app("pages/browse.py")
    filter_box = next(s for s in at.selectbox if s.label == "Filter by")
    filter_box.set_value("Class1.1").run()
    value = next(n for n in at.number_input if n.label == "value")
    value.set_value(0.7).run()
    assert not at.exception
    page_label = next(n for n in at.number_input if n.label.startswith("Page")).label
    matching = int(page_label.split(";")[1].split()[0])
    import pandas as pd
    labels = pd.read_csv(paths.SAMPLE_LABELS)
    assert matching == int((labels["Class1.1"] > 0.7).sum())
    assert any("Q1 shape" in m.value for m in at.markdown)


def one_galaxy_dataset(tmp_path, monkeypatch, name: str, galaxy_id: int):
    """A configured dataset ``name`` of one labelled galaxy; returns its folder."""
    root = tmp_path / name.lower()
    (root / "images").mkdir(parents=True)
    galaxy_image(galaxy_id % 1000).save(root / "images" / f"{galaxy_id}.jpg")
    (root / "labels.csv").write_text(f"GalaxyID,Class1.1\n{galaxy_id},0.5\n")
    monkeypatch.setenv("GALAXY_DATASETS", f"{name}={root}")
    return root


def test_browser_says_per_galaxy_whether_the_model_trained_on_it(tmp_path, monkeypatch):
    one_galaxy_dataset(tmp_path, monkeypatch, "Unseen", 900001)
    at = app("pages/browse.py")
    at.selectbox(key="browse_dataset").set_value("Unseen").run()
    assert any("was not in the model's training data" in c.value for c in at.caption)


def test_browser_thumbnails_are_clickable_and_captioned_by_the_sort_column():
    import pandas as pd
    labels = pd.read_csv(paths.SAMPLE_LABELS)
    at = app("pages/browse.py")
    next(s for s in at.selectbox if s.label == "Sort by").set_value("Class8.6").run()
    thumbs = [b for b in at.button if b.key and b.key.startswith("browse_thumb_")]
    top = labels.sort_values("Class8.6", ascending=False, kind="stable").iloc[0]
    assert thumbs[0].label == f"{int(top['GalaxyID'])} · merger {top['Class8.6']:.2f}"
    thumbs[3].click().run()
    third = int(thumbs[3].key.rsplit("_", 1)[1])
    assert any(h.value == f"Galaxy {third}" for h in at.subheader)


def test_browser_leaves_out_what_the_model_never_learned():
    at = app("pages/browse.py")
    assert not at.exception and not at.error
    tables = {m.value.split("**")[1]: d.value for m, d in zip(
        [m for m in at.markdown if m.value.startswith("**Q")], at.dataframe)}
    assert list(tables) == ["Q1 shape", "Q2 edge-on", "Q6 anything odd", "Q7 roundness",
                            "Q8 odd feature"]  # Q3-5 and Q9-11: neither labelled nor learned
    assert all(t["model"].notna().all() for t in tables.values())
    assert any("Neither labelled here nor learned: Q3 bar" in c.value for c in at.caption)
    # the shipped checkpoint records its training galaxies: every sample was one of them
    assert any("was in the model's training data" in c.value for c in at.caption)
    # the whole-dataset comparison: one scatter per learned answer the dataset labels
    assert at.toggle(key="browse_compare").value  # 40 galaxies: on by default
    # one chart per answer (wrapped to the screen, not one fixed-width grid cut off on a phone)
    titles = [json.loads(c.proto.spec)["title"]["text"] for c in at.get("vega_lite_chart")]
    assert len(titles) == 17 and titles[0] == "Q1 smooth"


def test_browser_reports_a_broken_dataset_without_its_path_or_contents(
        tmp_path, monkeypatch, visitor):
    root = one_galaxy_dataset(tmp_path, monkeypatch, "Vanishing", 1)
    at = app("pages/browse.py")
    at.selectbox(key="browse_dataset").set_value("Vanishing").run()
    assert not at.exception and not at.error
    (root / "labels.csv").write_text("SECRET=hunter2\n")  # replaced by something else
    at.run()
    assert not at.exception
    assert "cannot be read right now" in at.error[0].value and str(root) not in at.error[0].value
    visitor(LOCAL)  # a maintainer sees why, but not the file's contents
    at.run()
    assert "no GalaxyID column" in at.error[0].value and "hunter2" not in at.error[0].value


def test_training_is_locked_for_a_stranger_without_password():
    at = app("pages/train.py")
    assert "for the app's maintainers" in at.warning[0].value
    assert "cannot be unlocked from a browser here" in at.warning[0].value
    assert "password" not in at.warning[0].value  # no word on how the server is set up
    assert not at.text_input  # nothing to unlock with
    assert not any(b.label == "Start training" for b in at.button)


def test_password_unlocks_and_a_tiny_run_completes(monkeypatch):
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "s3cret")
    at = app("pages/train.py")
    at.text_input[0].set_value("wrong").run()
    at.button[0].click().run()
    assert at.error[0].value == "wrong password"
    at.text_input[0].set_value("s3cret").run()
    at.button[0].click().run()
    assert not at.warning
    assert "s3cret" not in str(at.session_state)  # never kept
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_image_size").set_value(32)
    at.number_input(key="train_batch_size").set_value(16)
    at.selectbox(key="train_optimizer").set_value("adamw")
    at.number_input(key="train_weight_decay").set_value(0.05)
    at.selectbox(key="train_precision").set_value("bfloat16")
    at.number_input(key="train_lr").set_value(1.0)  # sure to be worse than the mean
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.error, [e.value for e in at.error]
    from pages.common import training_jobs
    jobs = training_jobs()
    jobs.wait(120)
    assert jobs.state.status == "done", jobs.state.error
    recipe = load_checkpoint(jobs.state.result.best_path).meta["train_config"]
    assert (recipe["optimizer"], recipe["weight_decay"], recipe["precision"]) == (
        "adamw", 0.05, "bfloat16")
    at.run()
    assert any("Best checkpoint" in s.value for s in at.success)
    # a 1-epoch run at learning rate 1 is no better than the mean: activating it takes an
    # explicit yes
    from galaxy_core import registry
    best = jobs.state.result.best_path
    assert at.selectbox(key="activate_candidate").value == best
    assert any("no better than predicting the mean" in w.value for w in at.warning)
    assert at.button(key="activate").disabled
    at.checkbox(key="activate_confirm").check().run()
    at.button(key="activate").click().run()
    assert not at.exception and not at.error
    assert registry.active_model_path() == best
    assert registry.activation_log()[-1]["by"] == "admin password (unknown)"
    fresh = app()  # a new visitor gets the new active model, and the sidebar says so
    assert in_use(fresh).startswith(f"**In use:** {registry.model_label(best)} (the app's")
    # its card scores it on its own validation galaxies, agreement with the volunteers included
    fresh.switch_page("pages/model_card.py").run()
    assert not fresh.exception and not fresh.error
    table = [d.value for d in fresh.dataframe if "validation RMSE" in d.value.columns][0]
    q1 = table[table["question"] == "Q1 shape"].iloc[0]
    counted = load_checkpoint(jobs.state.result.best_path).meta["metrics"]["best"]["val"][
        "majority_agreement"]["Q1"]
    assert q1["top answer = volunteers' majority"] == pytest.approx(100 * counted["agreement"])
    # one step back to the shipped model, for every visitor
    at.button(key="restore_shipped").click().run()
    assert registry.active_model_path() == paths.DEFAULT_MODEL
    assert in_use(app()).startswith("**In use:** shipped model")


def unlocked_training_page(monkeypatch, epochs):
    """The training page unlocked with a password, set up for a tiny run of ``epochs``."""
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "pw")
    at = app("pages/train.py")
    at.text_input[0].set_value("pw").run()
    at.button[0].click().run()
    at.number_input(key="train_epochs").set_value(epochs)
    at.number_input(key="train_image_size").set_value(32)
    return at


def test_a_run_fine_tunes_the_shipped_model_and_a_wrong_head_is_reported(monkeypatch):
    at = unlocked_training_page(monkeypatch, epochs=1)
    at.selectbox(key="train_init_from").set_value(paths.DEFAULT_MODEL)
    at.selectbox(key="train_head").set_value("plain")
    next(b for b in at.button if b.label == "Start training").click().run()
    from pages.common import training_jobs
    jobs = training_jobs()
    jobs.wait(120)
    assert jobs.state.status == "failed"
    at.run()
    assert any("has a 'tree' output head" in e.value for e in at.error)

    at.selectbox(key="train_head").set_value("tree")
    next(b for b in at.button if b.label == "Start training").click().run()
    jobs.wait(120)
    assert jobs.state.status == "done", jobs.state.error
    recipe = load_checkpoint(jobs.state.result.last_path).meta["train_config"]
    assert recipe["init_from"] == paths.DEFAULT_MODEL and recipe["image_size"] == 32


def test_a_local_visitor_trains_without_password_and_a_proxied_one_is_locked(
        visitor, monkeypatch):
    visitor(LOCAL)
    at = app("pages/train.py")
    assert not at.warning
    assert any(b.label == "Start training" for b in at.button)
    # the same loopback peer, but through a reverse proxy / tunnel, or under a foreign name
    for stranger in (Visitor("127.0.0.1", {"host": "localhost:8501",
                                           "x-forwarded-for": "203.0.113.7"}),
                     Visitor("127.0.0.1", {"host": "localhost", "forwarded": "for=1.2.3.4"}),
                     Visitor("127.0.0.1", {"host": "localhost", "x-real-ip": "1.2.3.4"}),
                     Visitor("127.0.0.1", {"host": "rebound.example.org:8501"})):
        visitor(stranger)
        at = app("pages/train.py")
        assert "for the app's maintainers" in at.warning[0].value, stranger
        assert not any(b.label in ("Start training", "Stop") for b in at.button)
        assert not at.sidebar.selectbox  # nor a model of its own choosing


def test_wrong_passwords_are_throttled(monkeypatch):
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "s3cret")
    at = app("pages/train.py")
    messages = []
    for _ in range(4):
        at.text_input[0].set_value("guess").run()
        at.button[0].click().run()
        messages.append(at.error[0].value)
    assert messages[:2] == ["wrong password", "wrong password"]
    assert "next try in" in messages[2] and "too many wrong passwords" in messages[3]
    at.text_input[0].set_value("s3cret").run()
    at.button[0].click().run()
    assert "too many wrong passwords" in at.error[0].value  # even the right one waits
    assert not any(b.label == "Start training" for b in at.button)


def test_a_broken_checkpoint_in_runs_is_reported_and_the_app_keeps_working(tmp_path, visitor):
    visitor(LOCAL)  # only an admin may pick a model other than the app's
    broken = tmp_path / "runs" / "bad-run"
    broken.mkdir(parents=True)
    (broken / "best.pt").write_bytes(b"this is not a checkpoint")
    at = app("pages/classify.py")
    at.sidebar.selectbox[0].set_value(str(broken / "best.pt")).run()
    assert not at.exception
    assert any("not a readable PyTorch checkpoint" in e.value for e in at.error)
    at.sidebar.selectbox[0].set_value("").run()  # back to following the app's model
    at.button[0].click().run()
    assert len(verdicts(at)) == 4
    assert (broken / "best.pt").read_bytes() == b"this is not a checkpoint"


def test_training_form_takes_the_selected_models_recipe(visitor):
    visitor(LOCAL)
    at = app("pages/train.py")
    assert at.number_input(key="train_epochs").value == 10
    next(b for b in at.button if b.label == "Use the selected model's recipe").click().run()
    assert not at.exception and not at.error
    recipe = load_checkpoint(paths.DEFAULT_MODEL).meta["train_config"]
    assert at.number_input(key="train_epochs").value == recipe["epochs"]
    assert at.number_input(key="train_image_size").value == recipe["image_size"]
    assert at.slider(key="train_dropout").value == pytest.approx(recipe["dropout"])
    assert at.slider(key="train_crop_fraction").value == pytest.approx(recipe["crop_fraction"])
    assert at.selectbox(key="train_schedule").value == recipe["schedule"]
    assert at.selectbox(key="train_optimizer").value == "adam"  # recorded before the field existed
    assert at.slider(key="train_train_fraction").value == 1.0  # recorded before the field existed
    assert recipe["val_fraction"] == 0.0  # the shipped model held nothing out...
    assert at.slider(key="train_val_fraction").value == pytest.approx(0.2)  # ...the form still does


def test_resuming_from_the_page_continues_the_run_with_its_own_settings(monkeypatch):
    from galaxy_core.config import TrainConfig
    from galaxy_core.training import fit
    epochs_done = []
    interrupted = fit(TrainConfig(images=paths.SAMPLE_IMAGES, labels=paths.SAMPLE_LABELS,
                                  out=os.path.join(paths.RUNS_DIR, "interrupted"), epochs=2,
                                  image_size=32, crop_fraction=0.5, batch_size=16,
                                  schedule="onecycle", head="tree", workers=0, device="cpu"),
                      on_event=lambda e: epochs_done.append(e) if e.kind == "epoch" else None,
                      should_stop=lambda: bool(epochs_done))  # stopped during epoch 2
    assert interrupted.cancelled and len(interrupted.history) == 1
    at = unlocked_training_page(monkeypatch, epochs=7)  # the form asks for another run...
    at.number_input(key="train_image_size").set_value(64)
    at.selectbox(key="train_resume").set_value(interrupted.last_path)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("with its own settings (2 epochs, 32 px, seed 0)" in i.value for i in at.info)
    from pages.common import training_jobs
    jobs = training_jobs()
    jobs.wait(120)
    assert jobs.state.status == "done", jobs.state.error
    resumed = read_checkpoint(jobs.state.result.last_path)  # ...the run continues as it was
    assert resumed["epoch"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == interrupted.history[0]
    assert [h["epoch"] for h in jobs.state.history] == [1, 2]  # the page charts the whole run
    assert (resumed["train_config"]["image_size"], resumed["train_config"]["schedule"]) == (
        32, "onecycle")


def test_stop_button_cancels_a_running_job(monkeypatch):
    at = unlocked_training_page(monkeypatch, epochs=500)
    next(b for b in at.button if b.label == "Start training").click().run()
    from pages.common import training_jobs
    jobs = training_jobs()
    import time
    deadline = time.time() + 60
    while jobs.state.status != "training" and time.time() < deadline:
        time.sleep(0.2)
    at.run()  # a reload re-attaches to the running job
    assert any("Run: run-" in h.value for h in at.subheader)
    next(b for b in at.button if b.label == "Stop").click().run()
    jobs.wait(60)
    assert jobs.state.status == "cancelled"


def test_browser_pages_through_a_full_kaggle_sized_table(tmp_path, monkeypatch):
    """61,578 rows (the Kaggle training set's size): only one page of thumbnails is read."""
    import pandas as pd
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"GalaxyID": np.arange(100000, 100000 + 61578),
                          "Class1.1": rng.random(61578).round(4)})
    labels = tmp_path / "labels.csv"
    frame.to_csv(labels, index=False)
    images = tmp_path / "images"
    images.mkdir()
    for galaxy_id in frame["GalaxyID"][:3]:
        galaxy_image(int(galaxy_id)).save(images / f"{galaxy_id}.jpg")
    monkeypatch.setenv("GALAXY_DATASETS", f"Kaggle-sized={tmp_path}")
    at = app("pages/browse.py")
    at.selectbox(key="browse_dataset").set_value("Kaggle-sized").run()
    assert not at.exception
    page_label = next(n for n in at.number_input if n.label.startswith("Page")).label
    assert "of 2566;" in page_label and "61578 of 61578" in page_label
    # one page of 24 thumbnails: the 3 galaxies with an image shown (each a button), the other
    # 21 named as unreadable, then the first galaxy again, larger, for inspection; nothing of
    # page 2
    ids = [str(g) for g in frame["GalaxyID"][:24]]
    assert [b.key for b in at.button if b.key and b.key.startswith("browse_thumb_")] == [
        f"browse_thumb_{g}" for g in ids[:3]]
    assert len(at.get("image")) == 4
    assert sorted(c.value for c in at.caption if c.value.endswith("no readable image")) == \
        [f"{g}: no readable image" for g in ids[3:]]


def page_text(at) -> str:
    """Every text a page shows (markdown, captions, alerts, labels), to search for leaks."""
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "text", "code",
                 "title", "subheader"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    parts += [str(getattr(w, "label", "")) for w in at.get("text_input")]
    return "\n".join(parts)


@pytest.mark.parametrize("page", PAGES)
def test_a_stranger_sees_no_box_to_type_a_path_in(page, monkeypatch):
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "hunter2-secret")
    at = app(page)
    assert not at.exception
    assert [t.label for t in at.text_input] in ([], ["Admin password"])
    assert "hunter2-secret" not in page_text(at)


@pytest.mark.parametrize("probe", ["/proc/self/environ", "/etc/passwd",
                                   os.path.join(paths.PROJECT_ROOT, ".streamlit", "secrets.toml"),
                                   os.path.join(paths.SAMPLE_IMAGES, "..", "..", "..", "README.md"),
                                   "../../../../etc/passwd"])
def test_a_maintainers_path_boxes_refuse_anything_outside_the_datasets(probe, monkeypatch,
                                                                       visitor, tmp_path):
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "hunter2-secret")
    visitor(LOCAL)
    at = app("pages/browse.py")
    at.text_input(key="browse_labels").set_value(probe).run()
    assert not at.exception
    assert "outside the configured dataset folders" in at.error[0].value
    assert "hunter2-secret" not in page_text(at) and "root:" not in page_text(at)
    at.text_input(key="browse_labels").set_value("").run()
    at.text_input(key="browse_images").set_value(os.path.dirname(probe) or "/").run()
    assert at.error and not at.get("image")  # no thumbnails from outside


def test_a_symlink_out_of_a_dataset_is_refused(monkeypatch, visitor, tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels.csv").write_text("GalaxyID,Class1.1\n1,0.5\n")
    (tmp_path / "private.csv").write_text("GalaxyID,Class1.1\n7,0.25\n")
    (root / "sneaky.csv").symlink_to(tmp_path / "private.csv")
    monkeypatch.setenv("GALAXY_DATASETS", f"Data={root}")
    visitor(LOCAL)
    at = app("pages/browse.py")
    at.text_input(key="browse_labels").set_value(str(root / "sneaky.csv")).run()
    assert "outside the configured dataset folders" in at.error[0].value
    at.text_input(key="browse_labels").set_value(str(root / "images" / ".." / "labels.csv")).run()
    assert not any("outside" in e.value for e in at.error)  # inside its root: fine
    assert any("1 of 1 galaxies" in n.label for n in at.number_input)


@pytest.mark.parametrize("page", PAGES)
def test_no_page_prints_an_html_tag_as_text(page):
    at = app(page)
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for tag in ("<details", "</details>", "<summary", "</summary>", "<br", "<div"):
        assert not any(tag in text for text in texts), (page, tag)


def test_model_card_leads_with_accuracy_shows_the_plots_and_folds_the_lab_notebook():
    at = app("pages/model_card.py")
    headers = [h.value for h in at.subheader]
    assert headers[:4] == ["How good is it?", "How sure is each answer?", "What was it trained on?",
                           "What it cannot do"]
    captions = [c for image in at.get("image") for c in image.captions]
    assert any("RMSE per question" in c for c in captions), captions
    assert any("Predicted against volunteer fraction" in c for c in captions), captions
    folded = [e.label for e in at.expander]
    assert "Variants compared" in folded and "Recipe" in folded
    # the shipped model's Grad-CAM faithfulness table, behind a question a teacher asks
    assert "Can the Grad-CAM maps be trusted?" in headers
    assert any("HiResCAM" in m.value and "beats centre" in m.value for m in at.markdown)


def test_training_settings_that_cannot_train_are_refused_before_starting(visitor):
    visitor(LOCAL)
    at = app("pages/train.py")
    assert any("40 labelled galaxies; 17 of 37 answer columns (Q1, Q2, Q6, Q7, Q8)" in c.value
               for c in at.caption)
    at.number_input(key="train_subset").set_value(1).run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert at.error[0].value == "Not started: val_fraction 0.2 leaves no training galaxies out of 1"
    from pages.common import training_jobs
    assert training_jobs().state is None or not training_jobs().state.running


def test_a_reloaded_training_page_shows_the_running_jobs_settings(visitor, monkeypatch):
    at = unlocked_training_page(monkeypatch, epochs=500)
    at.number_input(key="train_batch_size").set_value(8)
    next(b for b in at.button if b.label == "Start training").click().run()
    from pages.common import training_jobs
    jobs = training_jobs()
    try:
        visitor(LOCAL)
        reloaded = app("pages/train.py")  # a new session: the page opened again
        assert any("A run is going" in i.value for i in reloaded.info)
        assert reloaded.number_input(key="train_epochs").value == 500
        assert reloaded.number_input(key="train_batch_size").value == 8
        assert reloaded.number_input(key="train_image_size").value == 32
    finally:
        jobs.stop()
        jobs.wait(60)


def test_a_one_epoch_run_draws_its_point_with_whole_epochs(monkeypatch):
    at = unlocked_training_page(monkeypatch, epochs=1)
    next(b for b in at.button if b.label == "Start training").click().run()
    from pages.common import training_jobs
    training_jobs().wait(120)
    at.run()
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert len(specs) == 2
    for spec in specs:
        assert spec["mark"] == {"type": "line", "point": True}
        assert spec["encoding"]["x"]["axis"]["format"] == "d"


def test_fits_uploads_are_classified_with_their_sky_position():
    from tests.test_fits import fits_bytes, galaxy_bands, wcs_header
    bands = galaxy_bands(size=128)
    at = app("pages/classify.py")
    at.file_uploader[0].set_value(
        [("cube.fits", fits_bytes(bands), "application/fits")] +
        [(f"m51_{band}.fits", fits_bytes(plane, wcs_header(128)), "application/fits")
         for band, plane in zip("gri", bands)]).run()
    assert not at.exception and not at.error and not at.warning
    assert len(verdicts(at)) == 2  # the cube, and the three band files as one galaxy
    captions = [c.value for c in at.caption if c.value.startswith("FITS")]
    assert len(captions) == 2
    assert any("RA 202.46960°, Dec +47.19520°" in c for c in captions)
    # one band alone is shown in grey: classified, and flagged as unlike the colour training
    at.file_uploader[0].set_value(
        [("r_band.fits", fits_bytes(bands[1], wcs_header(128)), "application/fits")]).run()
    assert not at.exception and not at.error
    assert len(verdicts(at)) == 1
    assert [w.value for w in at.warning if "no colour (one band" in w.value]


@pytest.mark.parametrize("page, setup, button", [
    ("pages/classify.py", lambda at: at.button[0].click().run(), "classify_similar_0"),
    ("pages/browse.py", lambda at: at, "browse_similar"),
])
def test_more_like_this_opens_the_similar_galaxies_of_that_galaxy(page, setup, button):
    at = app(page)
    setup(at)
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    texts = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Similar" in " ".join(t.value for t in at.title), [t.value for t in at.title]
    assert "distance" in texts.lower()


def test_with_local_admin_off_even_a_local_visitor_needs_the_password(visitor, monkeypatch):
    """Behind a forwarder that adds no header (socat, ssh -R), loopback proves nothing."""
    monkeypatch.setenv("GALAXY_LOCAL_ADMIN", "0")
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "pw")
    visitor(LOCAL)
    at = app("pages/train.py")
    assert "GALAXY_LOCAL_ADMIN=0" in at.warning[0].value
    assert not any(b.label == "Start training" for b in at.button)
    at.text_input[0].set_value("pw").run()
    at.button[0].click().run()
    assert any(b.label == "Start training" for b in at.button)


def test_classify_charts_the_learned_answers_and_the_rest_on_request():
    """20 of 37 bars would be answers the model never learned: hidden unless asked for."""
    at = app("pages/classify.py")
    at.multiselect[0].set_value([os.path.splitext(sorted(os.listdir(paths.SAMPLE_IMAGES))[0])[0]])
    at.run()
    assert len(at.get("vega_lite_chart")) == 1

    def charted_rows():  # the bars' order on the y axis names every bar drawn
        spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
        layers = spec.get("layer", [spec])
        return len(layers[0]["encoding"]["y"]["sort"])

    assert charted_rows() == 17
    at.toggle(key="classify_untrained").set_value(True).run()
    assert not at.exception and charted_rows() == 37


def test_the_probability_chart_names_answers_never_learned_on_its_axis():
    """A grey bar alone reads as a prediction: the axis says which answers were never learned."""
    from galaxy_core.schema import ANSWER_COLUMNS
    from pages.common import probabilities_frame, probability_chart
    learned = ANSWER_COLUMNS[:3]
    chart = probability_chart(probabilities_frame(np.full(37, 0.2), learned, None))
    labels = chart.data.set_index("column")["label"]
    assert all(not labels[c].endswith("(not learned)") for c in learned)
    assert all(labels[c].endswith("(not learned)") for c in ANSWER_COLUMNS[3:])


def test_home_shows_the_whole_decision_tree_as_a_static_table():
    """Every question, its answers and when it is asked, derived from the schema; a static table
    (a scrolling grid cut off the last row and the "asked when" column at 1400 px)."""
    from galaxy_core.schema import QUESTIONS
    at = app("pages/home.py")
    assert not at.exception
    tables = at.get("table")
    assert len(tables) == 1
    tree = tables[0].value
    assert list(tree.index) == [f"Q{q.number}" for q in QUESTIONS]
    assert list(tree.columns) == ["asks", "answers", "asked when"]
    assert tree.loc["Q2", "asked when"] == "features or disk (Class1.2)"
    assert tree.loc["Q1", "asked when"] == "always"
    # its limits say what the shipped model saw: cut-outs, then re-framed ones (its fine-tune)
    credits = " ".join(m.value for m in at.markdown)
    assert "like the Kaggle images, then also re-framed: zoomed and shifted)" in credits


@pytest.mark.parametrize("page", ["pages/classify.py", "pages/gradcam.py"])
def test_the_upload_box_states_the_limit_the_page_enforces(page):
    """The box said "Limit 50MB per file" (the server's ceiling) beside a caption of 25 MB."""
    from pages.common import UPLOAD_LIMIT_MB
    from galaxy_core.images import MAX_BYTES
    at = app(page)
    assert UPLOAD_LIMIT_MB * 1024 * 1024 == MAX_BYTES
    assert [u.proto.max_upload_size_mb for u in at.file_uploader] == [UPLOAD_LIMIT_MB]
