import numpy as np
import pytest
import torch

from galaxy_core.explain import METHODS, CamError, cam_map, compute_cam, overlay
from tests.conftest import galaxy_image, make_loaded


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


def test_default_target_is_the_top_trained_answer():
    from galaxy_core.predict import predict_tensor
    from galaxy_core.schema import ANSWER_COLUMNS
    image = image_tensor(32)
    preds = predict_tensor(make_loaded(head="tree"), image.unsqueeze(0))[0]  # (37,)
    order = [ANSWER_COLUMNS[i] for i in np.argsort(-preds, kind="stable")]
    assert preds.max() > np.sort(preds)[-2] > np.sort(preds)[-3]  # no tie decides the answer
    # every answer learned: the top one
    assert compute_cam(make_loaded(head="tree"), image).answer_column == order[0]
    # the top answer not learned: the best of the learned ones, wherever it sits among them
    trained = sorted(order[1:4] + order[-3:], key=ANSWER_COLUMNS.index)
    assert trained[0] != order[1]
    result = compute_cam(make_loaded(head="tree", trained=trained), image)
    assert result.answer_column == order[1]
    assert result.probability == pytest.approx(float(np.sort(preds)[-2]), abs=1e-6)


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
