"""Deletion and insertion curves on hand-made cases, their summary, and the --evaluate CLI."""

import json

import numpy as np
import pytest
import torch

from galaxy_core import faithfulness
from galaxy_core.checkpoint import LoadedModel
from galaxy_core.config import Preprocess
from galaxy_core.explain import ExplainedImage
from galaxy_core.faithfulness import Curves, centre_map, curves, pixel_ranks, random_map
from galaxy_core.images import normalize_float
from galaxy_core.schema import ANSWER_COLUMNS, COLUMN_INDEX
from tests.conftest import make_loaded
from train.gradcam import main

SIDE = 32
PATCH = (slice(4, 12), slice(18, 26))  # the only pixels the toy model looks at


class PatchModel(torch.nn.Module):
    """Class1.1 = the brightness of one off-centre patch; every other output 0."""

    def __init__(self, preprocess):
        super().__init__()
        self.preprocess = preprocess
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # so it has a device

    def forward(self, x):  # (B,3,S,S) normalised -> (B,37)
        mean = torch.tensor(self.preprocess.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess.std).view(1, 3, 1, 1)
        pixels = x * std + mean  # back to [0, 1]
        out = torch.zeros(len(x), len(ANSWER_COLUMNS))
        out[:, COLUMN_INDEX["Class1.1"]] = pixels[:, :, PATCH[0], PATCH[1]].mean(dim=(1, 2, 3))
        return out + 0 * self.anchor


def toy():
    preprocess = Preprocess(image_size=SIDE, crop_fraction=1.0)
    net = PatchModel(preprocess)
    loaded = LoadedModel(net=net, preprocess=preprocess, trained_columns=ANSWER_COLUMNS, meta={})
    loaded._fast_net = net
    image = torch.full((3, SIDE, SIDE), 20, dtype=torch.uint8)  # dark sky
    image[:, PATCH[0], PATCH[1]] = 230  # what the model uses
    image[:, 13:19, 13:19] = 250  # a bright decoy in the centre, which it ignores
    return loaded, image


def test_a_map_of_the_truly_important_pixels_beats_random_and_the_centre():
    loaded, image = toy()
    perfect = np.zeros((SIDE, SIDE), np.float32)
    perfect[PATCH] = 1.0
    scored = curves(loaded, image, "Class1.1", {"perfect": perfect,
                                                "random": random_map(SIDE, 0),
                                                "centre": centre_map(SIDE)}, steps=8)
    original = scored["perfect"].original
    assert original == pytest.approx(230 / 255, abs=1e-5)
    deletion = {k: c.auc("deletion") for k, c in scored.items()}
    insertion = {k: c.auc("insertion") for k, c in scored.items()}
    assert deletion["perfect"] < deletion["random"] - 0.2
    assert deletion["perfect"] < deletion["centre"] - 0.2
    assert insertion["perfect"] > insertion["random"] + 0.1  # the blur keeps some of it
    assert insertion["perfect"] > insertion["centre"] + 0.1
    # the patch is 1/16 of the image: deleting the first 1/8 of a perfect map's pixels leaves sky
    sky = 20 / 255
    assert scored["perfect"].deletion[1] == pytest.approx(sky, abs=1e-5)
    # curves share their ends: the image itself, all sky, all blur
    for c in scored.values():
        assert c.deletion[0] == pytest.approx(original)
        assert c.insertion[-1] == pytest.approx(original)
        assert c.deletion[-1] == pytest.approx(sky, abs=1e-5)
    # relative areas are the raw ones over the unperturbed probability
    assert scored["random"].auc("deletion") == pytest.approx(
        scored["random"].auc("deletion", relative=False) / original)


def test_area_and_ties():
    flat = Curves(np.linspace(0, 1, 5), np.full(5, 0.5), np.full(5, 0.5))
    assert flat.auc("deletion") == pytest.approx(1.0)
    assert flat.auc("insertion", relative=False) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'deletion' or 'insertion'"):
        flat.auc("sideways")
    # a constant map is a tie everywhere: broken at random, not swept in raster order
    ranks = pixel_ranks(np.zeros((16, 16)), seed=1).numpy()
    assert sorted(ranks) == list(range(256))
    assert ranks[:32].max() > 64
    with pytest.raises(ValueError, match="finite"):
        pixel_ranks(np.full((4, 4), np.nan), seed=0)


def test_clear_errors():
    loaded, image = toy()
    with pytest.raises(ValueError, match="unknown answer 'Class99.1'"):
        curves(loaded, image, "Class99.1", {"m": centre_map(SIDE)})
    with pytest.raises(ValueError, match=r"map 'm' has shape \(8, 8\)"):
        curves(loaded, image, "Class1.1", {"m": np.zeros((8, 8))})
    with pytest.raises(ValueError, match="steps must be >= 2, got 1"):
        curves(loaded, image, "Class1.1", {"m": centre_map(SIDE)}, steps=1)


def test_the_page_scores_equal_the_curves_and_share_what_does_not_depend_on_the_answer(
        monkeypatch):
    loaded = make_loaded(image_size=48)
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    explained = ExplainedImage(loaded, image, tta=False)
    scored_images = []
    outputs = faithfulness._outputs
    monkeypatch.setattr(faithfulness, "_outputs",
                        lambda lo, images: scored_images.append(len(images)) or outputs(lo, images))
    steps, k = 6, 2 * (6 - 1)  # each map's own images: the inner steps of its two curves
    two_likeliest = [ANSWER_COLUMNS[i] for i in np.argsort(explained.preds)[-2:]]
    assert explained.preds.min() < 0.01 < explained.preds[np.argsort(explained.preds)[-2]]
    for n, answer in enumerate(two_likeliest):
        heatmap = explained.heatmap(answer, "gradcam", "layer3")
        centre = faithfulness.score_map(explained, answer, None, steps=steps)
        page = faithfulness.score_map(explained, answer, heatmap, steps=steps)
        # the first answer pays for the shared images (image, sky, blur, the centred map's
        # steps) and its map's; a second answer only for its map's
        assert scored_images == ([3 + k, k] if n == 0 else [k])
        reference = curves(loaded, image, answer, {"map": heatmap, "centre": centre_map(48)},
                           steps=steps)
        for scores, name in ((page, "map"), (centre, "centre")):
            assert scores["probability"] == pytest.approx(reference[name].original, abs=1e-5)
            for curve in ("deletion", "insertion"):
                assert scores[curve] == pytest.approx(reference[name].auc(curve), abs=1e-4)
        scored_images.clear()
    with pytest.raises(ValueError, match="unknown answer"):
        faithfulness.score_map(explained, "Class99.1")


def test_summary_says_which_maps_beat_both_baselines():
    fractions = np.linspace(0, 1, 3)

    def image(good):
        # a good map: deletion falls at once, insertion comes back at once
        maps = {"gradcam/layer3": (Curves(fractions, np.array([1, .1 + good, 0]),
                                          np.array([0, .9 - good, 1]))),
                "layercam/layer3": Curves(fractions, np.array([1, .6, 0]),
                                          np.array([0, .4, 1])),
                "random": Curves(fractions, np.array([1, .5, 0]), np.array([0, .5, 1])),
                "centre": Curves(fractions, np.array([1, .5, 0]), np.array([0, .5, 1]))}
        return maps

    rows = faithfulness.summarise([image(g) for g in (0.0, 0.01, 0.02, 0.03)])
    by_map = {r["map"]: r for r in rows}
    assert by_map["gradcam/layer3"]["beats_baselines"]
    assert not by_map["layercam/layer3"]["beats_baselines"]
    assert not by_map["centre"]["beats_baselines"]
    assert faithfulness.favoured(rows)["map"] == "gradcam/layer3"
    report = {"rows": rows, "images": 4, "model": "m.pt"}
    assert faithfulness.methods_beating_baselines(report) == {"layer3": ["Grad-CAM"]}
    sentence = faithfulness.beating_sentence(report)
    assert "on deletion: Grad-CAM (layer3); on insertion: Grad-CAM (layer3)" in sentence
    assert "on both curves: Grad-CAM (layer3)." in sentence
    with pytest.raises(ValueError, match="no images"):
        faithfulness.summarise([])


def test_evaluate_cli_end_to_end(galaxy_folder, checkpoint_file, tmp_path):
    out, table = tmp_path / "faith.json", tmp_path / "faith.md"
    code = main(["--evaluate", "--checkpoint", checkpoint_file, "--images",
                 galaxy_folder["images"], "--labels", galaxy_folder["labels"], "--split-seed",
                 "0", "--limit", "2", "--methods", "gradcam", "layercam", "--layers", "layer4",
                 "layer3", "--steps", "4", "--json", str(out), "--markdown", str(table)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["images"] == 2 and report["complete"] and report["views"] == 8
    assert len(report["galaxy_ids"]) == 2
    assert "validation galaxies of split seed 0" in report["galaxies_from"]
    assert [r["map"] for r in report["rows"]] == [
        "gradcam/layer4", "layercam/layer4", "gradcam/layer3", "layercam/layer3", "random",
        "centre"]
    for row in report["rows"]:
        assert np.isfinite(row["deletion_auc"]) and np.isfinite(row["insertion_auc"])
        assert row["deletion_sd"] >= 0
    assert report["favoured"]["layer"] in ("layer4", "layer3")
    assert len(report["per_galaxy"]["centre"]) == 2
    text = table.read_text()
    assert "| LayerCAM | layer3 |" in text and "centred Gaussian map (baseline)" in text
    # without --json there is nothing to write to
    with pytest.raises(SystemExit):
        main(["--evaluate", "--images", galaxy_folder["images"]])


def test_the_page_says_in_words_how_a_map_compares_with_the_centre():
    centre = {"deletion": 0.50, "insertion": 0.60}
    said = faithfulness.against_centre
    assert said({"deletion": 0.30, "insertion": 0.90}, centre) == \
        "On this image the map is better than a centred blob on both curves."
    assert said({"deletion": 0.70, "insertion": 0.601}, centre) == (
        "On this image the map is worse than a centred blob on deletion and as good as it on "
        "insertion.")
    assert "better than a centred blob on deletion and worse than it" in said(
        {"deletion": 0.40, "insertion": 0.50}, centre)
