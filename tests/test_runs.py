"""Run folders (galaxy_core/runs.py through ``fit``): kills at any moment leave files that
resuming completes, one run per folder, one writer at a time, no temporary files left."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from galaxy_core import runs
from galaxy_core.checkpoint import read_checkpoint
from galaxy_core.config import TrainConfig
from galaxy_core.jobs import JobBusy, TrainingJobs
from galaxy_core.runs import RunFolderError
from galaxy_core.training import fit

# small and quick: only the head trains, on 16 px inputs, in one thread
QUICK = dict(epochs=3, batch_size=8, lr=3e-3, seed=2, image_size=16, crop_fraction=1.0,
             augment="none", head="tree", workers=0, val_fraction=0.25, device="cpu",
             dropout=0.0, freeze_backbone=True)


def quick_config(folder, out, **overrides):
    return TrainConfig(images=folder["images"], labels=folder["labels"], out=str(out),
                       **{**QUICK, **overrides})


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way out handles it."""


def kill_at_rename(monkeypatch, folder, n):
    """From now on, the ``n``-th rename into ``folder`` (counting from 0) kills the run: the
    file being written is complete beside its target but never renamed, and a killed process
    removes nothing after that. Returns the count of renames so far (a list of one int)."""
    real_replace, real_unlink = os.replace, os.unlink
    renames, dead = [0], [False]

    def replace(source, target, *args, **kwargs):
        if os.path.dirname(os.path.abspath(target)) == str(folder):
            if renames[0] == n:
                dead[0] = True
                raise Killed()
            renames[0] += 1
        return real_replace(source, target, *args, **kwargs)

    def unlink(path, *args, **kwargs):
        if not dead[0]:
            real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    return renames


def best_epoch_of(history):
    return min(history, key=lambda h: h["val_rmse"])["epoch"]


def assert_consistent(out, reference):
    """What a finished run must hold: every epoch in last.pt and history.json, and best.pt
    the best of them, from the same run; no pending or temporary files."""
    last = read_checkpoint(out / "last.pt")
    best = read_checkpoint(out / "best.pt")
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [h["epoch"] for h in reference]
    assert [h["val_rmse"] for h in history] == pytest.approx(
        [h["val_rmse"] for h in reference], abs=1e-5)
    assert last["history"] == history and last["epoch"] == len(reference)
    assert best["epoch"] == best_epoch_of(history) == best_epoch_of(reference)
    assert best["run_id"] == last["run_id"] != ""
    assert best["metrics"]["best"]["val"]["rmse"] == pytest.approx(
        history[best["epoch"] - 1]["val_rmse"], abs=1e-9)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "best.pt", "history.json",
                                                      "last.pt"]


def test_a_kill_at_any_write_is_completed_by_resuming(galaxy_folder, tmp_path, monkeypatch):
    reference_out = tmp_path / "reference"
    with monkeypatch.context() as patch:
        renames = kill_at_rename(patch, reference_out, n=-1)  # counts, never kills
        reference = fit(quick_config(galaxy_folder, reference_out)).history
    improved = [h["epoch"] == best_epoch_of(reference[:h["epoch"]]) for h in reference]
    # epochs 1 and 2 improve (epoch 2 replaces a best.pt), epoch 3 does not: each improving
    # epoch writes a pending best, last.pt, best.pt, history.json; the other two files
    assert improved == [True, True, False] and renames[0] == 4 + 4 + 2
    for n in range(renames[0]):
        out = tmp_path / f"killed{n}"
        with monkeypatch.context() as patch:
            kill_at_rename(patch, out, n)
            with pytest.raises(Killed):
                fit(quick_config(galaxy_folder, out, resume="auto"))
        resumed = fit(quick_config(galaxy_folder, out, resume="auto"))
        assert not resumed.cancelled, n
        assert_consistent(out, reference)


def test_a_run_killed_by_sigkill_resumes_to_a_whole_run(galaxy_folder, tmp_path):
    """A real SIGKILL while last.pt is being written (a later epoch's, so a best.pt exists)."""
    out = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items()
             if k not in ("freeze_backbone", "epochs")]
    command = [sys.executable, "-m", "train.train", "--images", galaxy_folder["images"],
               "--labels", galaxy_folder["labels"], "--out", str(out), "--epochs", "4",
               "--freeze-backbone", "--resume", "auto", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=os.path.dirname(os.path.dirname(__file__)), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_during = None
    try:
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline:
            names = os.listdir(out) if out.is_dir() else []
            if "last.pt" in names and any(n.startswith(".last.pt.") for n in names):
                process.send_signal(signal.SIGKILL)
                killed_during = names
                break
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            process.kill()
        stderr = process.communicate()[1].decode()
    assert killed_during is not None, f"never caught writing last.pt: {stderr[-2000:]}"
    assert process.returncode == -signal.SIGKILL
    assert any(n.startswith(".last.pt.") for n in os.listdir(out))  # the orphan
    resumed = fit(quick_config(galaxy_folder, out, epochs=4, resume="auto"))
    reference = fit(quick_config(galaxy_folder, tmp_path / "reference", epochs=4)).history
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert_consistent(out, reference)


def test_resume_repairs_best_pt_when_it_can_and_says_so_when_it_cannot(galaxy_folder,
                                                                       tmp_path):
    """Runs written before this order saved last.pt first: a kill before best.pt left a
    best.pt of an earlier epoch than the best that last.pt records, and a history.json one
    epoch short. When last.pt's last epoch is its best, best.pt is rebuilt from it."""
    out = tmp_path / "run"
    reference = fit(quick_config(galaxy_folder, out, epochs=2)).history
    assert best_epoch_of(reference) == 2
    last = read_checkpoint(out / "last.pt")
    torch.save({**last, "epoch": 1, "optimizer_state": None}, out / "best.pt")
    (out / "history.json").write_text(json.dumps(reference[:1]))
    again = fit(quick_config(galaxy_folder, out, epochs=2, resume="auto"))
    assert again.best_path == str(out / "best.pt") and not again.cancelled
    assert_consistent(out, reference)
    best = read_checkpoint(out / "best.pt")
    assert best["optimizer_state"] is None
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())

    # the best epoch (2) is not the last (3) and its best.pt is gone: nothing to rebuild from
    out = tmp_path / "three"
    fit(quick_config(galaxy_folder, out, epochs=3))
    (out / "best.pt").unlink()
    with pytest.raises(RunFolderError, match=r"best.pt is missing or not the best epoch \(2\)"):
        fit(quick_config(galaxy_folder, out, epochs=3, resume="auto"))


def test_a_run_resumed_into_another_folder_takes_its_best_along(galaxy_folder, tmp_path):
    first = fit(quick_config(galaxy_folder, tmp_path / "a", epochs=2))
    assert best_epoch_of(first.history) == 2
    # epochs 3 and 4 do not improve: best.pt is still epoch 2's, now in b
    longer = fit(quick_config(galaxy_folder, tmp_path / "b", epochs=4, resume=first.last_path))
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    assert best_epoch_of(longer.history) == 2
    assert read_checkpoint(longer.best_path)["epoch"] == 2
    assert (read_checkpoint(longer.best_path)["run_id"]
            == read_checkpoint(longer.last_path)["run_id"]
            == read_checkpoint(first.last_path)["run_id"])


def test_a_new_run_into_a_folder_holding_a_run_is_refused_unless_asked_to_overwrite(
        galaxy_folder, tmp_path, capsys):
    from train.common import run_cli
    from train.train import main

    out = tmp_path / "run"
    fit(quick_config(galaxy_folder, out, epochs=2))
    old_run_id = read_checkpoint(out / "last.pt")["run_id"]
    before = {name: os.path.getmtime(out / name) for name in runs.RUN_FILES}
    events = []
    with pytest.raises(RunFolderError, match=r"already holds a run \(best.pt, last.pt, "
                                             r"history.json\).*--overwrite"):
        fit(quick_config(galaxy_folder, out, epochs=1), on_event=events.append)
    assert events == []  # refused before decoding a single image
    assert {name: os.path.getmtime(out / name) for name in runs.RUN_FILES} == before

    flags = ["--images", galaxy_folder["images"], "--labels", galaxy_folder["labels"],
             "--out", str(out), "--epochs", "1", "--image-size", "16", "--workers", "0",
             "--device", "cpu", "--freeze-backbone"]
    with pytest.raises(SystemExit) as exit_code:
        run_cli(lambda: main(flags))
    assert exit_code.value.code == 2
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr[-1].startswith(f"error: {out}: already holds a run")
    assert not any("Traceback" in line for line in stderr)

    # --resume auto with last.pt gone is a new run too: best.pt and history.json are another's
    (out / "last.pt").rename(tmp_path / "last.pt")
    with pytest.raises(RunFolderError, match=r"already holds a run \(best.pt, history.json\)"):
        fit(quick_config(galaxy_folder, out, epochs=2, resume="auto"))
    (tmp_path / "last.pt").rename(out / "last.pt")

    new = fit(quick_config(galaxy_folder, out, epochs=1, overwrite=True))
    assert [h["epoch"] for h in new.history] == [1]
    last, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    assert last["epoch"] == best["epoch"] == 1
    assert last["run_id"] == best["run_id"] != old_run_id
    assert json.loads((out / "history.json").read_text()) == new.history
    assert "overwrite" not in last["train_config"]  # how it started, not what the run is
    # and its own run continues without being asked to overwrite anything
    assert fit(quick_config(galaxy_folder, out, epochs=1, resume="auto")).history == new.history


def test_a_second_writer_is_refused_while_the_first_runs(galaxy_folder, tmp_path):
    out = tmp_path / "run"
    started, release = threading.Event(), threading.Event()
    outcome = {}

    def hold_at_start(event):
        if event.kind == "start":
            started.set()
            release.wait(60)

    def first_run():
        outcome["first"] = fit(quick_config(galaxy_folder, out, epochs=1),
                               on_event=hold_at_start)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert started.wait(60)
        for second in (quick_config(galaxy_folder, out, epochs=1),
                       quick_config(galaxy_folder, out, epochs=1, resume="auto"),
                       quick_config(galaxy_folder, out, epochs=1, overwrite=True)):
            with pytest.raises(RunFolderError, match=f"{out}: another training run is writing "
                                                     f"to this folder right now"):
                fit(second)
        jobs = TrainingJobs()  # the training page's job reports it as a failed run
        state = jobs.start(quick_config(galaxy_folder, out, epochs=1))
        jobs.wait(60)
        assert state.status == "failed" and "another training run is writing" in state.error
    finally:
        release.set()
        thread.join(60)
    assert [h["epoch"] for h in outcome["first"].history] == [1]
    assert read_checkpoint(out / "best.pt")["run_id"] == read_checkpoint(out / "last.pt")["run_id"]


def test_a_run_removes_the_temporary_files_killed_runs_left(galaxy_folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [".last.pt.0123456789ab.tmp.pt", ".best.pending.pt.abcdef012345.tmp.pt",
                 ".history.json.00000000000f.tmp", ".curves.png.123456abcdef.tmp.png"]
    kept = [".eval.json.0123456789ab.tmp", "notes.txt"]  # not this run's to remove
    for name in leftovers + kept:
        (out / name).write_bytes(b"x" * 10)
    fit(quick_config(galaxy_folder, out, epochs=1, resume="auto"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        kept + [".lock", "best.pt", "last.pt", "history.json"])


def test_one_training_job_at_a_time(galaxy_folder, tmp_path, monkeypatch):
    import galaxy_core.jobs as jobs_module

    release, calls = threading.Event(), []

    def slow_fit(config, on_event=None, should_stop=None):
        calls.append(config.out)
        release.wait(60)
        raise RuntimeError("not a real run")

    monkeypatch.setattr(jobs_module, "fit", slow_fit)
    jobs = TrainingJobs()
    first = jobs.start(quick_config(galaxy_folder, tmp_path / "a"))
    try:
        with pytest.raises(JobBusy, match="already in progress"):
            jobs.start(quick_config(galaxy_folder, tmp_path / "b"))
        assert jobs.state is first and first.running
    finally:
        release.set()
        jobs.wait(60)
    assert first.status == "failed" and calls == [str(tmp_path / "a")]
    jobs.start(quick_config(galaxy_folder, tmp_path / "c"))  # the finished one no longer blocks
    jobs.wait(60)
    assert calls == [str(tmp_path / "a"), str(tmp_path / "c")]


def test_a_run_without_validation_keeps_its_best_by_training_loss_across_a_resume(
        galaxy_folder, tmp_path):
    out = tmp_path / "run"
    config = quick_config(galaxy_folder, out, val_fraction=0.0, seed=1, resume="auto")
    epochs_done = []
    fit(config, on_event=lambda e: epochs_done.append(e) if e.kind == "epoch" else None,
        should_stop=lambda: bool(epochs_done))  # stopped during epoch 2
    assert len(epochs_done) == 1
    history = fit(config).history
    losses = [h["train_loss"] for h in history]
    assert losses[0] < min(losses[1:])  # epoch 1 stays the best, by training loss
    assert read_checkpoint(out / "best.pt")["epoch"] == 1
    assert read_checkpoint(out / "last.pt")["metrics"]["best"]["epoch"] == 1


def test_a_bad_input_is_reported_before_the_folder_is_claimed(galaxy_folder, tmp_path):
    from galaxy_core.data import DataError

    out = tmp_path / "run"
    with pytest.raises(DataError, match="not found"):
        fit(quick_config({**galaxy_folder, "labels": str(tmp_path / "missing.csv")}, out))
    assert not out.exists()
