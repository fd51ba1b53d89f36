"""Project-wide rules: galaxy_core never imports Streamlit; nothing retypes the schema."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_files(folder):
    for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def test_galaxy_core_does_not_import_streamlit():
    for path in python_files("galaxy_core"):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_answer_columns_are_typed_only_in_the_schema():
    pattern = re.compile(r"[\"']Class\d+\.\d+[\"']")
    for folder in ("galaxy_core", "pages", "train"):
        for path in python_files(folder):
            if path.endswith("schema.py"):
                continue
            assert not pattern.search(open(path).read()), f"{path} retypes an answer column"


def test_readme_starts_with_the_two_commands_and_stays_short():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme) < 12_000, f"README.md is {len(readme)} characters; move detail to docs/"
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split()[:2] for line in block] == [["make", "run"], ["make", "test"]]
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert os.path.isfile(os.path.join(ROOT, link)), f"README links to a missing {link}"


def test_the_served_app_neither_watches_its_files_nor_collects_after_every_run():
    """.streamlit/config.toml: no developer toolbar or usage statistics for visitors; no file
    watcher (it walked the checkout, .venv included, for every new visitor) and no full garbage
    collection after each run (both measured in bench.gradcam_browser's first render)."""
    import tomllib
    with open(os.path.join(ROOT, ".streamlit", "config.toml"), "rb") as f:
        config = tomllib.load(f)
    assert config["client"]["toolbarMode"] == "viewer"
    # an unforeseen error shows no traceback (it names server paths) to a visitor
    assert config["client"]["showErrorDetails"] in ("type", "none")
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["fileWatcherType"] == "none"
    assert config["runner"]["postScriptGC"] is False
