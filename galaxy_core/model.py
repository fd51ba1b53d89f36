"""The network: torchvision ResNet18 with the seed's head, and the decision-tree output mode.

``get_resnet18`` follows the seed: ResNet18 whose ``fc`` is Linear(512,512) -> ReLU ->
Dropout -> Linear(512,37). With ``head="tree"`` a ``DecisionTreeHead`` turns the 37 raw
scores into answers that obey the Galaxy Zoo tree by construction: per question a softmax
(non-negative, sums to 1) multiplied by the value of the answer the question hangs off.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse
from torchvision.models import ResNet18_Weights, resnet18

from .config import ModelConfig
from .schema import COLUMN_INDEX, NUM_ANSWERS, QUESTIONS, question_slice

log = logging.getLogger(__name__)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not in the local torch cache."""


class DecisionTreeHead(nn.Module):
    """Raw scores (B, 37) -> answer values (B, 37) that satisfy the Kaggle tree weighting."""

    def __init__(self):
        super().__init__()
        self.slices = [question_slice(q) for q in QUESTIONS]
        self.parents = [None if q.parent is None else COLUMN_INDEX[q.parent] for q in QUESTIONS]

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        out = [None] * len(QUESTIONS)
        values = {}
        # schema guarantees parents come before children in column order
        for i, (sl, parent) in enumerate(zip(self.slices, self.parents)):
            probs = torch.softmax(scores[:, sl], dim=1)
            if parent is not None:
                probs = probs * values[parent]
            out[i] = probs
            for j in range(sl.stop - sl.start):
                values[sl.start + j] = probs[:, j:j + 1]
        return torch.cat(out, dim=1)


class GalaxyNet(nn.Module):
    """ResNet18 backbone + seed head + output mode. ``forward`` returns (B, 37)."""

    def __init__(self, config: ModelConfig, num_outputs: int = NUM_ANSWERS):
        super().__init__()
        if config.head == "tree" and num_outputs != NUM_ANSWERS:
            raise ValueError(f"the tree head needs {NUM_ANSWERS} outputs, got {num_outputs}")
        self.config = config
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
            nn.Linear(512, num_outputs),
        )
        self.tree = DecisionTreeHead() if config.head == "tree" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.backbone(x)  # (B, 37)
        return self.tree(scores) if self.tree is not None else scores

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs as probabilities: the tree head's as they are, plain ones clipped to [0,1]."""
        return self(x).clamp_(0.0, 1.0)


def _load_imagenet_weights(net: GalaxyNet) -> None:
    weights = ResNet18_Weights.IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if not os.path.isfile(cached):
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for ResNet18 are not in the torch cache ({cached}) and nothing is "
            f"downloaded at run time. Copy {filename} there from a machine with internet access, "
            f"or train from scratch (pretrained=False)."
        )
    state = torch.load(cached, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, _ = net.backbone.load_state_dict(state, strict=False)
    assert all(k.startswith("fc.") for k in missing), missing
    log.info("loaded ImageNet weights from %s", cached)


def inference_copy(net: GalaxyNet) -> nn.Module:
    """An eval-only copy with each BatchNorm folded into its convolution, in channels-last
    layout: the same outputs (to ~1e-6) for less work. Returns raw outputs (clamp to get
    probabilities); has no named layers, so Grad-CAM keeps using the original."""
    fused = fuse(net.eval(), inplace=False)
    return fused.to(memory_format=torch.channels_last)


def build_model(config: ModelConfig, num_outputs: int = NUM_ANSWERS) -> GalaxyNet:
    net = GalaxyNet(config, num_outputs)
    if config.pretrained:
        _load_imagenet_weights(net)
    if config.freeze_backbone:
        for name, param in net.backbone.named_parameters():
            param.requires_grad = name.startswith("fc.")
    return net


def get_resnet18(num_outputs: int = NUM_ANSWERS, pretrained: bool = False,
                 freeze_backbone: bool = False, head: str = "plain",
                 dropout: float = 0.5) -> GalaxyNet:
    """The seed's constructor, kept by name."""
    return build_model(ModelConfig(head=head, dropout=dropout, pretrained=pretrained,
                                   freeze_backbone=freeze_backbone), num_outputs)
