"""Writing files so that a reader (the app, a resumed run, the next command) finds either the old
file or the complete new one, never half of one: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid

# what ``replacing`` names its temporary files: .<name>.<12 hex digits>.tmp<suffix>
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp(\.\w+)?")


@contextlib.contextmanager
def replacing(path, suffix: str = ""):
    """Yield a temporary path in ``path``'s folder (created if missing). When the block
    succeeds, the temporary file is renamed over ``path``; when it fails, it is removed and
    ``path`` is left as it was. ``suffix`` keeps the extension that writers such as ``np.save``
    or ``savefig`` go by."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> str:
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path


def write_json(path, obj, indent: int | None = 1) -> str:
    return write_text(path, json.dumps(obj, indent=indent))


def leftover_temporaries(folder, names) -> list[str]:
    """The temporary files that ``replacing`` left in ``folder`` for targets called one of
    ``names`` (a writer killed before it could rename or remove them). Only a caller that
    knows no writer of those targets is alive may remove them."""
    if not os.path.isdir(folder):
        return []
    found = []
    for entry in sorted(os.listdir(folder)):
        match = TEMPORARY_NAME.fullmatch(entry)
        if match and match.group("name") in names:
            found.append(os.path.join(folder, entry))
    return found
