"""Every page through Streamlit's AppTest, on the shipped model and sample galaxies."""

import io
import os

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from galaxy_core import paths
from galaxy_core.checkpoint import load_checkpoint, read_checkpoint
from tests.conftest import galaxy_image

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")
PAGES = ["pages/home.py", "pages/classify.py", "pages/gradcam.py", "pages/browse.py",
         "pages/model_card.py", "pages/train.py"]


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    """Training page runs and the active-model file go to a temporary folder."""
    monkeypatch.setattr(paths, "RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("GALAXY_ADMIN_PASSWORD", raising=False)


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


def test_sidebar_shows_the_active_model_and_what_it_did_not_learn():
    at = app()
    captions = " ".join(c.value for c in at.sidebar.caption)
    # the shipped model was trained on all 4000 galaxies: its accuracy is its recipe's, held out
    assert "held-out RMSE" in captions and "Not learned" in captions
    assert at.sidebar.selectbox[0].value == paths.DEFAULT_MODEL


def test_model_card_reports_the_recipes_heldout_accuracy_for_the_shipped_model():
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.evaluate import mean_over_splits
    splits = load_checkpoint(paths.DEFAULT_MODEL).meta["recipe_validation"]["splits"]
    at = app("pages/model_card.py")
    assert not at.exception
    metric = at.metric[0]
    assert metric.label.startswith(f"Held-out RMSE (recipe, {len(splits)} splits)")
    assert metric.value == f"{mean_over_splits(splits)['model']['rmse']:.4f}"
    # the app averages 8 views by default, so that score is shown beside the one-view one
    assert at.metric[1].label == "Averaged over 8 views"
    assert at.metric[1].value == f"{mean_over_splits(splits)['model_tta']['rmse']:.4f}"
    table = [d.value for d in at.dataframe if "held-out RMSE" in d.value.columns][0]
    for column in ("held-out RMSE", "held-out RMSE, 8 views", "mean baseline"):
        assert table[column].notna().sum() == 5  # Q1, Q2, Q6, Q7, Q8 have targets
    assert (table["held-out RMSE, 8 views"] < table["mean baseline"]).sum() == 5


def test_model_card_shows_agreement_with_the_volunteers_majority(tmp_path):
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
        assert at.toggle[0].value is tta
        shown = [d.value for d in at.dataframe if len(d.value) == 37][0]["probability"]
        np.testing.assert_allclose(shown, expected[tta], atol=6e-5)  # shown to 4 decimals
        at.toggle[0].set_value(False).run()


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
    errors = " ".join(e.value for e in at.error)
    assert "empty.jpg" in errors and "junk.png" in errors
    assert len(verdicts(at)) == 6  # 2 odd-but-valid uploads + 4 samples


def _jpeg(image):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_gradcam_page_produces_an_overlay_for_every_method():
    at = app("pages/gradcam.py")
    assert len(at.get("image")) == 3  # what the model sees, heatmap, overlay
    from galaxy_core.explain import METHOD_NAMES
    assert at.radio[0].options == list(METHOD_NAMES.values())
    for method, name in METHOD_NAMES.items():
        at.radio[0].set_value(method).run()
        assert not at.exception
        assert any(m.value.startswith(f"**{name}** of") for m in at.markdown), name
        assert at.get("download_button")
    # averaged over the 8 views by default, as Classify predicts; one view when switched off
    assert any("averaged over 8 views" in m.value for m in at.markdown)
    at.toggle[0].set_value(False).run()
    assert not at.exception
    assert not any("averaged over" in m.value for m in at.markdown)
    assert any(m.value.startswith("**LayerCAM** of") for m in at.markdown)
    # for teaching: all five methods side by side
    at.toggle[1].set_value(True).run()
    assert not at.exception and not at.error
    assert len(at.get("image")) == 3 + len(METHOD_NAMES)


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
    # the shipped model saw every sample galaxy in training, and the page says so
    assert any("fits its training data" in c.value for c in at.caption)


def test_browser_reports_a_missing_folder():
    at = app("pages/browse.py")
    next(t for t in at.text_input if t.label == "Labels CSV").set_value("/nowhere/labels.csv").run()
    assert not at.exception
    assert "not found" in at.error[0].value


def test_training_is_locked_on_a_public_server_without_password():
    at = app("pages/train.py")
    assert "locked" in at.warning[0].value
    assert not at.get("form") or not any(b.label == "Start training" for b in at.button)


def test_password_unlocks_and_a_tiny_run_completes(monkeypatch):
    monkeypatch.setenv("GALAXY_ADMIN_PASSWORD", "s3cret")
    at = app("pages/train.py")
    at.text_input[0].set_value("wrong").run()
    at.button[0].click().run()
    assert "wrong password" in at.warning[0].value
    at.text_input[0].set_value("s3cret").run()
    at.button[0].click().run()
    assert not at.warning
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_image_size").set_value(32)
    at.number_input(key="train_batch_size").set_value(16)
    at.selectbox(key="train_optimizer").set_value("adamw")
    at.number_input(key="train_weight_decay").set_value(0.05)
    at.selectbox(key="train_precision").set_value("bfloat16")
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
    next(b for b in at.button if b.label.startswith("Make it")).click().run()
    from galaxy_core import registry
    assert registry.active_model_path() == jobs.state.result.best_path
    fresh = app()  # a new visitor gets the new active model
    assert fresh.sidebar.selectbox[0].value == jobs.state.result.best_path
    # its card scores it on its own validation galaxies, agreement with the volunteers included
    fresh.switch_page("pages/model_card.py").run()
    assert not fresh.exception and not fresh.error
    table = [d.value for d in fresh.dataframe if "validation RMSE" in d.value.columns][0]
    q1 = table[table["question"] == "Q1 shape"].iloc[0]
    counted = load_checkpoint(jobs.state.result.best_path).meta["metrics"]["best"]["val"][
        "majority_agreement"]["Q1"]
    assert q1["top answer = volunteers' majority"] == pytest.approx(100 * counted["agreement"])


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


def test_loopback_server_is_unlocked_without_password():
    from streamlit import config
    previous = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    try:
        at = app("pages/train.py")
    finally:
        config.set_option("server.address", previous)
    assert not at.warning
    assert any(b.label == "Start training" for b in at.button)


def test_a_broken_checkpoint_in_runs_is_reported_and_the_app_keeps_working(tmp_path):
    broken = tmp_path / "runs" / "bad-run"
    broken.mkdir(parents=True)
    (broken / "best.pt").write_bytes(b"this is not a checkpoint")
    at = app("pages/classify.py")
    at.sidebar.selectbox[0].set_value(str(broken / "best.pt")).run()
    assert not at.exception
    assert any("not a readable PyTorch checkpoint" in e.value for e in at.error)
    at.sidebar.selectbox[0].set_value(paths.DEFAULT_MODEL).run()
    at.button[0].click().run()
    assert len(verdicts(at)) == 4
    assert (broken / "best.pt").read_bytes() == b"this is not a checkpoint"


def test_training_form_takes_the_selected_models_recipe():
    from streamlit import config
    previous = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    try:
        at = app("pages/train.py")
        assert at.number_input(key="train_epochs").value == 10
        next(b for b in at.button if b.label == "Use the selected model's recipe").click().run()
    finally:
        config.set_option("server.address", previous)
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


def test_browser_pages_through_a_full_kaggle_sized_table(tmp_path):
    """61,578 rows (the Kaggle training set's size): only one page of thumbnails is read."""
    import pandas as pd
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"GalaxyID": np.arange(100000, 100000 + 61578),
                          "Class1.1": rng.random(61578).round(4)})
    labels = tmp_path / "big.csv"
    frame.to_csv(labels, index=False)
    images = tmp_path / "images"
    images.mkdir()
    for galaxy_id in frame["GalaxyID"][:3]:
        galaxy_image(int(galaxy_id)).save(images / f"{galaxy_id}.jpg")
    at = app("pages/browse.py")
    next(t for t in at.text_input if t.label == "Labels CSV").set_value(str(labels)).run()
    next(t for t in at.text_input if t.label == "Image folder").set_value(str(images)).run()
    assert not at.exception
    page_label = next(n for n in at.number_input if n.label.startswith("Page")).label
    assert "of 2566;" in page_label and "61578 of 61578" in page_label
    # one page of 24 thumbnails: the 3 galaxies with an image shown, the other 21 named as
    # unreadable, then the first galaxy again, larger, for inspection; nothing of page 2
    # (AppTest lists the 6-column grid column by column, hence sorted)
    ids = [str(g) for g in frame["GalaxyID"][:24]]
    shown = [caption for image in at.get("image") for caption in image.captions]
    assert sorted(shown) == sorted(ids[:3] + ids[:1])
    assert sorted(c.value for c in at.caption if c.value.endswith("no readable image")) == \
        [f"{g}: no readable image" for g in ids[3:]]
