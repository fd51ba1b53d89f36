import io

import numpy as np
import pandas as pd
import pytest
import torch

from galaxy_core.predict import predict_files, predict_image, run_model
from galaxy_core.schema import CSV_HEADER
from tests.conftest import galaxy_image, make_loaded


def test_folder_to_kaggle_csv(galaxy_folder, loaded, tmp_path):
    from galaxy_core.data import list_images
    progress = []
    result = predict_files(loaded, list_images(galaxy_folder["images"]), batch_size=5,
                           workers=0, on_progress=lambda d, t: progress.append((d, t)))
    out = result.to_csv(tmp_path / "sub.csv")
    frame = pd.read_csv(out)
    assert list(frame.columns) == list(CSV_HEADER)
    assert list(frame["GalaxyID"]) == galaxy_folder["ids"]
    values = frame.iloc[:, 1:].to_numpy()
    assert values.min() >= 0 and values.max() <= 1
    assert progress[-1] == (16, 16)
    with open(out) as handle:
        assert handle.readline().strip() == ",".join(CSV_HEADER)


def test_workers_give_identical_results(galaxy_folder, loaded):
    from galaxy_core.data import list_images
    paths = list_images(galaxy_folder["images"])
    a = predict_files(loaded, paths, batch_size=4, workers=0).frame
    b = predict_files(loaded, paths, batch_size=4, workers=2).frame
    pd.testing.assert_frame_equal(a, b)


def test_bad_files_are_skipped_and_reported(galaxy_folder, loaded, tmp_path):
    from galaxy_core.data import list_images
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"nope")
    result = predict_files(loaded, list_images(galaxy_folder["images"])[:3] + [str(bad)],
                           workers=0)
    assert len(result.frame) == 3
    assert result.errors and "broken.jpg" in result.errors[0][1]


def test_bytes_with_names_and_single_image(loaded):
    data = io.BytesIO()
    galaxy_image(7).save(data, format="PNG")
    result = predict_files(loaded, [data.getvalue()], names=["my galaxy.png"], workers=0)
    assert result.frame["GalaxyID"].tolist() == ["my galaxy"]
    single = predict_image(loaded, data.getvalue())
    np.testing.assert_allclose(single, result.frame.iloc[0, 1:].to_numpy(float), atol=1e-6)


def test_tta_is_invariant_to_right_angle_rotations_and_flips():
    loaded = make_loaded(head="tree")
    image = torch.from_numpy(np.array(galaxy_image(2, size=32, elongation=2.5))).permute(2, 0, 1)
    batch = torch.stack([image, torch.rot90(image, 1, (1, 2)), torch.flip(image, (2,))])
    plain = run_model(loaded.net, loaded.preprocess, batch, tta=False)
    tta = run_model(loaded.net, loaded.preprocess, batch, tta=True)
    from galaxy_core import augment
    assert len(list(augment.dihedral_views(batch))) == augment.TTA_VIEWS == 8
    np.testing.assert_allclose(tta[0], tta[1], atol=1e-5)
    np.testing.assert_allclose(tta[0], tta[2], atol=1e-5)
    assert np.abs(plain[0] - plain[1]).max() > 1e-4  # without TTA the views differ


def test_half_the_views_see_the_wider_square_of_a_large_galaxy():
    """``wide``: the views ``augment.WIDE_VIEWS`` (one of each rotation) are of each image's
    wider square, the others of the image; an image whose wide square is itself predicts as
    without; one view never sees it. Through ``predict_files``/``predict_image`` with framing, a
    galaxy large in its frame gets that mix, a typical one the 8 views of its frame."""
    from galaxy_core import augment
    from galaxy_core.framing import shipped_stats
    from tests.test_framing import kaggle_like, png

    loaded = make_loaded(head="tree", image_size=32, crop_fraction=0.5)
    images = torch.stack([torch.from_numpy(np.array(galaxy_image(s, size=32))).permute(2, 0, 1)
                          for s in (1, 2)])
    wide = torch.stack([torch.from_numpy(np.array(galaxy_image(3, size=32))).permute(2, 0, 1),
                        images[1]])  # the second image has no wider square
    net, prep = loaded.net, loaded.preprocess
    mean, views = run_model(net, prep, images, tta=True, keep_views=True, wide=wide)
    own = run_model(net, prep, images, tta=True, keep_views=True)[1]
    wide_own = run_model(net, prep, wide, tta=True, keep_views=True)[1]
    assert augment.WIDE_VIEWS == (1, 2, 5, 6)
    for view in range(augment.TTA_VIEWS):
        np.testing.assert_allclose(views[0, view], (wide_own if view in augment.WIDE_VIEWS
                                                    else own)[0, view], atol=1e-6)
    np.testing.assert_allclose(views[1], own[1], atol=1e-6)
    np.testing.assert_allclose(mean, views.mean(1), atol=1e-6)
    assert np.abs(mean[0] - own[0].mean(0)).max() > 1e-4
    np.testing.assert_allclose(run_model(net, prep, images, wide=wide),
                               run_model(net, prep, images), atol=1e-6)  # one view: never
    # end to end: framing gives the large galaxy (not the typical one) its whole image as the
    # wider square (twice the side of the model's centre half)
    large, typical = png(kaggle_like(0.25)), png(kaggle_like(0.0774, seed=1))
    result = predict_files(loaded, [large, typical], names=["a.png", "b.png"], tta=True,
                           workers=0, framing=shipped_stats(), keep_views=True)
    assert [f.wider for f in result.frames] == [2, 1]
    off = predict_files(loaded, [large, typical], names=["a.png", "b.png"], tta=True,
                        workers=0, keep_views=True)
    np.testing.assert_allclose(result.views[1], off.views[1], atol=1e-6)
    from galaxy_core.images import prepare
    whole = run_model(loaded.fast_net, prep, prepare(large, 32, 1.0)[None], tta=True,
                      keep_views=True)[1][0]
    for view in range(augment.TTA_VIEWS):
        expected = whole[view] if view in augment.WIDE_VIEWS else off.views[0, view]
        np.testing.assert_allclose(result.views[0, view], expected, atol=1e-5)
    np.testing.assert_allclose(predict_image(loaded, large, tta=True, framing=shipped_stats()),
                               result.frame.iloc[0, 1:].to_numpy(float), atol=1e-5)
    # one view never sees the wider square, so it is not even cut
    from galaxy_core.data import DecodeJob
    assert DecodeJob([large], 32, 0.5, framing=shipped_stats(), wide=True)[0][4] is not None
    assert DecodeJob([large], 32, 0.5, framing=shipped_stats())[0][4] is None
    one = predict_files(loaded, [large], names=["a.png"], workers=0, framing=shipped_stats())
    np.testing.assert_allclose(one.frame.iloc[0, 1:].to_numpy(float),
                               predict_files(loaded, [large], names=["a.png"], workers=0)
                               .frame.iloc[0, 1:].to_numpy(float), atol=1e-6)


def test_csv_header_is_enforced(loaded, tmp_path):
    from galaxy_core.predict import write_submission_csv
    with pytest.raises(ValueError, match="Kaggle columns"):
        write_submission_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")


def test_batchnorm_folded_copy_predicts_the_same():
    loaded = make_loaded(head="tree", image_size=48)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for module in loaded.net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    images = torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8)
    reference = run_model(loaded.net, loaded.preprocess, images)
    fast = run_model(loaded.fast_net, loaded.preprocess, images)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    assert loaded.fast_net is loaded.fast_net  # built once


def test_bfloat16_is_an_opt_in_that_moves_probabilities_by_thousandths(tmp_path):
    """The shipped model on the shipped samples: bfloat16 really runs (outputs differ) but
    stays within a few thousandths of float32, and still obeys the tree."""
    from galaxy_core import paths
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.data import list_images
    from galaxy_core.schema import COLUMN_INDEX
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    images = list_images(paths.SAMPLE_IMAGES)[:16]
    exact = predict_files(loaded, images, workers=0).frame.iloc[:, 1:].to_numpy()
    fast = predict_files(loaded, images, workers=0, precision="bfloat16").frame.iloc[:, 1:]
    change = np.abs(fast.to_numpy() - exact).max()
    assert 0 < change < 2e-2
    q1 = fast[[c for c in COLUMN_INDEX if c.startswith("Class1.")]].sum(axis=1)
    np.testing.assert_allclose(q1, 1.0, atol=2e-2)
    with pytest.raises(ValueError, match="precision"):
        predict_files(loaded, images, precision="float16")

    from train.predict import main
    out = tmp_path / "fast.csv"
    assert main(["--images", *images[:4], "--out", str(out), "--precision", "bfloat16"]) == 0
    assert len(pd.read_csv(out)) == 4


def test_bfloat16_caution_is_given_exactly_where_bfloat16_is_emulated():
    """One sentence, used by training, the predict CLI and the training page."""
    from galaxy_core.device import bfloat16_warning, native_bfloat16
    cpu = torch.device("cpu")
    assert (bfloat16_warning(cpu) is None) == native_bfloat16(cpu)
    assert bfloat16_warning(torch.device("mps")) == ("Apple MPS has no native bfloat16: it is "
                                                     "emulated, and slower than float32")


def test_predict_cli_averages_the_tta_views_by_default_as_the_app_does(tmp_path):
    from galaxy_core import paths
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.data import list_images
    from train.predict import main
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    images = list_images(paths.SAMPLE_IMAGES)[:3]
    for flags, tta in (([], True), (["--no-tta"], False)):
        out = tmp_path / f"tta_{tta}.csv"
        assert main(["--images", *images, "--out", str(out), "--workers", "0", *flags]) == 0
        expected = predict_files(loaded, images, workers=0, tta=tta).frame
        np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].to_numpy(),
                                   expected.iloc[:, 1:].to_numpy(), atol=1e-6)


def test_merged_shards_keep_each_rows_frame():
    """Each rank's frames follow its rows into input order (the flags judge them)."""
    from galaxy_core.predict import PredictionResult
    from train.predict import merge_shards

    def part(ids, frames):
        return PredictionResult(frame=pd.DataFrame({"GalaxyID": ids}), kept=list(range(len(ids))),
                                frames=frames)
    merged = merge_shards([([0, 2, 4], part([10, 12, 14], ["a", "c", "e"])),
                           ([1, 3], part([11, 13], ["b", "d"]))])
    assert list(merged.frame["GalaxyID"]) == [10, 11, 12, 13, 14] and merged.kept == [0, 1, 2, 3, 4]
    assert merged.frames == ["a", "b", "c", "d", "e"]
