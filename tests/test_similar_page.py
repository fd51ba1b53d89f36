"""The Similar galaxies page through Streamlit's AppTest: the shipped samples' index built on
first use, neighbours, clicking one, queries handed over by other pages, and who may build an
index. The active model is an untrained 32 px one, so embedding the 40 samples takes a moment."""

import io
import json
import os

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from galaxy_core import paths, similarity
from galaxy_core.access import Visitor
from galaxy_core.datasets import SAMPLES_NAME
from tests.conftest import galaxy_image

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")
PAGE = "pages/similar.py"
LOCAL = Visitor("127.0.0.1", {"host": "localhost:8501"})


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, checkpoint_file):
    """Runs, indexes and the active-model file in a temporary folder; the active model is the
    tiny test checkpoint; no password, extra dataset or trusted proxy; fresh caches."""
    monkeypatch.setattr(paths, "RUNS_DIR", str(tmp_path / "runs"))
    for name in ("GALAXY_ADMIN_PASSWORD", "GALAXY_DATASETS", "GALAXY_TRUSTED_PROXIES",
                 similarity.INDEX_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    os.makedirs(paths.RUNS_DIR)
    with open(os.path.join(paths.RUNS_DIR, "active_model.json"), "w") as handle:
        json.dump({"path": checkpoint_file}, handle)
    from pages.common import password_throttle, _similarity_index
    password_throttle.clear()
    _similarity_index.clear()


@pytest.fixture
def visitor(monkeypatch):
    """Sets who this session's request came from (AppTest has no connection: a stranger)."""
    import pages.common

    def as_(who: Visitor):
        monkeypatch.setattr(pages.common, "current_visitor", lambda: who)
    return as_


@pytest.fixture(autouse=True)
def router_only(monkeypatch):
    """As serve.py does: pages/ belongs to st.navigation, not to legacy auto-pages."""
    from streamlit.runtime.pages_manager import PagesManager
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def extra_dataset(tmp_path, monkeypatch):
    """An unlabelled configured dataset of 6 generated galaxies."""
    images = tmp_path / "extra" / "images"
    images.mkdir(parents=True)
    for i in range(6):
        galaxy_image(i, size=64, elongation=1 + i / 3).save(images / f"{500000 + i}.jpg")
    monkeypatch.setenv("GALAXY_DATASETS", f"Extra={tmp_path / 'extra'}")
    return images


def app(handover=None):
    at = AppTest.from_file(APP, default_timeout=120).run()
    if handover is not None:
        at.session_state["similar_query"] = handover
    return at.switch_page(PAGE).run()


def neighbours(at) -> list[str]:
    return [b.key.removeprefix("similar_pick_") for b in at.button
            if b.key and b.key.startswith("similar_pick_")]


def index_files() -> list[str]:
    folder = similarity.index_dir()
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_samples_index_is_built_on_first_use_and_a_galaxy_shows_its_neighbours():
    at = app()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(index_files()) == 1
    query = at.selectbox(key="similar_galaxy").value
    found = neighbours(at)
    assert len(found) == at.slider(key="similar_k").value == 8
    assert query not in found  # the query itself is left out
    table = at.dataframe[0].value
    assert table["rank"].tolist() == ["query"] + [str(r) for r in range(1, 9)]
    assert table["GalaxyID"].tolist()[1:] == found
    assert list(table["distance"][1:]) == sorted(table["distance"][1:])
    assert "Q1 smooth (Class1.1)" in table.columns  # volunteers' fractions, learned answers
    assert not at.text_input  # nobody types a path here


def test_clicking_a_neighbour_makes_it_the_query():
    at = app()
    clicked = neighbours(at)[2]
    at.button(key=f"similar_pick_{clicked}").click().run()
    assert not at.exception
    assert at.selectbox(key="similar_galaxy").value == clicked
    assert clicked not in neighbours(at) and len(neighbours(at)) == 8


def test_a_dataset_galaxy_handed_over_becomes_the_query():
    at = app({"dataset": SAMPLES_NAME, "galaxy_id": 105497})
    assert not at.exception
    assert at.radio(key="similar_source").value == "A galaxy of this dataset"
    assert at.selectbox(key="similar_galaxy").value == "105497"
    assert "105497" not in neighbours(at) and len(neighbours(at)) == 8
    assert "similar_query" not in at.session_state  # taken once


def test_an_image_handed_over_becomes_the_query():
    buffer = io.BytesIO()
    Image.open(os.path.join(paths.SAMPLE_IMAGES, "105497.jpg")).save(buffer, format="PNG")
    at = app({"image": buffer.getvalue(), "name": "mine.png"})
    assert not at.exception and not at.error
    assert at.radio(key="similar_source").value == "The image handed over"
    found = neighbours(at)
    assert found[0] == "105497"  # the same pixels: that galaxy is nearest
    assert at.dataframe[0].value["distance"].iloc[1] < 1e-3
    assert not at.warning  # a training cut-out


def test_an_image_unlike_the_training_ones_is_searched_and_flagged():
    """A photograph still gets its nearest galaxies, but the page says they may mean little."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(buffer, format="PNG")
    at = app({"image": buffer.getvalue(), "name": "gradient.png"})
    assert not at.exception and not at.error
    assert len(neighbours(at)) == 8
    assert [w.value for w in at.warning if w.value.startswith("Unlike the training images:")]


def test_a_wide_field_upload_is_framed_and_judged_as_classify_does():
    """The samples' index frames its galaxies, so a wide field is zoomed in on before the
    search, as on Classify: the picture is that region and says so, and it is not flagged for
    being wide (Classify does not flag it either)."""
    from tests.test_framing import kaggle_like, png
    at = app({"image": png(kaggle_like(0.0774 / 2.5, seed=1)), "name": "wide.png"})
    assert not at.exception and not at.error
    assert similarity.load_index(os.path.join(similarity.index_dir(),
                                              index_files()[0])).meta["framed"] is True
    captions = [p.caption for element in at.get("image") for p in element.proto.imgs]
    assert any(c.startswith("wide.png: the region the model sees (zoomed in") for c in captions)
    assert not [w for w in at.warning if w.value.startswith("Unlike the training images")]
    assert len(neighbours(at)) == 8


def test_a_samples_index_from_before_framing_is_built_again_framed(checkpoint_file):
    """A server upgraded with its samples' index already built (no framing recorded) would go
    on comparing uploads unframed: the page builds it again, framed, on the next visit."""
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.datasets import SAMPLES_NAME
    embedder = similarity.Embedder(load_checkpoint(checkpoint_file))
    path = similarity.dataset_index_path(SAMPLES_NAME, embedder.identity)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    old, _, _ = similarity.update_index(embedder, paths.SAMPLE_IMAGES, path, framed=False)
    del old.meta["framed"]  # as an index from before 2026-12-02
    similarity.save_index(old, path)
    at = app()
    assert not at.exception and not at.error
    rebuilt = similarity.load_index(path)
    assert rebuilt.meta["framed"] is True and len(rebuilt) == len(old)
    assert len(neighbours(at)) == 8


def test_a_stranger_cannot_build_an_index_for_a_configured_dataset(extra_dataset):
    at = app()
    at.selectbox(key="similar_dataset").set_value("Extra").run()
    assert not at.exception
    assert not [b for b in at.button if b.label in ("Build the index", "Update the index")]
    assert any("for the app's maintainers" in w.value for w in at.warning)
    assert not any(name.startswith("extra-") for name in index_files())
    assert not at.text_input


def test_an_admin_builds_the_index_of_a_configured_dataset(extra_dataset, visitor):
    visitor(LOCAL)
    at = app()
    at.selectbox(key="similar_dataset").set_value("Extra").run()
    next(b for b in at.button if b.label == "Build the index").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(name.startswith("extra-") for name in index_files())
    assert len(neighbours(at)) == 5  # 6 galaxies, the query left out
    assert not at.dataframe  # unlabelled: no volunteer fractions
    assert not at.text_input


def test_an_unreadable_index_is_reported_to_a_stranger_without_its_path():
    at = app()  # builds the samples' index, so its file name is known
    path = os.path.join(similarity.index_dir(), index_files()[0])
    with open(path, "wb") as handle:
        handle.write(b"garbage")
    at = app()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "cannot be read" in message and path not in message and "garbage" not in message
