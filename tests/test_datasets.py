"""The dataset allow-list: names from the admin's setting, paths only inside their roots."""

import os

import pytest

from galaxy_core import paths
from galaxy_core.datasets import (SAMPLES_NAME, DatasetError, by_name, configured, dataset_at,
                                  parse_setting, resolve_under)


@pytest.fixture
def roots(tmp_path):
    kaggle = tmp_path / "kaggle"
    (kaggle / "images").mkdir(parents=True)
    (kaggle / "labels_partial.csv").write_text("GalaxyID,Class1.1\n1,0.5\n")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "labels.csv").write_text("GalaxyID,Class1.1\n1,0.5\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("admin_password = 'hunter2'\n")
    return {"kaggle": kaggle, "flat": flat, "outside": outside}


def test_the_shipped_samples_are_always_there_and_come_first():
    found = configured("")
    assert [d.name for d in found] == [SAMPLES_NAME]
    assert found[0].labels == paths.SAMPLE_LABELS and found[0].images == paths.SAMPLE_IMAGES


def test_configured_datasets_by_name_in_the_kaggle_layout(roots):
    found = configured(f"Kaggle sample={roots['kaggle']}; Flat = {roots['flat']};"
                       f"gone=/no/such/folder;broken entry", extra={"Extra": str(roots["flat"])})
    assert [d.name for d in found] == [SAMPLES_NAME, "Kaggle sample", "Flat", "Extra"]
    kaggle = by_name(found, "Kaggle sample")
    assert kaggle.images == str(roots["kaggle"] / "images")
    assert kaggle.labels == str(roots["kaggle"] / "labels_partial.csv")
    flat = by_name(found, "Flat")
    assert flat.images == str(roots["flat"]) and flat.labels.endswith("labels.csv")
    with pytest.raises(DatasetError, match="no dataset named 'nope'"):
        by_name(found, "nope")


def test_a_folder_without_one_csv_is_unlabelled(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "b.csv").write_text("x")
    assert not dataset_at("two", str(tmp_path)).labelled


def test_parse_setting_skips_malformed_entries():
    assert parse_setting("a=/x;;=/y;b=;c") == [("a", "/x")]


@pytest.mark.parametrize("probe", ["/proc/self/environ", "/etc/passwd",
                                   os.path.join(paths.PROJECT_ROOT, ".streamlit",
                                                "secrets.toml")])
def test_server_files_outside_the_roots_are_refused(roots, probe):
    found = configured(f"k={roots['kaggle']}")
    with pytest.raises(DatasetError, match="outside the configured dataset folders") as refused:
        resolve_under(found, probe, "file")
    assert "hunter2" not in str(refused.value) and probe not in str(refused.value)


def test_dot_dot_and_symlink_escapes_are_refused(roots):
    found = configured(f"k={roots['kaggle']}")
    escape = os.path.join(str(roots["kaggle"]), "..", "outside", "secret.txt")
    with pytest.raises(DatasetError, match="outside"):
        resolve_under(found, escape, "file")
    link = roots["kaggle"] / "images" / "innocent.csv"
    link.symlink_to(roots["outside"] / "secret.txt")
    with pytest.raises(DatasetError, match="outside"):
        resolve_under(found, str(link), "file")
    folder_link = roots["kaggle"] / "more"
    folder_link.symlink_to(roots["outside"], target_is_directory=True)
    with pytest.raises(DatasetError, match="outside"):
        resolve_under(found, str(folder_link / "secret.txt"), "file")


def test_paths_inside_a_root_resolve(roots):
    found = configured(f"k={roots['kaggle']}")
    inside = os.path.join(str(roots["kaggle"]), "images", "..", "labels_partial.csv")
    assert resolve_under(found, inside, "file") == str(roots["kaggle"] / "labels_partial.csv")
    assert resolve_under(found, str(roots["kaggle"] / "images"), "dir")
    with pytest.raises(DatasetError, match="no such file"):
        resolve_under(found, str(roots["kaggle"] / "none.csv"), "file")
    for empty in ("", "  ", "a\x00b"):
        with pytest.raises(DatasetError):
            resolve_under(found, empty)


def test_a_configured_dataset_never_follows_a_link_out_of_its_root(roots):
    (roots["flat"] / "labels.csv").unlink()
    (roots["flat"] / "labels.csv").symlink_to(roots["outside"] / "secret.txt")
    (roots["kaggle"] / "labels_partial.csv").unlink()
    (roots["kaggle"] / "pw.csv").symlink_to(roots["outside"] / "secret.txt")
    (roots["kaggle"] / "images").rmdir()
    (roots["kaggle"] / "images").symlink_to(roots["outside"], target_is_directory=True)
    flat, kaggle = configured(f"f={roots['flat']};k={roots['kaggle']}")[1:]
    assert not flat.labelled and not kaggle.labelled  # the linked-out CSVs are not read
    assert kaggle.images == str(roots["kaggle"])  # nor the linked-out image folder
