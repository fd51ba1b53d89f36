import os

import numpy as np
import pandas as pd
import pytest
import torch

from galaxy_core.config import Preprocess
from galaxy_core.data import (DataError, GalaxyZooDataset, decode_images, read_labels,
                              select_subset, split_train_val)
from galaxy_core.schema import COLUMN_INDEX


def test_labelled_mode_returns_image_and_37_targets(galaxy_folder):
    ds = GalaxyZooDataset(galaxy_folder["images"], galaxy_folder["labels"], Preprocess(image_size=32))
    image, targets = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert targets.shape == (37,)
    np.testing.assert_allclose(targets.numpy(), galaxy_folder["targets"][0], atol=1e-6)


def test_unlabelled_mode_returns_galaxy_id(galaxy_folder):
    ds = GalaxyZooDataset(galaxy_folder["images"], preprocess=Preprocess(image_size=32))
    assert len(ds) == 16
    assert ds[0][1] == "100000"


def test_partial_columns_and_empty_cells_are_nan_not_zero(tmp_path):
    path = tmp_path / "partial.csv"
    pd.DataFrame({"GalaxyID": [1, 2], "Class1.1": [0.2, None], "Class1.2": [0.8, 0.5],
                  "Class1.3": [0.0, 0.5]}).to_csv(path, index=False)
    table = read_labels(path)
    assert table.columns == ("Class1.1", "Class1.2", "Class1.3")
    assert np.isnan(table.targets[1, COLUMN_INDEX["Class1.1"]])
    assert np.isnan(table.targets[:, COLUMN_INDEX["Class4.1"]]).all()
    assert table.targets[0, COLUMN_INDEX["Class1.3"]] == 0.0


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"ID": [1], "Class1.1": [0.5]}), "no GalaxyID column"),
    (pd.DataFrame({"GalaxyID": [1], "Class99.1": [0.5]}), "not Kaggle answer columns"),
    (pd.DataFrame({"GalaxyID": [1]}), "no answer columns"),
    (pd.DataFrame({"GalaxyID": ["abc"], "Class1.1": [0.5]}), "whole numbers"),
    (pd.DataFrame({"GalaxyID": [1, 1], "Class1.1": [0.5, 0.5]}), "duplicate"),
    (pd.DataFrame({"GalaxyID": [1], "Class1.1": ["high"]}), "non-numeric"),
    (pd.DataFrame({"GalaxyID": [1], "Class1.1": [1.7]}), r"\[0, 1\]"),
])
def test_bad_csv_gets_a_specific_error(tmp_path, frame, message):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        read_labels(path)


def test_missing_labels_file_and_image(tmp_path, galaxy_folder):
    with pytest.raises(DataError, match="not found"):
        read_labels(tmp_path / "none.csv")
    (galaxy_folder["root"] / "images" / "100003.jpg").unlink()
    with pytest.raises(DataError, match="100003.jpg"):
        GalaxyZooDataset(galaxy_folder["images"], galaxy_folder["labels"])


def test_png_images_are_found_under_the_same_galaxy_id(galaxy_folder):
    from PIL import Image
    jpg = galaxy_folder["root"] / "images" / "100003.jpg"
    Image.open(jpg).save(jpg.with_suffix(".png"))
    jpg.unlink()
    ds = GalaxyZooDataset(galaxy_folder["images"], galaxy_folder["labels"], Preprocess(image_size=32))
    assert ds.paths[3].endswith("100003.png")
    assert ds[3][0].shape == (3, 32, 32)


def test_split_is_deterministic_disjoint_and_order_independent(galaxy_folder):
    table = read_labels(galaxy_folder["labels"])
    train, val = split_train_val(table, 0.25, seed=3)
    assert len(train) == 12 and len(val) == 4
    assert not set(train.galaxy_ids) & set(val.galaxy_ids)
    reversed_table = table.subset(np.arange(len(table))[::-1])
    _, val2 = split_train_val(reversed_table, 0.25, seed=3)
    assert sorted(val.galaxy_ids) == sorted(val2.galaxy_ids)
    _, val3 = split_train_val(table, 0.25, seed=4)
    assert sorted(val3.galaxy_ids) != sorted(val.galaxy_ids)


def test_train_fraction_keeps_validation_and_nests_training_sets(galaxy_folder):
    table = read_labels(galaxy_folder["labels"])
    full, val = split_train_val(table, 0.25, seed=3)
    half, val_half = split_train_val(table, 0.25, seed=3, train_fraction=0.5)
    quarter, _ = split_train_val(table, 0.25, seed=3, train_fraction=0.25)
    assert list(val_half.galaxy_ids) == list(val.galaxy_ids)
    assert (len(full), len(half), len(quarter)) == (12, 6, 3)
    assert set(quarter.galaxy_ids) < set(half.galaxy_ids) < set(full.galaxy_ids)
    with pytest.raises(ValueError, match="train_fraction"):
        split_train_val(table, 0.25, seed=3, train_fraction=0.0)


def test_subset_first_and_random(galaxy_folder):
    table = read_labels(galaxy_folder["labels"])
    assert list(select_subset(table, 5, "first", 0).galaxy_ids) == galaxy_folder["ids"][:5]
    a = select_subset(table, 5, "random", 1).galaxy_ids
    assert len(a) == 5 and list(a) == list(select_subset(table, 5, "random", 1).galaxy_ids)
    assert len(select_subset(table, 0, "first", 0)) == 16


def test_decode_cache_matches_eval_transform_and_is_reused(galaxy_folder, tmp_path):
    ds = GalaxyZooDataset(galaxy_folder["images"], galaxy_folder["labels"],
                          Preprocess(image_size=32, crop_fraction=0.5), normalized=False)
    cache = tmp_path / "cache"
    decoded = decode_images(ds.paths, 32, 0.5, workers=0, cache_dir=str(cache))
    assert torch.equal(decoded[3], ds[3][0])
    assert len(list(cache.iterdir())) == 1
    again = decode_images(ds.paths, 32, 0.5, workers=0, cache_dir=str(cache))
    assert torch.equal(again, decoded)


def test_decode_names_an_unreadable_image(galaxy_folder):
    bad = galaxy_folder["root"] / "images" / "100002.jpg"
    bad.write_bytes(b"garbage")
    paths = [str(galaxy_folder["root"] / "images" / f"{g}.jpg") for g in galaxy_folder["ids"]]
    with pytest.raises(DataError, match="100002.jpg"):
        decode_images(paths, 32, 1.0, workers=0)


def test_list_images_skips_hidden_files_and_other_types(tmp_path):
    from galaxy_core.data import list_images
    for name in ("2.jpg", "1.PNG", "._2.jpg", ".2.jpg.0a1b.tmp.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [os.path.basename(p) for p in list_images(tmp_path)] == ["1.PNG", "2.jpg"]


def test_degenerate_labels_are_refused(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("GalaxyID,Class1.1,Class1.2\n")
    with pytest.raises(DataError, match="no galaxies"):
        read_labels(header_only)
    all_empty = tmp_path / "empty.csv"
    all_empty.write_text("GalaxyID,Class1.1,Class1.2\n1,,\n2,,\n")
    with pytest.raises(DataError, match="every cell of its 2 answer column"):
        read_labels(all_empty)


def test_an_entirely_empty_answer_column_is_not_an_answer_provided(tmp_path):
    path = tmp_path / "partial.csv"
    path.write_text("GalaxyID,Class1.1,Class1.2,Class1.3\n1,0.2,,0.8\n2,0.5,,0.5\n")
    table = read_labels(path)
    assert table.columns == ("Class1.1", "Class1.3")
    assert np.isnan(table.targets[:, COLUMN_INDEX["Class1.2"]]).all()


def test_a_subset_without_a_known_answer_is_refused(tmp_path):
    path = tmp_path / "sparse.csv"
    path.write_text("GalaxyID,Class1.1\n1,\n2,\n3,0.4\n")
    table = read_labels(path)
    with pytest.raises(DataError, match="the first 2 of 3 galaxies have no known answer"):
        select_subset(table, 2, "first", 0)
    assert len(select_subset(table, 3, "first", 0)) == 3
