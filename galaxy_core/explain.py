"""Class activation maps: which pixels drive one answer's predicted probability.

Five gradient-based methods over one layer's activations A and the gradients G of the answer
with respect to them:

- Grad-CAM (Selvaraju et al. 2017): channel weights = G averaged over space; map = sum_c w_c A_c.
- Grad-CAM++ (Chattopadhyay et al. 2018): weights from positive gradients, pixel-wise
  normalised; better when several regions drive the answer.
- XGrad-CAM (Fu et al. 2020): weights = sum(G * A) / sum(A) per channel.
- HiResCAM (Draelos & Carin 2020): map = sum_c G_c * A_c pixel by pixel; no averaging of G
  over space, so each location's heat comes from its own gradient (Grad-CAM can light up
  places whose activations do not raise the answer).
- LayerCAM (Jiang et al. 2021): map = sum_c relu(G_c) * A_c pixel by pixel, for the earlier,
  finer layers. In a ResNet the stride-2 convolutions after layer2 and layer3 send gradients to
  every second location, so one view's pixel-by-pixel maps look dotted there (``tta`` averages
  the lattice away); Grad-CAM's averaged weights are smooth but may miss the galaxy there.

All maps pass a ReLU (only what raises the answer) and are scaled to [0, 1].

``CamHooks`` owns the forward/backward hooks on one layer: registered on enter, removed in
``finally``, with ``model.training`` and parameter gradients restored, even when the forward
or backward fails. Targets are answer columns resolved through the schema. The shared model
is used under its lock, so concurrent predictions never see the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from . import augment
from .checkpoint import LoadedModel
from .images import normalize, prepare_for_model
from .schema import ANSWER_COLUMNS, COLUMN_INDEX

METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
                "hirescam": "HiResCAM", "layercam": "LayerCAM"}
METHODS = tuple(METHOD_NAMES)
LAYERS = ("layer4", "layer3", "layer2", "layer1")  # default: the last residual block


class CamError(RuntimeError):
    """Grad-CAM cannot run as asked (bad layer, no autograd, ...)."""


@dataclass
class CamResult:
    heatmap: np.ndarray  # (S, S) float32 in [0, 1], at the model's input size
    answer_column: str
    probability: float  # the model's predicted value of that answer
    method: str
    layer: str
    preds: np.ndarray  # (37,) all predicted probabilities of this image
    views: int = 1  # 8: averaged over the flips and right-angle rotations


class CamHooks:
    """Context manager capturing one layer's activations and gradients."""

    def __init__(self, net: torch.nn.Module, layer_name: str):
        modules = dict(net.backbone.named_modules())
        if layer_name not in modules or layer_name == "":
            raise CamError(f"unknown layer {layer_name!r}; choose one of {', '.join(LAYERS)}")
        self.net, self.layer = net, modules[layer_name]
        self.activations = self.gradients = None
        self._handles = []

    def __enter__(self):
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            raise CamError("Grad-CAM needs autograd: call it outside torch.no_grad() and "
                           "torch.inference_mode()")
        self._was_training = self.net.training
        self._handles = [self.layer.register_forward_hook(self._save_activation)]
        self.net.eval()
        return self

    def _save_activation(self, module, inputs, output):
        self.activations = output
        output.register_hook(self._save_gradient)

    def _save_gradient(self, grad):
        self.gradients = grad

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.net.train(self._was_training)
        for p in self.net.parameters():
            p.grad = None
        self.activations = self.gradients = None
        return False  # never swallow exceptions


def cam_map(activations: torch.Tensor, gradients: torch.Tensor, method: str) -> torch.Tensor:
    """(1,C,h,w) activations and gradients -> (1,1,h,w) map, before the ReLU (module doc)."""
    if method == "hirescam":
        return (gradients * activations).sum(dim=1, keepdim=True)
    if method == "layercam":
        return (F.relu(gradients) * activations).sum(dim=1, keepdim=True)
    if method == "gradcam":
        weights = gradients.mean(dim=(2, 3))
    elif method == "xgradcam":
        weights = (gradients * activations).sum(dim=(2, 3)) / (
            activations.sum(dim=(2, 3)) + 1e-7)
    else:  # gradcam++
        grads2 = gradients.pow(2)
        grads3 = grads2 * gradients
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        alpha = grads2 / (2 * grads2 + sum_activations * grads3 + 1e-7)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * F.relu(gradients)).sum(dim=(2, 3))
    return (weights[:, :, None, None] * activations).sum(dim=1, keepdim=True)


def compute_cam(loaded: LoadedModel, image_uint8: torch.Tensor, answer_column: str | None = None,
                method: str = "gradcam", layer: str = "layer4", tta: bool = False) -> CamResult:
    """Heatmap for one preprocessed image, uint8 (3,S,S). Default target: the top answer.

    ``tta``: as the Classify page predicts by default, the image is seen in its 8 flips and
    right-angle rotations; each view's map is turned back and the maps averaged, and the
    probability is the views' mean. A galaxy has no orientation, so what drives an answer should
    not depend on it; the average also fills in the dotted lattice of the pixel-wise methods."""
    if method not in METHODS:
        raise CamError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if answer_column is not None and answer_column not in COLUMN_INDEX:
        raise CamError(f"unknown answer {answer_column!r}; use a Kaggle column such as Class1.1")
    x = normalize(image_uint8.unsqueeze(0).to(loaded.device), loaded.preprocess)
    if tta:
        x = torch.cat(list(augment.dihedral_views(x)))  # (8,3,S,S), one batch
    # the input needs a gradient so the graph reaches the layer even with a frozen backbone
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with loaded.lock, CamHooks(loaded.net, layer) as hooks:
        output = loaded.net(x)  # (V, 37)
        preds = output.detach().clamp(0, 1).mean(dim=0)
        if answer_column is None:
            trained = [COLUMN_INDEX[c] for c in loaded.trained_columns]
            answer_column = ANSWER_COLUMNS[trained[int(torch.argmax(preds[trained]))]]
        index = COLUMN_INDEX[answer_column]
        output[:, index].sum().backward()  # views are independent in eval mode: one pass
        activations, gradients = hooks.activations.detach(), hooks.gradients.detach()
        cams = F.relu(cam_map(activations, gradients, method))
        size = loaded.preprocess.image_size
        cams = F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False)
        cam = (augment.undo_dihedral_views(cams) if tta else cams).mean(dim=0)[0]
    peak = float(cam.max())
    heatmap = (cam / peak if peak > 0 else torch.zeros_like(cam)).cpu().numpy().astype(np.float32)
    return CamResult(heatmap=heatmap, answer_column=answer_column,
                     probability=float(preds[index]), method=method, layer=layer,
                     preds=preds.cpu().numpy(), views=len(x))


def explain_image(loaded: LoadedModel, source, answer_column=None, method="gradcam",
                  layer="layer4", name=None, tta: bool = False) -> CamResult:
    """A class activation map (``method``) of an image file or bytes."""
    return compute_cam(loaded, prepare_for_model(source, loaded.preprocess, name),
                       answer_column, method, layer, tta)


def _colorize(heatmap: np.ndarray, width: int, height: int, colormap: str) -> np.ndarray:
    """[0,1] heatmap -> colour-mapped float (height, width, 3) in 0..255."""
    image = Image.fromarray((heatmap * 255).astype(np.uint8))
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR),
                         dtype=np.float32) / 255.0
    return colormaps[colormap](resized)[..., :3] * 255.0


def heatmap_image(heatmap: np.ndarray, size: int, colormap: str = "jet") -> np.ndarray:
    """The heatmap alone as an RGB uint8 (size, size, 3) picture."""
    return _colorize(heatmap, size, size, colormap).astype(np.uint8)


def overlay(image_rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45,
            colormap: str = "jet") -> np.ndarray:
    """Blend a [0,1] heatmap (resized to the image) over an RGB uint8 image."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    height, width = image_rgb.shape[:2]
    colored = _colorize(heatmap, width, height, colormap)
    blended = (1 - opacity) * image_rgb.astype(np.float32) + opacity * colored
    return blended.clip(0, 255).astype(np.uint8)
