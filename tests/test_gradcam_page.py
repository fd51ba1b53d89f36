"""The Grad-CAM page through AppTest, on the shipped model and the first sample galaxy: the
defaults that teach, the verdict row, the legend and scores, and that an opacity step only
re-blends while a new answer costs one backward pass and no forward."""

import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import pages.common
from galaxy_core import faithfulness, paths
from galaxy_core.checkpoint import CheckpointError, load_checkpoint
from galaxy_core.explain import DEFAULT_LAYER, what_red_means
from galaxy_core.model import GalaxyNet
from galaxy_core.predict import predict_image
from galaxy_core.schema import COLUMN_INDEX
from galaxy_core.verdict import walk_tree
from tests.test_pages import app, isolated_runs, router_only  # noqa: F401 (fixtures)


def widget(items, label_start):
    return next(w for w in items if w.label.startswith(label_start))


def first_sample_verdict():
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    preds = predict_image(loaded, pages.common.sample_paths()[0], tta=True)
    return walk_tree(preds, loaded.trained_columns)


def test_defaults_legend_scores_and_the_verdict_row():
    verdict = first_sample_verdict()
    at = app("pages/gradcam.py")
    assert not at.exception, at.exception
    answer = widget(at.selectbox, "Answer to explain").value
    assert answer == verdict.steps[0].answer.column  # Q1's answer, not the top of any question
    assert widget(at.selectbox, "Layer").value == DEFAULT_LAYER
    assert any(m.value == what_red_means(answer) for m in at.markdown)
    assert any("scale of the map" in c.value for c in at.caption)
    labels = [m.label for m in at.metric]
    assert any(label.startswith("Deletion AUC") for label in labels)
    assert any(label.startswith("Insertion AUC") for label in labels)
    assert any(m.value.startswith("On this image the map is ") for m in at.markdown)
    assert any(s.value == "Why this verdict?" for s in at.subheader)
    # the model sees, heatmap, overlay, the colour bar, then one map per question walked
    assert len(at.get("image")) == 4 + len(verdict.steps)


def test_opacity_only_reblends_and_an_answer_costs_one_backward(monkeypatch):
    pages.common._explained.clear()
    pages.common._map_scores.clear()
    forwards, backwards, scored = [], [], []
    forward, grad, outputs = GalaxyNet.forward, torch.autograd.grad, faithfulness._outputs

    def counted_forward(self, x):
        if isinstance(x, torch.Tensor):  # not torch.fx tracing the folded copy
            forwards.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(GalaxyNet, "forward", counted_forward)
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: backwards.append(1) or grad(*a, **k))
    monkeypatch.setattr(faithfulness, "_outputs",
                        lambda lo, images: scored.append(len(images)) or outputs(lo, images))
    verdict = first_sample_verdict()
    walked = {s.answer.column for s in verdict.steps}
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    preds = predict_image(loaded, pages.common.sample_paths()[0], tta=True)
    # an answer off the verdict's path, likely enough to be scored
    other = next(c for c in loaded.trained_columns if c not in walked
                 and preds[COLUMN_INDEX[c]] >= faithfulness.MIN_PROBABILITY)
    forwards.clear()
    at = app("pages/gradcam.py")
    assert not at.exception, at.exception
    assert forwards == [8]  # one pass over the 8 views
    own = 2 * (faithfulness.STEPS - 1)  # a map's own scoring images; the centre's are shared
    assert scored == [3 + own, own]  # image, sky, blur and the centre's steps; then the map's
    seen = (len(forwards), len(backwards), len(scored))
    widget(at.slider, "Heatmap opacity").set_value(0.7).run()
    assert not at.exception
    assert (len(forwards), len(backwards), len(scored)) == seen  # nothing recomputed
    widget(at.selectbox, "Answer to explain").set_value(other).run()
    assert not at.exception
    assert len(forwards) == seen[0] and len(backwards) == seen[1] + 1
    assert scored[seen[2]:] == [own]
    assert any(m.value == what_red_means(other) for m in at.markdown)
    # a new method reuses that answer's gradients: no pass at all, only its scores
    at.radio[0].set_value("layercam").run()
    assert len(forwards) == seen[0] and len(backwards) == seen[1] + 1
    assert scored[seen[2]:] == [own, own]


def test_the_server_warm_up_leaves_the_first_render_no_model_work(monkeypatch):
    """serve.py keeps the page's default image computed (pages.common.keep_warm): what it
    computes must be exactly what the page then asks for, or the warm-up is for nothing."""
    pages.common._explained.clear()
    pages.common._map_scores.clear()
    pages.common.warm_up_gradcam()
    work = []
    forward, grad, outputs = GalaxyNet.forward, torch.autograd.grad, faithfulness._outputs
    monkeypatch.setattr(GalaxyNet, "forward",
                        lambda self, x: work.append("forward") or forward(self, x))
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: work.append("backward") or grad(*a, **k))
    monkeypatch.setattr(faithfulness, "_outputs",
                        lambda *a, **k: work.append("scores") or outputs(*a, **k))
    at = app("pages/gradcam.py")
    assert not at.exception, at.exception
    assert work == []
    assert any(m.label.startswith("Deletion AUC") for m in at.metric)


def test_a_failed_warm_up_is_logged_in_one_line_and_tried_again(monkeypatch, caplog):
    class Stop(Exception):
        pass

    def broken():
        raise CheckpointError("the active model's file is not a checkpoint")

    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            raise Stop

    monkeypatch.setattr(pages.common, "warm_up_gradcam", broken)
    monkeypatch.setattr(pages.common.time, "sleep", sleep)
    with pytest.raises(Stop):
        pages.common.keep_warm()
    assert waits == [pages.common.WARM_UP_EVERY_S] * 2  # it went on after the first failure
    warnings = [r for r in caplog.records if r.name == "galaxy_app"]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert "not a checkpoint" in warnings[0].getMessage()


def test_the_warm_up_quiets_streamlits_context_warning_for_itself_only(monkeypatch, caplog):
    """The warm-up thread touches cached functions outside a page's run, and Streamlit warns
    of a missing ScriptRunContext; that warning is dropped for that thread, and only for it."""
    streamlit_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    monkeypatch.setattr(streamlit_log, "propagate", True)  # so caplog sees it
    class Stop(Exception):
        pass

    def warm_up():
        streamlit_log.warning("Thread 'warm-up': missing ScriptRunContext!")
        other = threading.Thread(target=streamlit_log.warning,
                                 args=("Thread 'other': missing ScriptRunContext!",))
        other.start()
        other.join()
        return True

    def sleep(seconds):
        raise Stop

    monkeypatch.setattr(pages.common, "warm_up_gradcam", warm_up)
    monkeypatch.setattr(pages.common.time, "sleep", sleep)
    monkeypatch.setattr(pages.common, "log", logging.getLogger("unused"))
    with caplog.at_level(logging.WARNING), pytest.raises(Stop):
        pages.common.keep_warm()
    messages = [r.getMessage() for r in caplog.records if "ScriptRunContext" in r.getMessage()]
    assert "Thread 'other': missing ScriptRunContext!" in messages  # other threads still warn
    assert "Thread 'warm-up': missing ScriptRunContext!" not in messages
    assert not streamlit_log.filters  # removed when the warm-up ends


def image_captions(at) -> list[str]:
    return [picture.caption for element in at.get("image") for picture in element.proto.imgs]


def test_an_upload_is_framed_as_the_classify_page_frames_it():
    """A wide field (a galaxy far smaller in its frame than any training galaxy): the page
    zooms in on it, as Classify and train.predict do, says so under what the model sees and
    explains that view; with the switch off it explains the image as it is. A photograph
    unlike the training images is flagged above its maps."""
    from tests.test_framing import kaggle_like, png
    at = app("pages/gradcam.py")
    at.file_uploader[0].set_value(("wide.png", png(kaggle_like(0.0774 / 2.5)), "image/png"))
    at.run()
    assert not at.exception, at.exception
    assert widget(at.toggle, "Frame the galaxy automatically").value is True
    seen = image_captions(at)[0]
    assert seen.startswith("what the model sees (zoomed in ") and "small in the frame" in seen
    assert not at.warning  # once framed, it looks like the training cut-outs
    answers = widget(at.selectbox, "Answer to explain")
    framed_label = answers.format_func(answers.value)
    widget(at.toggle, "Frame the galaxy automatically").set_value(False).run()
    assert not at.exception, at.exception
    assert image_captions(at)[0] == "what the model sees"
    answers = widget(at.selectbox, "Answer to explain")
    assert answers.format_func(answers.value) != framed_label  # another view, other numbers
    # as it is, the galaxy is far smaller in its frame than the training galaxies
    assert [w.value for w in at.warning if w.value.startswith("Unlike the training images:")]

    photo = np.zeros((256, 256, 3), np.uint8)
    photo[..., 0] = np.linspace(40, 250, 256)[None, :]  # a bright, colourful gradient
    photo[..., 1] = 180
    at.file_uploader[0].set_value(("photo.png", png(Image.fromarray(photo)), "image/png")).run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("Unlike the training images:") for w in at.warning)


def test_a_refused_upload_is_said_and_no_sample_is_explained_in_its_place():
    """A reviewer uploaded a .txt file: the page said it was not used, then silently explained
    the first sample as if it were the upload."""
    at = app("pages/gradcam.py")
    at.file_uploader[0].set_value(("notes.txt", b"not an image", "text/plain")).run()
    assert not at.exception, at.exception
    assert any("**notes.txt** was not used" in w.value for w in at.warning)
    assert not at.get("image") and not at.get("imgs")
