"""Train a ResNet18 on Galaxy Zoo vote fractions.

    python -m train.train --images DIR --labels CSV --out DIR [options]
    torchrun --nproc-per-node N -m train.train ...   (DistributedDataParallel; --batch-size is per process)

Saves best.pt, last.pt, history.json and curves.png in --out. A folder holds one run: a new run
into a folder that holds another is refused (--overwrite replaces it; --resume auto continues
it), as is a second run while one is writing there. A run killed at any moment is completed by
--resume auto.
"""

from __future__ import annotations

import argparse
import logging
import os

from tqdm import tqdm

from galaxy_core.distributed import distributed_session
from galaxy_core.config import TrainConfig, add_dataclass_flags, from_namespace
from galaxy_core.plots import save_training_curves
from galaxy_core.training import fit
from train.common import run_cli, setup_logging

log = logging.getLogger("train")


class ProgressPrinter:
    """Turns training events into a tqdm bar per phase and a log line per epoch."""

    def __init__(self):
        self.bar = None
        self.phase = None

    def __call__(self, event):
        if event.kind in ("decode", "step"):
            phase = (event.kind, event.message, event.epoch)
            if phase != self.phase:
                self.close()
                desc = event.message if event.kind == "decode" else \
                    f"epoch {event.epoch}/{event.epochs}"
                self.bar = tqdm(total=event.steps, desc=desc, unit="batch" if event.kind == "step"
                                else "img", leave=False, dynamic_ncols=True)
                self.phase = phase
            self.bar.update(event.step - self.bar.n)
            if event.kind == "step":
                self.bar.set_postfix(loss=f"{event.metrics['train_loss']:.4f}", refresh=False)
        elif event.kind == "start":
            self.close()
            m = event.metrics
            log.info("%s; %d training / %d validation galaxies; mean-prediction baseline "
                     "val RMSE %s", event.message, m["train_galaxies"], m["val_galaxies"],
                     f"{m['baseline_val_rmse']:.4f}" if m["baseline_val_rmse"] else "n/a")
        elif event.kind == "epoch":
            self.close()
            m = event.metrics
            val = f"val RMSE {m['val_rmse']:.4f}" if m.get("val_rmse") is not None else "no val"
            log.info("epoch %d/%d  train loss %.5f  %s%s  (%.0f s, %.1f img/s)", event.epoch,
                     event.epochs, m["train_loss"], val, "  *best*" if m["improved"] else "",
                     m["epoch_s"], m["train_images_per_s"])
        elif event.kind in ("done", "cancelled"):
            self.close()
            log.info("%s after %.0f s; best RMSE %.4f", event.kind, event.elapsed_s,
                     event.metrics["best_rmse"])

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.phase = None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    config = from_namespace(TrainConfig, args)
    with distributed_session(config.device) as (ctx, device):
        setup_logging(quiet=not ctx.is_main)
        printer = ProgressPrinter()
        try:
            result = fit(config, on_event=printer, ctx=ctx, device=device)
        finally:
            printer.close()
    if ctx.is_main and result.history:
        curves = save_training_curves(result.history, os.path.join(result.out_dir, "curves.png"))
        log.info("curves: %s", curves)
    log.info("best checkpoint: %s", result.best_path or "none")
    return 1 if result.cancelled else 0


if __name__ == "__main__":
    run_cli(main)
