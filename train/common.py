"""What every command-line tool shares: logging, the default model, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile

from tqdm import tqdm

from galaxy_core.checkpoint import CheckpointError
from galaxy_core.data import DataError
from galaxy_core.images import ImageError
from galaxy_core.model import PretrainedWeightsUnavailable
from galaxy_core.paths import DEFAULT_MODEL

EXPECTED_ERRORS = (CheckpointError, DataError, ImageError, PretrainedWeightsUnavailable,
                   ValueError, FileNotFoundError, PermissionError)


def read_json(path) -> dict:
    """A JSON file, or a DataError naming what is wrong with it."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def read_text(path) -> str:
    """A text file, or a DataError naming why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text file") from exc


class LazyBar:
    """A tqdm bar that appears on the first progress report (so early errors print alone)."""

    def __init__(self, desc: str, unit: str = "img"):
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """INFO to stderr; ``quiet`` (ranks other than 0 under torchrun) keeps warnings only."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")


def checkpoint_or_default(path: str | None) -> str:
    if path:
        return path
    if not os.path.isfile(DEFAULT_MODEL):
        raise FileNotFoundError(f"no --checkpoint given and the default model {DEFAULT_MODEL} "
                                f"is missing")
    return DEFAULT_MODEL


def check_output_file(path, flag: str = "--out", extensions=()) -> None:
    """Refuse, before any work, a file that could not be written: an empty name, a folder, a
    folder to put it in that is missing or not writable, or (with ``extensions``) a name that
    does not end in one of them."""
    if not path or not path.strip():
        raise ValueError(f"{flag} must name a file, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder; give the name of a file to write")
    if extensions and not path.lower().endswith(tuple(extensions)):
        raise ValueError(f"{flag} {path} must end in one of {', '.join(extensions)}")
    _check_writable_folder(os.path.dirname(os.path.abspath(path)), flag, path)


def check_output_folder(path, flag: str) -> None:
    """Refuse, before any work, a folder that could not be written into: an empty name, an
    existing file, or a new folder whose parent is missing or not writable."""
    if not path or not path.strip():
        raise ValueError(f"{flag} must name a folder, got {path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file, not a folder")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    _check_writable_folder(folder, flag, path)


def _check_writable_folder(folder, flag: str, path) -> None:
    """By writing, not by permission bits: root ignores those, and a read-only file system
    (or /proc, /sys) refuses writes the bits allow."""
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ValueError(f"{flag} {path}: the folder {folder} is not writable "
                         f"({exc.strerror or 'refused'})") from exc


def run_cli(main) -> None:
    """Run ``main()``; expected errors become one clear line on stderr and exit code 2."""
    try:
        code = main()
    except EXPECTED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
