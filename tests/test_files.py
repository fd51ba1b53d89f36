import json
import os

import pytest

from galaxy_core.files import (TEMPORARY_NAME, leftover_temporaries, replacing,
                                write_json, write_text)


def test_write_json_creates_the_folder_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "new" / "rows.json"
    write_json(path, [{"a": 1}])
    assert json.loads(path.read_text()) == [{"a": 1}]
    assert [p.name for p in path.parent.iterdir()] == ["rows.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "card.md"
    write_text(path, "old")
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of the new")
            raise RuntimeError("writer died")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]


def test_replacing_keeps_the_extension_writers_need(tmp_path):
    with replacing(tmp_path / "plot.png", ".png") as tmp:
        assert tmp.endswith(".png") and str(tmp_path) in tmp
        open(tmp, "wb").write(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_leftover_temporaries_are_the_ones_replacing_names_for_the_given_targets(tmp_path):
    with replacing(tmp_path / "last.pt", ".pt") as tmp:
        name = os.path.basename(tmp)
        assert TEMPORARY_NAME.fullmatch(name).group("name") == "last.pt"
        open(tmp, "wb").write(b"half")
        # what a kill here would leave
        assert leftover_temporaries(tmp_path, ("last.pt",)) == [str(tmp_path / name)]
        assert leftover_temporaries(tmp_path, ("best.pt",)) == []
    for other in (".history.json.0123456789ab.tmp", ".eval.json.0123456789ab.tmp",
                  ".last.pt.xyz.tmp.pt", "last.pt"):
        (tmp_path / other).write_text("x")
    assert leftover_temporaries(tmp_path, ("last.pt", "history.json")) == [
        str(tmp_path / ".history.json.0123456789ab.tmp")]
    assert leftover_temporaries(tmp_path / "missing", ("last.pt",)) == []
