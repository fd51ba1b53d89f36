"""Whether a saliency map points at what the model uses: deletion and insertion curves
(Petsiuk, Das & Saenko 2018, "RISE"), adapted to a regression output, and their summary over
many galaxies.

For one image, one answer and one map (the model's input size, (S,S)):

- **deletion**: the most salient pixels first, a growing share of them is replaced by the
  image's own sky (the per-channel median of its outer border, so no black hole opens in a
  galaxy that sits on grey sky); the answer's predicted probability is read after each step.
  A faithful map makes it fall fast: a **low** area under the curve.
- **insertion**: starting from the image blurred beyond recognition (a Gaussian of
  ``BLUR_SIGMA`` of the side), the most salient pixels are put back first. A faithful map
  makes the probability come back fast: a **high** area.

The output is a vote fraction, not a class score, and its level differs from galaxy to galaxy,
so the curves are divided by the unperturbed probability before the area is taken
(``relative``: 1 means "as the model predicted"; the blurred and sky canvases often leave far
from 0). Raw areas, in probability units, are reported beside them. Shares step by
1/``STEPS``; the area is the trapezoid rule over shares 0..1. The probability is that of the
image as it is (one view), read from the BatchNorm-folded copy of the model that prediction
uses, whatever views the map was averaged over.

Two baselines are scored the same way on every galaxy: a random map (seeded per galaxy) and a
map peaking at the centre (galaxies sit in the middle of the frame, so a method has to beat
"the centre" to show anything beyond that). Ties within a map (a ReLU leaves many zeros) are
broken at random, seeded, so no map gets a raster-order sweep it did not ask for.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from . import paths
from .checkpoint import LoadedModel
from .explain import LAYERS, METHOD_NAMES, METHODS, ExplainedImage
from .images import normalize_float
from .schema import COLUMN_INDEX

STEPS = 8  # shares 0, 1/8, ..., 1 of the pixels
SKY_BORDER = 1 / 16  # the outer ring, as a share of the side, whose median is the sky
BLUR_SIGMA = 1 / 10  # the insertion canvas: Gaussian blur, sigma as a share of the side
BATCH = 64
MIN_PROBABILITY = 0.05  # below it, relative areas divide by almost nothing: not shown
BASELINES = {"random": "random map", "centre": "centred Gaussian map"}
# the shipped model's report (python -m train.gradcam --evaluate ... --json this)
REPORT_PATH = os.path.join(paths.ASSETS, "models", "faithfulness.json")


@dataclass
class Curves:
    fractions: np.ndarray  # (STEPS+1,) share of pixels removed (deletion) or revealed
    deletion: np.ndarray  # (STEPS+1,) the answer's probability along the deletion curve
    insertion: np.ndarray  # (STEPS+1,) the same along the insertion curve

    @property
    def original(self) -> float:
        return float(self.deletion[0])

    def auc(self, curve: str, relative: bool = True) -> float:
        """Area under ``curve`` ('deletion' or 'insertion'); ``relative``: the curve divided by
        the unperturbed probability first (nan where that is 0)."""
        if curve not in ("deletion", "insertion"):
            raise ValueError(f"curve must be 'deletion' or 'insertion', got {curve!r}")
        values = getattr(self, curve).astype(np.float64)
        if relative:
            if self.original <= 0:
                return float("nan")
            values = values / self.original
        return float(np.trapezoid(values, self.fractions))


def sky_canvas(image: torch.Tensor) -> torch.Tensor:
    """float (3,S,S) in [0,1] -> the same shape filled with the median colour of its border."""
    side = image.shape[-1]
    width = max(1, round(side * SKY_BORDER))
    ring = torch.ones(image.shape[-2:], dtype=torch.bool)
    ring[width:-width, width:-width] = False
    sky = image[:, ring].median(dim=1).values  # (3,)
    return sky[:, None, None].expand_as(image).clone()


def blurred_canvas(image: torch.Tensor) -> torch.Tensor:
    """float (3,S,S) -> blurred with a Gaussian of ``BLUR_SIGMA`` of the side."""
    side = image.shape[-1]
    sigma = max(0.5, side * BLUR_SIGMA)
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * ((side - 1) // 2) + 1)  # odd, fits the image
    return gaussian_blur(image.unsqueeze(0), [kernel, kernel], [sigma, sigma])[0]


def random_map(side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((side, side), dtype=np.float32)


def centre_map(side: int) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) - (side - 1) / 2
    return np.exp(-(x ** 2 + y ** 2) / (2 * (side / 4) ** 2)).astype(np.float32)


def pixel_ranks(saliency: np.ndarray, seed: int) -> torch.Tensor:
    """(S,S) map -> (S*S,) rank of each pixel, 0 = most salient; ties broken at random."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("a saliency map must be finite everywhere")
    tie_break = np.random.default_rng(seed).random(flat.size)
    order = np.lexsort((tie_break, -flat))  # by saliency, descending; then at random
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return torch.from_numpy(ranks)


def _masks(ranks: torch.Tensor, side: int, counts: torch.Tensor) -> torch.Tensor:
    """(K,) pixel counts -> (K,1,S,S) True where a pixel is among the ``count`` most salient."""
    return (ranks[None, :] < counts[:, None]).view(len(counts), 1, side, side)


def _outputs(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """float (N,3,S,S) in [0,1] -> (N,37) predicted probabilities of every answer, one view."""
    out = []
    with loaded.lock, torch.inference_mode():
        net = loaded.fast_net
        for start in range(0, len(images), BATCH):
            batch = normalize_float(images[start:start + BATCH].to(loaded.device),
                                    loaded.preprocess)
            batch = batch.contiguous(memory_format=torch.channels_last)
            out.append(net(batch).float().clamp(0, 1).cpu())
    return torch.cat(out)


def _inner_counts(side: int, steps: int) -> tuple[np.ndarray, torch.Tensor]:
    """The shares 0, 1/steps, ..., 1 and the pixel counts of the inner ones."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    return fractions, torch.from_numpy(np.round(fractions[1:-1] * side * side).astype(np.int64))


def _perturbed(image: torch.Tensor, sky: torch.Tensor, blurred: torch.Tensor,
               saliency: np.ndarray, inner: torch.Tensor, seed: int,
               name: str = "the map") -> torch.Tensor:
    """The inner steps of one map's deletion curve, then of its insertion curve: (2K,3,S,S)."""
    side = image.shape[-1]
    if np.shape(saliency) != (side, side):
        raise ValueError(f"{name} has shape {np.shape(saliency)}, expected ({side}, {side}) "
                         f"like the image")
    masks = _masks(pixel_ranks(saliency, seed), side, inner)  # (K,1,S,S)
    return torch.cat([torch.where(masks, sky, image),  # deletion
                      torch.where(masks, image, blurred)])  # insertion


def _assemble(fractions: np.ndarray, ends: np.ndarray, inner: np.ndarray) -> Curves:
    """ends: the probability of the image, all sky, all blur; inner: of ``_perturbed``'s
    images, in its order."""
    original, all_sky, all_blur = ends
    k = len(inner) // 2
    return Curves(fractions, np.concatenate([[original], inner[:k], [all_sky]]),
                  np.concatenate([[all_blur], inner[k:], [original]]))


def curves(loaded: LoadedModel, image_uint8: torch.Tensor, answer_column: str,
           maps: dict[str, np.ndarray], steps: int = STEPS, seed: int = 0) -> dict[str, Curves]:
    """Deletion and insertion curves of every map in ``maps`` (name -> (S,S)) for one image,
    uint8 (3,S,S), and one answer; all perturbed images go through the model in batches."""
    if answer_column not in COLUMN_INDEX:
        raise ValueError(f"unknown answer {answer_column!r}; use a Kaggle column such as Class1.1")
    image = image_uint8.float().div(255.0)  # (3,S,S)
    fractions, inner = _inner_counts(image.shape[-1], steps)
    sky, blurred = sky_canvas(image), blurred_canvas(image)
    # shared ends: the image itself, all sky (deletion's end), all blur (insertion's start)
    batches = [image[None], sky[None], blurred[None]]
    for name, saliency in maps.items():
        batches.append(_perturbed(image, sky, blurred, saliency, inner, seed, f"map {name!r}"))
    probs = _outputs(loaded, torch.cat(batches))[:, COLUMN_INDEX[answer_column]].numpy()
    per_map = 2 * len(inner)
    return {name: _assemble(fractions, probs[:3], probs[3 + i * per_map:3 + (i + 1) * per_map])
            for i, name in enumerate(maps)}


@dataclass
class _Shared:
    """What every map of one image shares, for every answer at once: the canvases, the model's
    outputs (37 each) for the image, all sky and all blur, and for the centred map's steps."""
    image: torch.Tensor
    sky: torch.Tensor
    blurred: torch.Tensor
    fractions: np.ndarray
    inner: torch.Tensor
    ends: torch.Tensor  # (3,37)
    centre: torch.Tensor  # (2K,37)


_SHARED_LOCK = threading.Lock()  # two sessions scoring a new image compute its shared passes once


def _shared(explained: ExplainedImage, steps: int, seed: int) -> _Shared:
    """Computed once per explained image (17 forward passes at the default steps), kept in it."""
    key = ("faithfulness", steps, seed)
    with _SHARED_LOCK:  # taken before the model's lock, never after it
        if key not in explained.kept:
            image = explained.image.float().div(255.0)
            fractions, inner = _inner_counts(image.shape[-1], steps)
            sky, blurred = sky_canvas(image), blurred_canvas(image)
            centre = _perturbed(image, sky, blurred, centre_map(image.shape[-1]), inner, seed)
            out = _outputs(explained.loaded,
                           torch.cat([image[None], sky[None], blurred[None], centre]))
            explained.kept[key] = _Shared(image, sky, blurred, fractions, inner, out[:3],
                                          out[3:])
        return explained.kept[key]


def map_name(method: str, layer: str) -> str:
    return f"{method}/{layer}"


def score_image(explained: ExplainedImage, answer_column: str, methods=METHODS, layers=LAYERS,
                steps: int = STEPS, seed: int = 0) -> dict[str, Curves]:
    """Curves of every method x layer map of one explained image, beside the two baselines
    (keys ``method/layer``, ``random``, ``centre``)."""
    side = explained.image.shape[-1]
    maps = {map_name(m, layer): explained.heatmap(answer_column, m, layer)
            for layer in layers for m in methods}
    maps["random"] = random_map(side, seed)
    maps["centre"] = centre_map(side)
    return curves(explained.loaded, explained.image, answer_column, maps, steps, seed)


def score_map(explained: ExplainedImage, answer_column: str, heatmap: np.ndarray | None = None,
              steps: int = STEPS, seed: int = 0) -> dict[str, float]:
    """Relative deletion and insertion areas of one map of one explained image (None: the
    centred map, what any map has to beat). The same numbers as ``curves``, but what does not
    depend on the map or the answer is computed once per image: a new answer or map costs the
    2 x (steps - 1) forward passes of its own steps, the centred map none after the first."""
    if answer_column not in COLUMN_INDEX:
        raise ValueError(f"unknown answer {answer_column!r}; use a Kaggle column such as Class1.1")
    shared = _shared(explained, steps, seed)
    if heatmap is None:
        inner = shared.centre
    else:
        inner = _outputs(explained.loaded, _perturbed(shared.image, shared.sky, shared.blurred,
                                                      heatmap, shared.inner, seed))
    index = COLUMN_INDEX[answer_column]
    scored = _assemble(shared.fractions, shared.ends[:, index].numpy(), inner[:, index].numpy())
    return {"deletion": scored.auc("deletion"), "insertion": scored.auc("insertion"),
            "probability": scored.original}


TIE = 0.005  # areas closer than this count as the same, in what the page says


def against_centre(scores: dict[str, float], centre: dict[str, float]) -> str:
    """One plain sentence: how a map's two areas compare with the centred blob's on one image
    (deletion: lower is better; insertion: higher is better)."""
    def verdict(better: float) -> str:
        return "as good as" if abs(better) < TIE else "better than" if better > 0 else "worse than"

    deletion = verdict(centre["deletion"] - scores["deletion"])
    insertion = verdict(scores["insertion"] - centre["insertion"])
    if deletion == insertion:
        return f"On this image the map is {deletion} a centred blob on both curves."
    return (f"On this image the map is {deletion} a centred blob on deletion and {insertion} it "
            f"on insertion.")


def _mean_sd(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _paired(a, b) -> tuple[float, float]:
    """Mean of a - b and the half-width of its 95% interval (normal approximation)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    half = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("inf")
    return float(diff.mean()), float(half)


def summarise(per_image: list[dict[str, Curves]]) -> list[dict]:
    """Per map (method x layer, then the baselines): mean and spread of each area over the
    images, and the paired difference to each baseline with its 95% interval. A map *beats* a
    baseline on a curve when that interval lies wholly on the better side (deletion lower,
    insertion higher)."""
    if not per_image:
        raise ValueError("no images were scored")
    names = list(per_image[0])
    areas = {name: {(curve, rel): [c[name].auc(curve, rel) for c in per_image]
                    for curve in ("deletion", "insertion") for rel in (True, False)}
             for name in names}
    rows = []
    for name in names:
        method, _, layer = name.partition("/")
        row = {"map": name, "method": method, "layer": layer or None,
               "images": len(per_image)}
        for curve in ("deletion", "insertion"):
            row[f"{curve}_auc"], row[f"{curve}_sd"] = _mean_sd(areas[name][(curve, True)])
            row[f"{curve}_auc_raw"], row[f"{curve}_sd_raw"] = _mean_sd(
                areas[name][(curve, False)])
        for baseline in BASELINES:
            for curve, sign in (("deletion", -1), ("insertion", 1)):
                mean, half = _paired(areas[name][(curve, True)],
                                     areas[baseline][(curve, True)])
                row[f"{curve}_vs_{baseline}"] = mean
                row[f"{curve}_vs_{baseline}_ci95"] = half
                row[f"beats_{baseline}_{curve}"] = bool(name != baseline
                                                        and sign * mean - half > 0)
        row["beats_baselines"] = all(row[f"beats_{b}_{c}"] for b in BASELINES
                                     for c in ("deletion", "insertion"))
        rows.append(row)
    return rows


def favoured(rows: list[dict]) -> dict:
    """The method x layer row with the largest insertion minus deletion area, among those that
    beat both baselines on both curves (among all method rows if none does)."""
    candidates = [r for r in rows if r["layer"]]
    if not candidates:
        raise ValueError("no method x layer rows to choose from")
    winners = [r for r in candidates if r["beats_baselines"]] or candidates
    return max(winners, key=lambda r: r["insertion_auc"] - r["deletion_auc"])


def methods_beating_baselines(report: dict) -> dict[str, list[str]]:
    """Layer -> names of the methods that beat both baselines there, in ``report``."""
    out: dict[str, list[str]] = {}
    for row in report["rows"]:
        if row["layer"] and row["beats_baselines"]:
            out.setdefault(row["layer"], []).append(METHOD_NAMES[row["method"]])
    return out


def report_markdown(report: dict) -> str:
    """The report as a markdown table for the model card."""
    lines = [
        f"Faithfulness of the maps of `{report['model']}`: deletion and insertion curves "
        f"(Petsiuk et al. 2018) on {report['images']} galaxies ({report['galaxies_from']}), "
        f"answer: {report['answer']}, maps averaged over {report['views']} view(s), "
        f"{report['steps']} steps. Areas of the probability relative to the unperturbed one "
        f"(mean ± sd over galaxies); deletion: lower is better, insertion: higher is better. "
        f"*Beats*: on which curves the paired 95% interval of the difference to that "
        f"baseline lies wholly on the better side.",
        "",
        "| map | layer | deletion AUC | insertion AUC | insertion − deletion | beats centre | "
        "beats random |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        name = METHOD_NAMES.get(row["method"]) or BASELINES[row["map"]] + " (baseline)"

        def beats(baseline):
            if not row["layer"]:
                return "–"
            won = [c for c in ("deletion", "insertion") if row[f"beats_{baseline}_{c}"]]
            return {2: "both", 1: won[0] if won else "", 0: "no"}[len(won)]

        lines.append(
            f"| {name} | {row['layer'] or '–'} | {row['deletion_auc']:.3f} ± "
            f"{row['deletion_sd']:.3f} | {row['insertion_auc']:.3f} ± {row['insertion_sd']:.3f} "
            f"| {row['insertion_auc'] - row['deletion_auc']:+.3f} | {beats('centre')} | "
            f"{beats('random')} |")
    best = report.get("favoured")
    if best:
        how = ("the largest insertion − deletion among maps that beat both baselines on both "
               "curves" if best.get("beats_baselines") else
               "no map beats both baselines on both curves; the largest insertion − deletion")
        lines += ["", f"Favoured ({how}): {METHOD_NAMES[best['method']]} on `{best['layer']}`."]
    return "\n".join(lines) + "\n"


def read_report(path: str = REPORT_PATH) -> dict | None:
    """A report written by ``train.gradcam --evaluate``, or None where there is none."""
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        report = json.load(handle)
    if "rows" not in report:
        raise ValueError(f"{path} is not a faithfulness report (no 'rows')")
    return report


def beating_sentence(report: dict) -> str:
    """Which method x layer maps beat the centred map on each curve, and which beat both
    baselines on both, in one sentence."""
    def names(test) -> str:
        found = [f"{METHOD_NAMES[r['method']]} ({r['layer']})" for r in report["rows"]
                 if r["layer"] and test(r)]
        return ", ".join(found) or "none"

    return (f"Measured on {report['images']} galaxies for {report['model']} (Model card): "
            f"maps that beat a plain centred blob on deletion: "
            f"{names(lambda r: r['beats_centre_deletion'])}; on insertion: "
            f"{names(lambda r: r['beats_centre_insertion'])}; both baselines (centre and "
            f"random) on both curves: {names(lambda r: r['beats_baselines'])}.")
