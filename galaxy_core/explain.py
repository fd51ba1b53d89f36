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

``ExplainedImage`` is one image seen once: a single forward pass over its views (8 with
``tta``) keeps the activations of every layer in ``LAYERS`` with their autograd graph, so a
new answer costs one backward pass from the kept graph (only down to the layer asked for,
``torch.autograd.grad``; parameter gradients are never touched), and a new method or layer
costs no pass at all. Maps and gradients are kept per answer and layer. ``CamHooks`` owns the
forward hooks that capture the activations: registered on enter, removed in ``finally``, with
``model.training`` and parameter gradients restored, even when the forward fails; none is left
on the model while an ``ExplainedImage`` is kept. Targets are answer columns resolved through
the schema; the default is the first answer the verdict takes (``default_answer``). The shared
model and its kept graphs are used under the model's lock, so concurrent predictions never see
the hooks and two sessions never run backward passes at once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from . import augment
from .checkpoint import LoadedModel
from .images import display_crop, normalize, prepare_for_model, prepare_framed
from .schema import ANSWER_BY_COLUMN, ANSWER_COLUMNS, COLUMN_INDEX
from .verdict import Step, top_answer, walk_tree

METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
                "hirescam": "HiResCAM", "layercam": "LayerCAM"}
METHODS = tuple(METHOD_NAMES)
LAYERS = ("layer4", "layer3", "layer2", "layer1")  # from the last residual block to the first
# The defaults a class sees: what the faithfulness measurement of the shipped model favours
# (assets/models/faithfulness.json, "favoured"; tests/test_explain.py checks they agree)
DEFAULT_METHOD = "hirescam"
DEFAULT_LAYER = "layer1"
COLORMAP = "jet"


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


def _check_layers(layer_names) -> tuple[str, ...]:
    for name in layer_names:
        if name not in LAYERS:
            raise CamError(f"unknown layer {name!r}; choose one of {', '.join(LAYERS)}")
    return tuple(layer_names)


def _check_autograd() -> None:
    if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
        raise CamError("Grad-CAM needs autograd: call it outside torch.no_grad() and "
                       "torch.inference_mode()")


class CamHooks:
    """Context manager capturing the activations of the named layers during one forward."""

    def __init__(self, net: torch.nn.Module, layer_names):
        if isinstance(layer_names, str):
            layer_names = (layer_names,)
        modules = dict(net.backbone.named_modules())
        self.net = net
        self.layers = {name: modules[name] for name in _check_layers(layer_names)}
        self.activations: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self):
        _check_autograd()
        self._was_training = self.net.training
        try:
            for name, layer in self.layers.items():
                self._handles.append(layer.register_forward_hook(self._saver(name)))
        except BaseException:
            self._remove()
            raise
        self.net.eval()
        return self

    def _saver(self, name):
        def save(module, inputs, output):
            self.activations[name] = output
        return save

    def _remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __exit__(self, *exc):
        self._remove()
        self.net.train(self._was_training)
        for p in self.net.parameters():
            p.grad = None
        if exc[0] is not None:
            self.activations = {}
        return False  # never swallow exceptions


def cam_map(activations: torch.Tensor, gradients: torch.Tensor, method: str) -> torch.Tensor:
    """(V,C,h,w) activations and gradients -> (V,1,h,w) map, before the ReLU (module doc)."""
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


def default_answer(preds, trained_columns=ANSWER_COLUMNS) -> str:
    """The answer a class should see first: the one the verdict takes at its first question
    (Q1 for any model that learned it), else the top learned answer."""
    verdict = walk_tree(preds, trained_columns)
    if verdict.steps:
        return verdict.steps[0].answer.column
    return top_answer(preds, trained_columns)


class ExplainedImage:
    """One preprocessed image, uint8 (3,S,S), seen once by the model; maps on demand.

    ``tta``: as the Classify page predicts by default, the image is seen in its 8 flips and
    right-angle rotations (all of the region shown: a prediction's wider views of a galaxy
    large in its frame, ``framing.Frame.wider``, are not mapped); each view's map is turned back
    and the maps averaged, and the probability is the views' mean. A galaxy has no orientation,
    so what drives an answer should not depend on it; the average also fills in the dotted
    lattice of the pixel-wise methods.
    ``display``: the region the model sees at display size, for overlays (optional).
    ``frame``: the ``framing.Frame`` automatic framing chose for the image (None: framing off)."""

    def __init__(self, loaded: LoadedModel, image_uint8: torch.Tensor, tta: bool = False,
                 layers=LAYERS, display: np.ndarray | None = None, frame=None):
        _check_autograd()
        self.loaded, self.tta, self.display, self.frame = loaded, tta, display, frame
        self.layers = _check_layers(layers)
        self.image = image_uint8  # (3,S,S) uint8, what the model sees
        x = normalize(image_uint8.unsqueeze(0).to(loaded.device), loaded.preprocess)
        if tta:
            x = torch.cat(list(augment.dihedral_views(x)))  # (8,3,S,S), one batch
        # the input needs a gradient so the graph reaches the layers even with a frozen backbone
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        with loaded.lock, CamHooks(loaded.net, self.layers) as hooks:
            self._output = loaded.net(x)  # (V, 37), its graph kept for the backward passes
            self._activations = dict(hooks.activations)
        self.views = len(x)
        self.preds = self._output.detach().clamp(0, 1).mean(dim=0).cpu().numpy()  # (37,)
        self._gradients: dict[tuple[str, str], torch.Tensor] = {}
        self._maps: dict[tuple[str, str, str], np.ndarray] = {}
        self.backward_passes = 0  # how many answers needed a backward pass (for tests, bench)
        # what other modules compute once per image and keep with it (faithfulness's shared
        # forward passes), by a key they choose
        self.kept: dict = {}

    def default_answer(self) -> str:
        return default_answer(self.preds, self.loaded.trained_columns)

    def probability(self, answer_column: str) -> float:
        return float(self.preds[COLUMN_INDEX[answer_column]])

    def _gradient(self, answer_column: str, layer: str) -> torch.Tensor:
        """(V,C,h,w) gradient of the answer (summed over the views) at ``layer``'s output."""
        key = (answer_column, layer)
        if key not in self._gradients:
            _check_autograd()
            # one backward down to ``layer`` passes every later layer: keep their gradients too
            wanted = [name for name in self.layers[:self.layers.index(layer) + 1]
                      if (answer_column, name) not in self._gradients]
            target = self._output[:, COLUMN_INDEX[answer_column]].sum()  # views independent
            with self.loaded.lock:
                grads = torch.autograd.grad(target, [self._activations[n] for n in wanted],
                                            retain_graph=True)
            self.backward_passes += 1
            for name, grad in zip(wanted, grads):
                self._gradients[(answer_column, name)] = grad
        return self._gradients[key]

    def heatmap(self, answer_column: str, method: str = DEFAULT_METHOD,
                layer: str = DEFAULT_LAYER) -> np.ndarray:
        """(S,S) float32 map in [0, 1] of what raises ``answer_column`` (module doc)."""
        if method not in METHODS:
            raise CamError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if answer_column not in COLUMN_INDEX:
            raise CamError(f"unknown answer {answer_column!r}; use a Kaggle column such as "
                           f"{ANSWER_COLUMNS[0]}")
        if layer not in self.layers:
            raise CamError(f"unknown layer {layer!r}; choose one of {', '.join(self.layers)}")
        key = (answer_column, method, layer)
        if key not in self._maps:
            gradients = self._gradient(answer_column, layer)
            with torch.no_grad():
                cams = F.relu(cam_map(self._activations[layer].detach(), gradients, method))
                size = self.loaded.preprocess.image_size
                cams = F.interpolate(cams, size=(size, size), mode="bilinear",
                                     align_corners=False)
                cam = (augment.undo_dihedral_views(cams) if self.tta else cams).mean(dim=0)[0]
                peak = float(cam.max())
                cam = cam / peak if peak > 0 else torch.zeros_like(cam)
            self._maps[key] = cam.cpu().numpy().astype(np.float32)
        return self._maps[key]

    def verdict_maps(self, method: str = DEFAULT_METHOD,
                     layer: str = DEFAULT_LAYER) -> list[tuple[Step, np.ndarray]]:
        """One map per question the verdict walked, each of the answer it took there."""
        verdict = walk_tree(self.preds, self.loaded.trained_columns)
        return [(step, self.heatmap(step.answer.column, method, layer))
                for step in verdict.steps]

    def cam(self, answer_column: str | None = None, method: str = DEFAULT_METHOD,
            layer: str = DEFAULT_LAYER) -> CamResult:
        answer_column = answer_column or self.default_answer()
        return CamResult(heatmap=self.heatmap(answer_column, method, layer),
                         answer_column=answer_column,
                         probability=self.probability(answer_column), method=method,
                         layer=layer, preds=self.preds, views=self.views)


def compute_cam(loaded: LoadedModel, image_uint8: torch.Tensor, answer_column: str | None = None,
                method: str = DEFAULT_METHOD, layer: str = DEFAULT_LAYER,
                tta: bool = False) -> CamResult:
    """Heatmap for one preprocessed image, uint8 (3,S,S); see ``ExplainedImage``. Default
    target: ``default_answer`` (the verdict's first answer)."""
    if method not in METHODS:
        raise CamError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if answer_column is not None and answer_column not in COLUMN_INDEX:
        raise CamError(f"unknown answer {answer_column!r}; use a Kaggle column such as Class1.1")
    _check_layers((layer,))
    return ExplainedImage(loaded, image_uint8, tta, layers=(layer,)).cam(
        answer_column, method, layer)


def explain_source(loaded: LoadedModel, source, name: str | None = None, tta: bool = False,
                   display_size: int = 320, framing=None) -> ExplainedImage:
    """An image file or bytes, decoded once for the model and once for display, seen once.
    ``framing`` (a ``framing.FramingStats``): frame the galaxy first, as predictions do."""
    preprocess = loaded.preprocess
    image, frame = prepare_framed(source, preprocess.image_size, preprocess.crop_fraction, name,
                                  framing)
    shown = display_crop(source, preprocess, display_size, name=name, frame=frame)
    return ExplainedImage(loaded, image, tta, display=shown, frame=frame)


def explain_image(loaded: LoadedModel, source, answer_column=None, method=DEFAULT_METHOD,
                  layer=DEFAULT_LAYER, name=None, tta: bool = False) -> CamResult:
    """A class activation map (``method``) of an image file or bytes."""
    return compute_cam(loaded, prepare_for_model(source, loaded.preprocess, name),
                       answer_column, method, layer, tta)


def _colorize(heatmap: np.ndarray, width: int, height: int, colormap: str) -> np.ndarray:
    """[0,1] heatmap -> colour-mapped float (height, width, 3) in 0..255."""
    image = Image.fromarray((heatmap * 255).astype(np.uint8))
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR),
                         dtype=np.float32) / 255.0
    return colormaps[colormap](resized)[..., :3] * 255.0


def colorbar_image(width: int = 320, height: int = 12, colormap: str = COLORMAP) -> np.ndarray:
    """The heatmap's colour scale, 0 on the left to 1 on the right, as RGB uint8 (h, w, 3)."""
    ramp = np.repeat(np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :], height, axis=0)
    return (colormaps[colormap](ramp)[..., :3] * 255.0).astype(np.uint8)


def what_red_means(answer_column: str) -> str:
    """One plain sentence to print beside a map of ``answer_column``."""
    label = ANSWER_BY_COLUMN[answer_column].label
    return (f"Red: the pixels that most raise the predicted probability of *{label}*; blue: "
            f"little or no effect. Each map is scaled to its own strongest pixel, so it shows "
            f"where, not how much.")


def heatmap_image(heatmap: np.ndarray, size: int, colormap: str = COLORMAP) -> np.ndarray:
    """The heatmap alone as an RGB uint8 (size, size, 3) picture."""
    return _colorize(heatmap, size, size, colormap).astype(np.uint8)


def png_bytes(image_rgb: np.ndarray) -> bytes:
    """An RGB uint8 (h, w, 3) picture as PNG file bytes (the page's overlay download)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay(image_rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45,
            colormap: str = COLORMAP) -> np.ndarray:
    """Blend a [0,1] heatmap (resized to the image) over an RGB uint8 image."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    height, width = image_rgb.shape[:2]
    colored = _colorize(heatmap, width, height, colormap)
    blended = (1 - opacity) * image_rgb.astype(np.float32) + opacity * colored
    return blended.clip(0, 255).astype(np.uint8)
