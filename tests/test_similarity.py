"""Similarity search: embeddings, the index file, search, and the train.embed / train.similar
CLIs, on generated galaxies and an untrained 32 px model."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from galaxy_core import similarity
from galaxy_core.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from galaxy_core.similarity import (DIM, Embedder, SimilarityError, dataset_index_path,
                                    file_digest, load_index, search, update_index)
from tests.conftest import galaxy_image, make_loaded
from train import embed, similar
from train.common import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def folder(tmp_path):
    """8 distinct generated galaxies as <GalaxyID>.jpg."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        galaxy_image(i, size=64, elongation=1.0 + 0.4 * i).save(images / f"{200000 + i}.jpg")
    return images


@pytest.fixture
def built(tmp_path, folder, checkpoint_file):
    out = tmp_path / "index.npz"
    assert embed.main(["--checkpoint", checkpoint_file, "--images", str(folder),
                       "--out", str(out)]) == 0
    return out


def cli_error(main, argv, capsys) -> str:
    """The one line a CLI prints for bad input (exit code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: main(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def similar_rows(argv, capsys) -> list[dict]:
    capsys.readouterr()
    assert similar.main(argv) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_index_stores_float16_unit_vectors_with_ids_checkpoint_and_preprocessing(
        built, checkpoint_file):
    with np.load(built, allow_pickle=False) as arrays:
        assert arrays["vectors"].dtype == np.float16 and arrays["vectors"].shape == (8, DIM)
        assert list(arrays["galaxy_ids"]) == [str(200000 + i) for i in range(8)]
        norms = np.linalg.norm(arrays["vectors"].astype(np.float32), axis=1)
        assert np.allclose(norms, 1.0, atol=2e-3)
    index = load_index(built)
    assert index.checkpoint["sha256"] == file_digest(checkpoint_file)
    assert index.checkpoint["label"] == "model.pt"
    assert index.meta["preprocess"]["image_size"] == 32 and index.meta["format"] == similarity.FORMAT


def test_rerun_embeds_only_galaxies_not_yet_indexed(built, folder, checkpoint_file, monkeypatch):
    before = load_index(built)
    galaxy_image(50, size=64).save(folder / "300000.png")
    galaxy_image(51, size=64).save(folder / "300001.jpg")
    embedded = []
    original = Embedder.embed_files
    monkeypatch.setattr(Embedder, "embed_files", lambda self, sources, **kw: (
        embedded.extend(os.path.basename(s) for s in sources), original(self, sources, **kw))[1])
    assert embed.main(["--checkpoint", checkpoint_file, "--images", str(folder),
                       "--out", str(built)]) == 0
    assert sorted(embedded) == ["300000.png", "300001.jpg"]
    after = load_index(built)
    assert len(after) == 10 and after.galaxy_ids[-2:].tolist() == ["300000", "300001"]
    np.testing.assert_array_equal(after.vectors[:8], before.vectors)
    embedded.clear()
    mtime = os.path.getmtime(built)
    assert embed.main(["--checkpoint", checkpoint_file, "--images", str(folder),
                       "--out", str(built)]) == 0
    assert embedded == [] and os.path.getmtime(built) == mtime  # nothing new: file untouched


def other_checkpoint(tmp_path) -> str:
    model = make_loaded(head="plain", trained=("Class1.1",))
    path = tmp_path / "other.pt"
    atomic_save(make_checkpoint(model.net, model.preprocess, model.trained_columns, epoch=2,
                                metrics={}, history=[], data={}, train_config={}), path)
    return str(path)


def test_one_index_never_mixes_two_checkpoints(built, folder, tmp_path, capsys):
    other = other_checkpoint(tmp_path)
    before = built.read_bytes()
    line = cli_error(embed.main, ["--checkpoint", other, "--images", str(folder), "--out",
                                 str(built)], capsys)
    assert "model.pt" in line and "other.pt" in line and "one index holds one checkpoint" in line
    assert built.read_bytes() == before
    line = cli_error(similar.main, ["--index", str(built), "--image", str(folder),
                                    "--checkpoint", other], capsys)
    assert "other.pt" in line


def test_a_rotated_and_mirrored_galaxy_finds_its_original_first(built, folder, tmp_path,
                                                                checkpoint_file):
    turned = tmp_path / "turned"
    turned.mkdir()
    for path in sorted(folder.iterdir()):
        image = Image.open(path).transpose(Image.Transpose.ROTATE_90)
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(turned / f"{path.stem}.png")
    embedder = Embedder(load_checkpoint(checkpoint_file))
    index = load_index(built)
    kept, queries, errors = embedder.embed_files(sorted(str(p) for p in turned.iterdir()))
    assert not errors
    positions, distances = search(index, queries, 2)
    assert index.galaxy_ids[positions[:, 0]].tolist() == index.galaxy_ids.tolist()
    assert (distances[:, 0] < distances[:, 1]).all()


def test_folder_query_lists_k_neighbours_per_image_nearest_first(built, folder, checkpoint_file,
                                                                 capsys):
    rows = similar_rows(["--index", str(built), "--image", str(folder), "--k", "3",
                         "--checkpoint", checkpoint_file], capsys)
    assert list(rows[0]) == ["query", "rank", "GalaxyID", "distance"]
    assert len(rows) == 8 * 3
    for i in range(8):
        mine = rows[3 * i: 3 * i + 3]
        assert [r["rank"] for r in mine] == ["1", "2", "3"]
        assert mine[0]["query"] == f"{200000 + i}.jpg" and mine[0]["GalaxyID"] == str(200000 + i)
        assert float(mine[0]["distance"]) < 1e-4
        assert [float(r["distance"]) for r in mine] == sorted(float(r["distance"]) for r in mine)


def test_galaxy_id_query_finds_itself_at_distance_zero_without_loading_a_model(built, capsys,
                                                                               monkeypatch):
    monkeypatch.setattr(similar, "load_checkpoint", lambda *a: pytest.fail("model loaded"))
    rows = similar_rows(["--index", str(built), "--image", "200003", "--k", "20"], capsys)
    assert len(rows) == 8  # k beyond the index: every galaxy once
    assert rows[0]["GalaxyID"] == "200003" and rows[0]["distance"] == "0.000000"
    assert sorted(r["GalaxyID"] for r in rows) == [str(200000 + i) for i in range(8)]


def test_search_orders_by_cosine_distance_and_breaks_ties_by_position():
    index = similarity.with_added(similarity.new_index({"sha256": "x", "label": "x"},
                                                       make_loaded().preprocess),
                                  ["a", "b", "c", "d"], np.eye(4, DIM, dtype=np.float32)[[0, 1, 1, 2]])
    positions, distances = search(index, np.eye(1, DIM, 1), 3)
    assert positions.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(distances, [[0.0, 0.0, 1.0]], atol=1e-6)
    with pytest.raises(SimilarityError, match="k must be >= 1, got 0"):
        search(index, np.eye(1, DIM), 0)


def test_bad_inputs_are_one_clear_error_line(built, folder, tmp_path, checkpoint_file, capsys):
    missing = str(tmp_path / "none.npz")
    assert "index not found" in cli_error(similar.main, ["--index", missing, "--image", "1"],
                                          capsys)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"SECRET-TEXT " * 100)
    line = cli_error(similar.main, ["--index", str(garbage), "--image", "1"], capsys)
    assert "not a similarity index" in line and "SECRET" not in line
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, vectors=np.array([{"a": 1}], dtype=object), galaxy_ids=np.array(["1"]),
             meta=np.array("{}"))
    assert "never unpickled" in cli_error(similar.main, ["--index", str(pickled), "--image",
                                                         "1"], capsys)
    line = cli_error(similar.main, ["--index", str(built), "--image", "999"], capsys)
    assert "999" in line and "neither an image file, a folder, nor a GalaxyID" in line
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    assert "broken.jpg" in cli_error(similar.main, ["--index", str(built), "--image",
                                                    str(broken), "--checkpoint",
                                                    checkpoint_file], capsys)
    assert "--k must be >= 1, got 0" in cli_error(
        similar.main, ["--index", str(built), "--image", "200001", "--k", "0"], capsys)
    assert "must end in one of .npz" in cli_error(
        embed.main, ["--images", str(folder), "--out", str(tmp_path / "x.csv")], capsys)
    assert "image folder not found" in cli_error(
        embed.main, ["--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")],
        capsys)


def test_dataset_index_files_stay_in_the_index_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(similarity.INDEX_DIR_ENV, str(tmp_path / "indexes"))
    identity = {"sha256": "ab" * 32, "label": "m.pt"}
    for name in ("../../etc/passwd", "/tmp/x", "Kaggle sample", "Kaggle-sample", ""):
        path = dataset_index_path(name, identity)
        assert os.path.dirname(path) == str(tmp_path / "indexes")
        assert os.path.basename(path).endswith(f"-{'ab' * 6}.npz")
    assert dataset_index_path("Kaggle sample", identity) != dataset_index_path("Kaggle-sample",
                                                                               identity)


def test_update_index_keeps_unreadable_images_out(tmp_path, folder, checkpoint_file):
    (folder / "400000.jpg").write_bytes(b"broken")
    embedder = Embedder(load_checkpoint(checkpoint_file))
    index, added, errors = update_index(embedder, str(folder), str(tmp_path / "i.npz"))
    assert added == 8 and len(errors) == 1 and "400000.jpg" in errors[0][0]
    assert "400000" not in index.galaxy_ids.tolist()


def test_the_clis_run_as_commands(tmp_path, folder, checkpoint_file):
    out = tmp_path / "cmd.npz"
    done = subprocess.run([sys.executable, "-m", "train.embed", "--checkpoint", checkpoint_file,
                           "--images", str(folder), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "train.similar", "--index", str(out),
                           "--image", "200002", "--k", "2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["query,rank,GalaxyID,distance",
                                            "200002,1,200002,0.000000"]


def test_embed_dataset_writes_the_index_where_the_app_looks(tmp_path, folder, checkpoint_file,
                                                            monkeypatch, capsys):
    monkeypatch.setenv("GALAXY_DATASETS", f"Extra={folder.parent}")
    monkeypatch.setenv(similarity.INDEX_DIR_ENV, str(tmp_path / "indexes"))
    assert embed.main(["--checkpoint", checkpoint_file, "--dataset", "Extra"]) == 0
    expected = dataset_index_path("Extra", similarity.checkpoint_identity(checkpoint_file))
    assert len(load_index(expected)) == 8
    assert "no dataset named 'Nope'" in cli_error(
        embed.main, ["--checkpoint", checkpoint_file, "--dataset", "Nope"], capsys)
    assert "not both" in cli_error(embed.main, ["--dataset", "Extra", "--out", "x.npz"], capsys)


# ---- approximate search (faiss) past EXACT_LIMIT, here lowered to 100 galaxies ----------------

def vectors_index(vectors) -> similarity.SimilarityIndex:
    return similarity.SimilarityIndex(np.arange(len(vectors)).astype(str),
                                      similarity.unit_rows(vectors), {"checkpoint": {}})


def clustered(n: int, clusters: int, seed: int) -> np.ndarray:
    """Galaxy-like data: ``clusters`` random centres (the same for every seed), each point one of
    them plus noise as long (neighbours share a centre; unstructured noise has no neighbourhoods
    to find)."""
    centres = similarity.unit_rows(np.random.default_rng(0).standard_normal((clusters, DIM)))
    noise = np.random.default_rng(seed).standard_normal((n, DIM)) / np.sqrt(DIM)
    return similarity.unit_rows(centres[np.arange(n) % clusters] + noise)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


@pytest.fixture
def small_limit(monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(similarity, "EXACT_LIMIT", 100)


def test_approximate_search_keeps_the_exact_conventions_and_finds_each_galaxy_first(small_limit):
    vectors = similarity.unit_rows(np.random.default_rng(0).standard_normal((500, DIM)))
    index = vectors_index(vectors)
    positions, distances = search(index, vectors, 10)
    assert index._approximate is not None  # auto went approximate past the limit
    assert positions.shape == distances.shape == (500, 10) and positions.dtype == np.int64
    assert (positions[:, 0] == np.arange(500)).all() and (distances[:, 0] < 1e-5).all()
    assert (np.diff(distances, axis=1) >= 0).all() and (distances >= 0).all()
    assert (distances <= 2).all()
    cosines = np.einsum("qd,qkd->qk", index.vectors, index.vectors[positions])
    np.testing.assert_allclose(distances, np.clip(1 - cosines, 0, 2), atol=1e-5)
    assert all(len(set(row)) == 10 for row in positions.tolist())


def test_approximate_search_recalls_the_exact_neighbours_of_clustered_galaxies(small_limit):
    index = vectors_index(clustered(500, 20, seed=1))
    queries = clustered(100, 20, seed=2)  # new galaxies near the same centres
    exact, _ = search(index, queries, 10, method="exact")
    assert index._approximate is None
    found, _ = search(index, queries, 10)
    assert recall_at(found, exact) >= 0.9


def test_exact_method_stays_exact_past_the_limit(small_limit):
    vectors = similarity.unit_rows(np.random.default_rng(3).standard_normal((300, DIM)))
    index = vectors_index(vectors)
    positions, distances = search(index, vectors[:20], 7, method="exact")
    sims = vectors[:20] @ index.vectors.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    assert positions.tolist() == expected.tolist() and index._approximate is None
    np.testing.assert_allclose(distances, 1 - np.take_along_axis(sims, expected, 1), atol=1e-6)


def test_approximate_search_with_k_beyond_the_index_lists_every_galaxy_as_exact_does(
        small_limit):
    vectors = clustered(200, 10, seed=4)
    index = vectors_index(vectors)
    positions, distances = search(index, vectors[:3], 500, method="approximate")
    exact_positions, exact_distances = search(index, vectors[:3], 500, method="exact")
    assert positions.shape == (3, 200)
    assert positions.tolist() == exact_positions.tolist()
    np.testing.assert_allclose(distances, exact_distances, atol=1e-6)


def test_the_approximate_index_is_built_once_for_sessions_searching_together(small_limit,
                                                                            monkeypatch):
    built = []
    real_build = similarity._build_ivf
    monkeypatch.setattr(similarity, "_build_ivf", lambda faiss, vectors: (
        built.append(1), time.sleep(0.2), real_build(faiss, vectors))[2])
    index = vectors_index(clustered(300, 10, seed=5))
    results = []
    threads = [threading.Thread(
        target=lambda: results.append(search(index, index.vectors[:5], 3))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [1] and len(results) == 4
    assert all(r[0].tolist() == results[0][0].tolist() for r in results)


def test_without_faiss_search_stays_exact_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(similarity, "EXACT_LIMIT", 100)
    monkeypatch.setattr(similarity, "_missing_faiss_warned", False)
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    vectors = clustered(300, 10, seed=6)
    index = vectors_index(vectors)
    exact = search(index, vectors[:10], 5, method="exact")
    with caplog.at_level("WARNING", logger="galaxy_core.similarity"):
        first = search(index, vectors[:10], 5)
        second = search(index, vectors[:10], 5)
    for positions, distances in (first, second):
        assert positions.tolist() == exact[0].tolist()
        np.testing.assert_array_equal(distances, exact[1])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "faiss is not installed" in warnings[0]
    assert "300 galaxies are searched exactly" in warnings[0]
    with pytest.raises(SimilarityError, match="approximate search needs faiss"):
        search(index, vectors[:1], 5, method="approximate")


def test_a_bad_search_method_is_a_clear_error(capsys):
    index = vectors_index(clustered(20, 2, seed=7))
    with pytest.raises(SimilarityError,
                       match="must be one of auto, exact, approximate, got 'fast'"):
        search(index, index.vectors[:1], 3, method="fast")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        similar.main(["--index", "index.npz", "--image", "200001", "--search", "fast"])
    assert stop.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err


def test_similar_cli_searches_approximately_when_asked(built, capsys):
    pytest.importorskip("faiss")
    argv = ["--index", str(built), "--image", "200004", "--k", "3"]
    exact = similar_rows(argv + ["--search", "exact"], capsys)
    approximate = similar_rows(argv + ["--search", "approximate"], capsys)
    assert approximate[0]["GalaxyID"] == "200004" and len(approximate) == 3
    assert [r["GalaxyID"] for r in approximate] == [r["GalaxyID"] for r in exact]


def test_a_wide_field_query_is_framed_as_the_index_galaxies_were(tmp_path, folder,
                                                                 checkpoint_file, capsys):
    """An index frames its galaxies first (the default, as train.predict and Classify do) and
    its image queries the same way: a wide field of an indexed galaxy is zoomed in on and finds
    it first. An index built without framing, or before indexes recorded it, is queried with
    the images as they are, so each indexed image still finds itself."""
    from tests.test_framing import kaggle_like
    kaggle_like(0.0774, seed=1).save(folder / "300000.png")
    wide = tmp_path / "wide.png"
    kaggle_like(0.0774 / 2.5, seed=1).save(wide)  # the same galaxy, 2.5x smaller in its frame
    framed, plain = tmp_path / "framed.npz", tmp_path / "plain.npz"
    common = ["--checkpoint", checkpoint_file, "--images", str(folder)]
    assert embed.main([*common, "--out", str(framed)]) == 0
    assert embed.main([*common, "--out", str(plain), "--no-frame"]) == 0
    assert load_index(framed).meta["framed"] is True and load_index(plain).meta["framed"] is False
    assert similarity.framing_of(load_index(plain)) is None

    def nearest(index):
        rows = similar_rows(["--index", str(index), "--image", str(wide), "--checkpoint",
                             checkpoint_file, "--k", "9"], capsys)
        return {row["GalaxyID"]: float(row["distance"]) for row in rows}

    with_framing, without = nearest(framed), nearest(plain)
    assert min(with_framing, key=with_framing.get) == "300000"
    assert with_framing["300000"] < without["300000"]
    # an image the framing moves finds itself in an index built with the same framing
    rows = similar_rows(["--index", str(framed), "--image", str(folder / "300000.png"),
                         "--checkpoint", checkpoint_file, "--k", "1"], capsys)
    assert rows[0]["GalaxyID"] == "300000" and float(rows[0]["distance"]) < 1e-3
    # an index from before 2026-12-02 has no "framed": its queries are not framed
    old = load_index(plain)
    del old.meta["framed"]
    assert similarity.framing_of(old) is None and similarity.frames_unlike_default(old)
    # extending an index keeps its choice; --rebuild embeds every galaxy again with the new one
    assert embed.main([*common, "--out", str(plain)]) == 0
    assert load_index(plain).meta["framed"] is False
    assert embed.main([*common, "--out", str(plain), "--rebuild"]) == 0
    rebuilt = load_index(plain)
    assert rebuilt.meta["framed"] is True and len(rebuilt) == len(old)
    assert not similarity.frames_unlike_default(rebuilt)
