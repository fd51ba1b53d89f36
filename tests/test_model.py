import pytest
import torch

from galaxy_core.config import ModelConfig
from galaxy_core.model import (DecisionTreeHead, PretrainedWeightsUnavailable, build_model,
                               get_resnet18)
from galaxy_core.schema import COLUMN_INDEX, QUESTIONS, question_slice


def test_seed_architecture_and_output_shape():
    net = get_resnet18()
    head = net.backbone.fc
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert head[0].in_features == 512 and head[3].out_features == 37
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 37)


def test_tree_head_obeys_the_decision_tree():
    out = DecisionTreeHead()(torch.randn(6, 37) * 3)
    assert (out >= 0).all() and (out <= 1).all()
    for q in QUESTIONS:
        sums = out[:, question_slice(q)].sum(1)
        expected = torch.ones(6) if q.parent is None else out[:, COLUMN_INDEX[q.parent]]
        torch.testing.assert_close(sums, expected)


def test_plain_predict_is_clipped():
    net = build_model(ModelConfig(head="plain")).eval()
    with torch.no_grad():
        net.backbone.fc[3].bias.fill_(5.0)
        preds = net.predict(torch.randn(1, 3, 32, 32))
    assert preds.max() <= 1.0


def test_freeze_backbone_trains_only_the_head():
    net = get_resnet18(freeze_backbone=True)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("backbone.fc.") for n in trainable)


def test_pretrained_without_cached_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable, match="torch cache"):
        get_resnet18(pretrained=True)


def test_pretrained_uses_cached_weights(tmp_path, monkeypatch):
    from torchvision.models import resnet18
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = resnet18()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference.state_dict(), folder / "resnet18-f37072fd.pth")
    net = get_resnet18(pretrained=True)
    torch.testing.assert_close(net.backbone.conv1.weight, reference.conv1.weight)


def test_tree_head_needs_37_outputs():
    with pytest.raises(ValueError, match="37"):
        get_resnet18(num_outputs=10, head="tree")
