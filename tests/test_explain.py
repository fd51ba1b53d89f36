import numpy as np
import pytest
import torch

from galaxy_core.explain import (DEFAULT_LAYER, DEFAULT_METHOD, LAYERS, METHODS, CamError,
                                 ExplainedImage, cam_map, colorbar_image, compute_cam,
                                 default_answer, overlay, what_red_means)
from galaxy_core.faithfulness import read_report
from galaxy_core.model import DecisionTreeHead, GalaxyNet
from galaxy_core.schema import ANSWER_COLUMNS, COLUMN_INDEX
from galaxy_core.verdict import top_answer, walk_tree
from tests.conftest import galaxy_image, make_loaded

SHIPPED_LEARNED = tuple(c for c in ANSWER_COLUMNS if c.split(".")[0] in
                        ("Class1", "Class2", "Class6", "Class7", "Class8"))


def tree_preds(logits: dict) -> np.ndarray:
    """(37,) probabilities obeying the tree, favouring the given answers by their logits."""
    scores = torch.zeros(1, len(ANSWER_COLUMNS))
    for column, value in logits.items():
        scores[0, COLUMN_INDEX[column]] = value
    return DecisionTreeHead()(scores)[0].numpy()


def image_tensor(size=64):
    return torch.from_numpy(np.array(galaxy_image(1, size=size))).permute(2, 0, 1).contiguous()


def hook_count(net):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in net.modules())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_heatmap_shape_range_and_no_leftovers(method, layer):
    loaded = make_loaded(head="tree", image_size=64)
    result = compute_cam(loaded, image_tensor(), "Class1.1", method, layer)
    assert result.heatmap.shape == (64, 64)
    assert result.heatmap.min() >= 0 and result.heatmap.max() <= 1
    assert 0 <= result.probability <= 1
    assert result.preds.shape == (37,)
    assert hook_count(loaded.net) == 0
    assert all(p.grad is None for p in loaded.net.parameters())
    assert not loaded.net.training


def test_each_method_computes_its_published_formula():
    # two channels on a 2x2 map; channel 0 carries a gradient that changes sign across space
    a = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]]])
    g = torch.tensor([[[[0.4, -0.2], [0.1, 0.3]], [[0.2, 0.2], [0.2, 0.2]]]])
    mean_g = g.mean(dim=(2, 3))  # Grad-CAM: [0.15, 0.2]
    torch.testing.assert_close(cam_map(a, g, "gradcam"),
                               mean_g[0, 0] * a[:, :1] + mean_g[0, 1] * a[:, 1:])
    xw = (g * a).sum(dim=(2, 3)) / a.sum(dim=(2, 3))  # XGrad-CAM
    torch.testing.assert_close(cam_map(a, g, "xgradcam"),
                               xw[0, 0] * a[:, :1] + xw[0, 1] * a[:, 1:], atol=1e-6, rtol=1e-5)
    # HiResCAM keeps the negative gradient where it is; LayerCAM drops it
    torch.testing.assert_close(cam_map(a, g, "hirescam"), (g * a).sum(dim=1, keepdim=True))
    layer = cam_map(a, g, "layercam")
    assert layer[0, 0, 0, 1] == pytest.approx(0.5 * 0.2)  # -0.2 * 2.0 is not counted
    assert cam_map(a, g, "hirescam")[0, 0, 0, 1] == pytest.approx(-0.4 + 0.1)
    # Grad-CAM++: alpha = g^2 / (2 g^2 + sum(A) g^3) per pixel, weights = sum(alpha relu(g))
    alpha = g ** 2 / (2 * g ** 2 + a.sum(dim=(2, 3), keepdim=True) * g ** 3)
    plus = (alpha * g.clamp(min=0)).sum(dim=(2, 3))
    torch.testing.assert_close(cam_map(a, g, "gradcam++"),
                               plus[0, 0] * a[:, :1] + plus[0, 1] * a[:, 1:])
    # with a positive gradient constant over space, the other four coincide
    flat = torch.full_like(a, 0.3)
    for method in ("xgradcam", "hirescam", "layercam"):
        torch.testing.assert_close(cam_map(a, flat, method), cam_map(a, flat, "gradcam"))


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_the_view_averaged_map_turns_with_the_galaxy(method):
    # averaged over the 8 flips/rotations, the map of a turned or mirrored image is the turned or
    # mirrored map: every view's map was put back in the image's own frame before averaging
    loaded = make_loaded(head="tree", image_size=64)
    image = image_tensor()
    plain = compute_cam(loaded, image, "Class1.2", method, "layer3", tta=True)
    assert plain.views == 8
    turned = compute_cam(loaded, torch.rot90(image, 1, dims=(1, 2)), "Class1.2", method,
                         "layer3", tta=True)
    mirrored = compute_cam(loaded, torch.flip(image, dims=(2,)), "Class1.2", method, "layer3",
                           tta=True)
    np.testing.assert_allclose(turned.heatmap, np.rot90(plain.heatmap, 1), atol=1e-5)
    np.testing.assert_allclose(mirrored.heatmap, np.flip(plain.heatmap, 1), atol=1e-5)
    assert turned.probability == pytest.approx(plain.probability, abs=1e-6)
    # the probability is the mean of the 8 views' (clamped) outputs, as Classify reports it
    from galaxy_core.predict import predict_tensor
    expected = predict_tensor(loaded, image.unsqueeze(0), tta=True)[0]
    np.testing.assert_allclose(plain.preds, expected, atol=1e-5)
    assert compute_cam(loaded, image, "Class1.2", method, "layer3").views == 1
    assert hook_count(loaded.net) == 0


def test_default_target_is_the_answer_the_verdict_takes_first():
    loaded = make_loaded(head="tree", trained=SHIPPED_LEARNED)
    result = compute_cam(loaded, image_tensor(32))
    assert result.answer_column == walk_tree(result.preds, SHIPPED_LEARNED).steps[0].answer.column
    # not the top probability of any question: Q6 "nothing odd" often is, Q1's answer is shown
    preds = tree_preds({"Class1.2": 1.0, "Class2.2": 1.0, "Class6.2": 4.0})
    assert top_answer(preds, SHIPPED_LEARNED) == "Class6.2"
    assert default_answer(preds, SHIPPED_LEARNED) == "Class1.2"
    # a model that learned no question on the verdict's path falls back to its top answer
    assert default_answer(preds, ("Class8.1", "Class8.2")) in ("Class8.1", "Class8.2")


def test_the_defaults_are_what_the_faithfulness_report_favours():
    report = read_report()
    assert report is not None, "assets/models/faithfulness.json is missing"
    favoured = report["favoured"]
    assert (DEFAULT_METHOD, DEFAULT_LAYER) == (favoured["method"], favoured["layer"])
    assert DEFAULT_LAYER != "layer4"  # 5x5 at 160 px: much the same map for every galaxy


def test_one_forward_serves_every_answer_method_and_layer(monkeypatch):
    loaded = make_loaded(head="tree", image_size=64)
    forwards = []
    original = GalaxyNet.forward
    monkeypatch.setattr(GalaxyNet, "forward", lambda self, x: forwards.append(len(x)) or
                        original(self, x))
    explained = ExplainedImage(loaded, image_tensor(), tta=True)
    assert forwards == [8] and explained.backward_passes == 0
    assert hook_count(loaded.net) == 0  # nothing stays registered while the image is kept
    first = explained.heatmap("Class1.1", "gradcam", "layer4")
    assert explained.backward_passes == 1
    explained.heatmap("Class1.1", "layercam", "layer4")  # new method: no pass at all
    assert explained.backward_passes == 1
    explained.heatmap("Class1.1", "gradcam", "layer2")  # deeper layer: one backward
    explained.heatmap("Class1.1", "hirescam", "layer3")  # passed on the way: kept
    assert explained.backward_passes == 2
    explained.heatmap("Class1.2", "layercam", "layer1")  # new answer: one backward
    for layer in LAYERS:
        explained.heatmap("Class1.2", "gradcam++", layer)
    assert explained.backward_passes == 3
    assert explained.heatmap("Class1.1", "gradcam", "layer4") is first  # kept, not recomputed
    assert forwards == [8]
    assert all(p.grad is None for p in loaded.net.parameters())
    # the kept pass gives the same maps as a fresh one
    for method, layer in (("layercam", "layer3"), ("gradcam", "layer4")):
        fresh = compute_cam(loaded, image_tensor(), "Class1.1", method, layer, tta=True)
        np.testing.assert_allclose(explained.heatmap("Class1.1", method, layer), fresh.heatmap,
                                   atol=1e-5)
    assert hook_count(loaded.net) == 0


# every path through the tree the shipped model's learned questions (1, 2, 6, 7, 8) allow:
# the answers to favour, and the questions the verdict then walks
PATHS = [
    ({"Class1.1": 3, "Class7.2": 3, "Class6.1": 3, "Class8.4": 3}, [1, 7, 6, 8]),
    ({"Class1.1": 3, "Class7.3": 3, "Class6.2": 3}, [1, 7, 6]),
    ({"Class1.2": 3, "Class2.1": 3, "Class6.1": 3, "Class8.6": 3}, [1, 2, 6, 8]),
    ({"Class1.2": 3, "Class2.2": 3, "Class6.2": 3}, [1, 2, 6]),
    ({"Class1.3": 3}, [1]),
]


def test_why_this_verdict_gives_one_map_per_walked_question_on_every_path():
    loaded = make_loaded(head="tree", trained=SHIPPED_LEARNED)
    explained = ExplainedImage(loaded, image_tensor(32), tta=False)
    for favoured, questions in PATHS:
        explained.preds = tree_preds(favoured)  # as if the model had seen such a galaxy
        row = explained.verdict_maps("layercam", "layer3")
        assert [step.question.number for step, _ in row] == questions, favoured
        for step, heatmap in row:
            assert step.answer.column in favoured
            assert heatmap is explained.heatmap(step.answer.column, "layercam", "layer3")
            assert heatmap.shape == (32, 32)


def test_colour_bar_and_what_red_means():
    bar = colorbar_image(100, 10)
    assert bar.shape == (10, 100, 3) and bar.dtype == np.uint8
    assert bar[0, 0, 2] > bar[0, 0, 0] and bar[0, -1, 0] > bar[0, -1, 2]  # blue -> red
    assert "*features or disk*" in what_red_means("Class1.2")
    assert what_red_means("Class1.2").startswith("Red:")


def test_failure_leaves_no_hooks_and_restores_training_mode():
    loaded = make_loaded()
    loaded.net.train()
    with pytest.raises(RuntimeError):
        compute_cam(loaded, torch.zeros(5, 8, 8, dtype=torch.uint8))  # wrong channel count
    assert hook_count(loaded.net) == 0
    assert loaded.net.training
    assert not loaded.lock.locked()


def test_clear_errors_for_bad_requests():
    loaded = make_loaded()
    with pytest.raises(CamError, match="unknown layer"):
        compute_cam(loaded, image_tensor(32), layer="layer9")
    with pytest.raises(CamError, match="unknown answer"):
        compute_cam(loaded, image_tensor(32), answer_column="Class12.1")
    with pytest.raises(CamError, match="unknown method"):
        compute_cam(loaded, image_tensor(32), method="magic")
    with torch.inference_mode(), pytest.raises(CamError, match="autograd"):
        compute_cam(loaded, image_tensor(32))
    assert hook_count(loaded.net) == 0


def test_frozen_backbone_still_explains():
    loaded = make_loaded()
    for p in loaded.net.backbone.parameters():
        p.requires_grad_(False)
    assert compute_cam(loaded, image_tensor(32), "Class1.2").heatmap.shape == (32, 32)


def test_overlay_blends_at_image_size():
    rgb = np.zeros((50, 70, 3), np.uint8)
    out = overlay(rgb, np.ones((8, 8), np.float32), opacity=0.5)
    assert out.shape == (50, 70, 3) and out.max() > 0
    with pytest.raises(ValueError, match="opacity"):
        overlay(rgb, np.ones((8, 8)), opacity=2)
