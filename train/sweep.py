"""Train several recipe variants at once on one machine (one GPU shared, typically) and score
each on the galaxies its split held out: the tool behind the model card's GPU rows.

    python -m train.sweep --images DIR --labels CSV --out runs/sweep \\
        --common "--crop-fraction 0.5 --augment full --head tree --schedule onecycle" \\
        --variant s0_128="--image-size 128 --seed 0" --variant s1_128="--image-size 128 --seed 1" \\
        --variant all_128="--image-size 128 --val-fraction 0" [--epochs 85] [--budget-s 400]

Each variant is a `python -m train.train` process with the common flags, then its own. With
--budget-s alone, every variant first trains 3 epochs at once (a probe), and all then get the
same epoch count that fits the budget at the slowest one's pace. With --epochs and --budget-s,
the budget is a hard stop: a run still going then is stopped, scored as it is and named as
stopped (never a learning-curve point), so a time-limited machine still returns what finished.
Runs with a validation split are then scored as `train.evaluate --split val --tta-json` scores
them (one view and the 8-view average), in the sweep's own process.
Writes <out>/variants.json: one row per scored run in the model card's variants format, plus
every run's folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import time

from galaxy_core.checkpoint import CheckpointError, read_checkpoint
from galaxy_core.config import TrainConfig, add_dataclass_flags, from_namespace
from galaxy_core.device import describe, select_device
from galaxy_core.files import write_json
from train.common import EXPECTED_ERRORS, read_json, run_cli, setup_logging

log = logging.getLogger("sweep")

PROBE_EPOCHS = 3
RESERVED = {"--images", "--labels", "--out", "--epochs"}  # set by the sweep itself


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, flags = text.partition("=")
    if not sep or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"--variant must look like NAME=\"--flag value ...\", got {text!r}")
    return name, shlex.split(flags)


def check_flags(flags: list[str], label: str) -> TrainConfig:
    """Parse ``flags`` exactly as train.train would, so a typo fails before anything runs."""
    for flag in flags:
        if flag.split("=")[0] in RESERVED:
            raise ValueError(f"{label}: {flag.split('=')[0]} is set by the sweep")
    parser = argparse.ArgumentParser(prog=label, add_help=False, exit_on_error=False)
    add_dataclass_flags(parser, TrainConfig)
    try:
        namespace, unknown = parser.parse_known_args(
            flags + ["--images", ".", "--labels", "."])
    except argparse.ArgumentError as exc:
        raise ValueError(f"{label}: {exc}") from exc
    if unknown:
        raise ValueError(f"{label}: unknown flag(s) {' '.join(unknown)}")
    return from_namespace(TrainConfig, namespace)


def epochs_done(out: str) -> int:
    try:
        with open(os.path.join(out, "history.json")) as handle:
            return len(json.load(handle))
    except (OSError, ValueError):
        return 0


def training_galaxies(run: str) -> int | None:
    """How many galaxies the run trained on, as its best checkpoint records."""
    try:
        return read_checkpoint(os.path.join(run, "best.pt"))["data"]["train_galaxies"]
    except (CheckpointError, KeyError, TypeError):
        return None


def log_tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "\n".join(handle.read().replace("\r", "\n").splitlines()[-lines:])
    except OSError as exc:
        return str(exc)


class Sweep:
    def __init__(self, args, variants: dict):
        self.args, self.variants = args, variants
        self.env = {**os.environ, "OMP_NUM_THREADS": str(args.threads_per_run),
                    "PYTHONUNBUFFERED": "1"}

    def launch(self, name: str, out: str, epochs: int) -> subprocess.Popen:
        os.makedirs(out, exist_ok=True)
        command = [sys.executable, "-m", "train.train", "--images", self.args.images,
                   "--labels", self.args.labels, *self.common, *self.variants[name],
                   "--epochs", str(epochs), "--out", out,
                   "--overwrite"]  # a sweep's folders are its own: a rerun replaces its runs
        with open(os.path.join(out, "train.log"), "w") as log_file:
            return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=self.env)

    @property
    def common(self) -> list[str]:
        return shlex.split(self.args.common)

    def run_all(self, folder: str, epochs: int, deadline: float | None = None,
                on_epoch=None) -> dict:
        """Run every variant at once; returns name -> exit code (None: stopped at deadline)."""
        procs = {n: self.launch(n, os.path.join(folder, n), epochs) for n in self.variants}
        reported = 0.0
        while any(p.poll() is None for p in procs.values()):
            if deadline is not None and time.time() > deadline:
                log.warning("time budget spent: stopping the runs still going")
                for p in procs.values():
                    if p.poll() is None:
                        p.terminate()
                break
            if on_epoch is not None:
                on_epoch()
            if time.time() - reported > 30:
                reported = time.time()
                log.info("epochs done: %s", {n: epochs_done(os.path.join(folder, n))
                                             for n in procs})
            time.sleep(0.1)
        codes = {}
        for name, p in procs.items():
            try:
                codes[name] = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = None
        return codes

    def probe(self) -> float:
        """Seconds per epoch of the slowest variant while all share the machine."""
        folder = os.path.join(self.args.out, "probe")
        marks = {n: {} for n in self.variants}

        def mark():
            for name in self.variants:
                done = epochs_done(os.path.join(folder, name))
                marks[name].setdefault(done, time.time())

        codes = self.run_all(folder, PROBE_EPOCHS, on_epoch=mark)
        paces = {}
        for name, code in codes.items():
            if code != 0 or 1 not in marks[name] or PROBE_EPOCHS not in marks[name]:
                raise RuntimeError(f"probe run {name} failed:\n"
                                   + log_tail(os.path.join(folder, name, "train.log")))
            paces[name] = (marks[name][PROBE_EPOCHS] - marks[name][1]) / (PROBE_EPOCHS - 1)
        log.info("seconds per epoch with all %d sharing: %s", len(paces),
                 {n: round(v, 2) for n, v in paces.items()})
        return max(paces.values())

    def evaluate(self, name: str) -> tuple[dict | None, dict | None]:
        """``train.evaluate --split val --tta-json`` of a finished run (one view and the
        8-view average from one pass), in this process: the runs have stopped, so it has the
        machine, and a fresh process would only import torch again."""
        from train.evaluate import main as evaluate_main
        run = os.path.join(self.args.out, "runs", name)
        plain, tta = (os.path.join(run, f"{tag}.json") for tag in ("eval", "eval_tta"))
        try:
            with open(os.path.join(run, "eval.log"), "w") as log_file, \
                    contextlib.redirect_stdout(log_file):
                evaluate_main(["--checkpoint", os.path.join(run, "best.pt"), "--images",
                               self.args.images, "--labels", self.args.labels, "--split", "val",
                               "--json", plain, "--tta-json", tta])
        except EXPECTED_ERRORS as exc:
            log.warning("evaluating %s failed: %s", name, exc)
            return None, None
        return read_json(plain)["model"], read_json(tta)["model"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--common", default="", help="train.train flags shared by all variants")
    parser.add_argument("--variant", action="append", required=True, metavar='NAME="FLAGS"',
                        help="one variant: its name and its own train.train flags")
    parser.add_argument("--epochs", type=int, help="epochs for every variant")
    parser.add_argument("--budget-s", type=float,
                        help="seconds for probing and training; epochs are chosen to fit. With "
                             "--epochs, a hard limit instead (a GPU lease, say): runs still "
                             "going then are stopped, and scored as they are, marked stopped")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--threads-per-run", type=int, default=2, help="CPU threads per run")
    parser.add_argument("--hardware", default="", help="described in variants.json "
                        "(default: the device the common flags select)")
    parser.add_argument("--learning-curve", default="", metavar="LABEL",
                        help="tag every row as one point of the learning curve LABEL (variants "
                             "that differ only in --train-fraction); the model card plots it "
                             "and extrapolates to the all-data model")
    args = parser.parse_args(argv)
    if args.epochs is None and args.budget_s is None:
        parser.error("give --epochs, --budget-s or both")
    setup_logging()
    started = time.time()
    variants = dict(parse_variant(v) for v in args.variant)
    if len(variants) != len(args.variant):
        raise ValueError("two variants have the same name")
    configs = {name: check_flags(shlex.split(args.common) + flags, f"variant {name}")
               for name, flags in variants.items()}
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    sweep = Sweep(args, variants)
    epochs = args.epochs
    if epochs is None:
        pace = sweep.probe()
        left = args.budget_s - (time.time() - started)
        epochs = max(1, min(args.max_epochs, int(left / (pace * 1.1))))
        log.info("%.0f s left at %.2f s per epoch: %d epochs", left, pace, epochs)
    deadline = started + args.budget_s if args.budget_s else None
    codes = sweep.run_all(os.path.join(args.out, "runs"), epochs, deadline)
    any_device = next(iter(configs.values())).device
    hardware = args.hardware or describe(select_device(any_device))
    rows = []
    for name, config in configs.items():
        run = os.path.join(args.out, "runs", name)
        history = []
        if os.path.exists(os.path.join(run, "history.json")):
            history = read_json(os.path.join(run, "history.json"))
        log.info("%s: exit %s, %d epochs", name, codes[name], len(history))
        if codes[name] != 0:
            log.warning("%s:\n%s", name, log_tail(os.path.join(run, "train.log")))
        if config.val_fraction == 0 or not os.path.exists(os.path.join(run, "best.pt")):
            continue
        plain, tta = sweep.evaluate(name)
        finished = len(history) >= epochs
        rows.append({"name": name if finished else
                     f"{name} (stopped at epoch {len(history)} of {epochs})",
                     "epochs": len(history), "split_seed": config.seed,
                     "best_val_rmse": plain and plain["rmse"], "tta_rmse": tta and tta["rmse"],
                     "tta_views": tta and tta.get("tta_views"),
                     "hardware": f"{hardware} ({len(variants)} runs sharing it)",
                     "minutes": sum(h.get("epoch_s", 0) for h in history) / 60,
                     "train_galaxies": training_galaxies(run),
                     "config": dataclasses.asdict(config)})
        if args.learning_curve and finished:  # a stopped run is not the recipe's point
            rows[-1]["learning_curve"] = args.learning_curve
        log.info("%-24s val RMSE %s, with TTA %s", name, plain and f"{plain['rmse']:.4f}",
                 tta and f"{tta['rmse']:.4f}")
    path = os.path.join(args.out, "variants.json")
    write_json(path, rows)
    log.info("wrote %s", path)
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    run_cli(main)
