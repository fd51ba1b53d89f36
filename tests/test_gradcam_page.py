"""The Grad-CAM page through AppTest, on the shipped model and the first sample galaxy: the
defaults that teach, the verdict row, the legend and scores, and that an opacity step only
re-blends while a new answer costs one backward pass and no forward."""

import torch

import pages.common
from galaxy_core import faithfulness, paths
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.explain import DEFAULT_LAYER, what_red_means
from galaxy_core.model import GalaxyNet
from galaxy_core.predict import predict_image
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
    assert any(s.value == "Why this verdict?" for s in at.subheader)
    # the model sees, heatmap, overlay, the colour bar, then one map per question walked
    assert len(at.get("image")) == 4 + len(verdict.steps)


def test_opacity_only_reblends_and_an_answer_costs_one_backward(monkeypatch):
    pages.common._explained.clear()
    pages.common._map_scores.clear()
    forwards, backwards, scored = [], [], []
    forward, grad, curves = GalaxyNet.forward, torch.autograd.grad, faithfulness.curves

    def counted_forward(self, x):
        if isinstance(x, torch.Tensor):  # not torch.fx tracing the folded copy
            forwards.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(GalaxyNet, "forward", counted_forward)
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: backwards.append(1) or grad(*a, **k))
    monkeypatch.setattr(faithfulness, "curves", lambda *a, **k: scored.append(1) or curves(*a, **k))
    verdict = first_sample_verdict()
    forwards.clear()
    at = app("pages/gradcam.py")
    assert not at.exception, at.exception
    assert forwards == [8]  # one pass over the 8 views
    seen = (len(forwards), len(backwards), len(scored))
    widget(at.slider, "Heatmap opacity").set_value(0.7).run()
    assert not at.exception
    assert (len(forwards), len(backwards), len(scored)) == seen  # nothing recomputed
    walked = {s.answer.column for s in verdict.steps}
    other = next(c for c in ("Class1.3", "Class7.3", "Class8.7") if c not in walked)
    widget(at.selectbox, "Answer to explain").set_value(other).run()
    assert not at.exception
    assert len(forwards) == seen[0] and len(backwards) == seen[1] + 1
    assert any(m.value == what_red_means(other) for m in at.markdown)
    # a new method reuses that answer's gradients: no pass at all, only its scores
    at.radio[0].set_value("layercam").run()
    assert len(forwards) == seen[0] and len(backwards) == seen[1] + 1
