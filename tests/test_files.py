import json

import pytest

from galaxy_core.files import replacing, write_json, write_text


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
