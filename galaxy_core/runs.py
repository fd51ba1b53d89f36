"""A run folder: it holds one run, one live writer at a time, and files that agree with each
other after a kill at any moment.

``fit`` writes each epoch in this order: the new best checkpoint, when the epoch improved, to
``best.pending.pt``; then ``last.pt``, the commit point; then ``best.pending.pt`` renamed to
``best.pt``; then ``history.json``. A kill before ``last.pt`` is replaced leaves the previous
epoch committed: resuming discards the pending best and trains the epoch again. A kill after
it leaves steps that ``settle`` completes from ``last.pt`` before anything else happens:
promote the pending best, rewrite the history. Every write goes through ``files.replacing``,
so a kill mid-write leaves the old file and a temporary one, which the next writer removes.

``writer_lock`` holds ``<out>/.lock`` (``fcntl.flock``) for the whole run, so a second run into
the folder, from any process or thread, is refused; the system releases it when the holder
dies, so a killed run leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil

from .checkpoint import CheckpointError, atomic_save, read_checkpoint
from .files import leftover_temporaries, replacing, write_json

log = logging.getLogger(__name__)

BEST, LAST, HISTORY, CURVES = "best.pt", "last.pt", "history.json", "curves.png"
PENDING_BEST = "best.pending.pt"
LOCK = ".lock"
HISTORY_INDENT = 1
# the files that make a folder a run's: a new run may not mix its files with them
RUN_FILES = (BEST, LAST, HISTORY)
# every file a run writes into its folder (curves.png: the CLI, after fit)
WRITTEN = (*RUN_FILES, PENDING_BEST, CURVES)


class RunFolderError(ValueError):
    """An output folder that a run may not write to (its ``--out`` value is the bad one)."""


@contextlib.contextmanager
def writer_lock(folder: str):
    """Hold ``folder``'s lock (creating the folder) for the block; ``RunFolderError`` when
    another run, in this process or another, holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK)
    with open(path, "a") as handle:  # closing it releases the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"{folder}: another training run is writing to this folder "
                                 f"right now (it holds {path}); wait for it to end or choose "
                                 f"another --out") from None
        yield


def is_own_last(folder: str, path: str) -> bool:
    """Whether ``path`` is ``folder``'s own ``last.pt`` (resuming it continues this folder's
    run rather than forking another folder's)."""
    own = os.path.join(folder, LAST)
    if os.path.exists(own) and os.path.exists(path):
        return os.path.samefile(own, path)
    return os.path.abspath(own) == os.path.abspath(path)


def claim(folder: str, resuming_own: bool, overwrite: bool) -> None:
    """Refuse a run that would mix its files with the run already in ``folder``: only that
    run resumed, or a run asked to overwrite it, may write there. Removes the temporary files
    killed writers left (the caller holds the lock, so none of them is alive)."""
    present = [name for name in RUN_FILES if os.path.isfile(os.path.join(folder, name))]
    if present and not resuming_own and not overwrite:
        raise RunFolderError(
            f"{folder}: already holds a run ({', '.join(present)}); continue it with "
            f"--resume auto, choose another --out, or pass --overwrite to replace it")
    for leftover in leftover_temporaries(folder, WRITTEN):
        log.info("removing %s, left by a run that was killed while writing", leftover)
        os.unlink(leftover)


def discard(folder: str) -> None:
    """Remove every file a run writes from ``folder``: before a new run that replaces the one
    there (``--overwrite``), or the pending best and curves a run killed in its first epoch
    left behind."""
    removed = [name for name in WRITTEN if os.path.exists(os.path.join(folder, name))]
    for name in removed:
        os.unlink(os.path.join(folder, name))
    if removed:
        log.warning("%s: removed %s: a new run starts here", folder, ", ".join(removed))


def best_epoch(state: dict) -> int | None:
    """The epoch whose weights ``best.pt`` must hold, as ``last.pt``'s ``state`` records it
    (None for a run that never improved, e.g. a loss that was NaN from the start)."""
    epoch = ((state.get("metrics") or {}).get("best") or {}).get("epoch")
    return None if epoch is None else int(epoch)


def _holds_best_of(path: str, state: dict) -> bool:
    """Whether checkpoint ``path`` is the best epoch of the run whose ``last.pt`` is ``state``."""
    if not os.path.isfile(path):
        return False
    try:
        raw = read_checkpoint(path)
    except CheckpointError:
        return False
    return (raw.get("epoch") == best_epoch(state)
            and (raw.get("run_id") or "") == (state.get("run_id") or ""))


def best_of_last(state: dict) -> dict:
    """``best.pt`` rebuilt from ``last.pt`` when its last epoch is its best: the same
    checkpoint without the optimiser and schedule."""
    return {**state, "optimizer_state": None, "scheduler_state": None}


def settle(folder: str, state: dict) -> None:
    """Complete what a kill interrupted after ``folder``'s ``last.pt`` (``state``) was
    committed: ``best.pt`` and ``history.json`` made to agree with it, and a pending best of a
    later, uncommitted epoch removed. ``RunFolderError`` when the best epoch's weights are
    nowhere to be found (the folder was edited by hand)."""
    best, pending = os.path.join(folder, BEST), os.path.join(folder, PENDING_BEST)
    wanted = best_epoch(state)
    if wanted is not None and not _holds_best_of(best, state):
        if _holds_best_of(pending, state):
            log.warning("%s: the run was stopped before its epoch %d best.pt was in place; "
                        "putting it there", folder, wanted)
            os.replace(pending, best)
        elif int(state.get("epoch", 0)) == wanted:
            log.warning("%s: best.pt is missing or not of epoch %d; rebuilding it from last.pt "
                        "(the same epoch)", folder, wanted)
            atomic_save(best_of_last(state), best)
        else:
            raise RunFolderError(
                f"{folder}: best.pt is missing or not the best epoch ({wanted}) that last.pt "
                f"records, and that epoch's weights are nowhere else; train the run again "
                f"with --overwrite")
    if os.path.exists(pending):
        log.info("%s: discarding the best of an epoch that was not committed", folder)
        os.unlink(pending)
    history = list(state.get("history", []))
    path = os.path.join(folder, HISTORY)
    if _read_text(path) != json.dumps(history, indent=HISTORY_INDENT):
        log.warning("%s: history.json does not hold last.pt's %d epochs; rewriting it",
                    folder, len(history))
        write_history(path, history)


def write_history(path: str, history: list) -> None:
    write_json(path, history, indent=HISTORY_INDENT)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def start_fork(folder: str, source: str, state: dict) -> None:
    """A run resumed from another folder's ``last.pt`` (``source``) into ``folder`` takes its
    best checkpoint along, as the pending best that its first committed epoch puts in place
    (or replaces, if that epoch improves), so a continued run has a ``best.pt`` even when it
    never improves."""
    wanted = best_epoch(state)
    if wanted is None:
        return
    pending = os.path.join(folder, PENDING_BEST)
    source_folder = os.path.dirname(os.path.abspath(source))
    for name in (BEST, PENDING_BEST):
        candidate = os.path.join(source_folder, name)
        if _holds_best_of(candidate, state):
            with replacing(pending, ".pt") as tmp:
                shutil.copyfile(candidate, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            return
    if int(state.get("epoch", 0)) == wanted:
        atomic_save(best_of_last(state), pending)
        return
    raise RunFolderError(f"{source_folder}: its best.pt is missing or not the best epoch "
                         f"({wanted}) that {source} records; resume that run in its own folder "
                         f"(--resume auto --out {source_folder}) to repair it first")
