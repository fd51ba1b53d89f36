"""Export a training checkpoint for shipping: no optimiser state, optionally half precision.

    python -m train.export --checkpoint runs/x/best.pt --out assets/models/galaxy_resnet18.pt --half

With --half the weights are stored as float16 and the export is refused unless predictions
on the check images (default: the shipped samples) change by less than --tolerance.

A model trained on all labelled galaxies (--val-fraction 0) has no held-out galaxies of its
own; --heldout attaches the validation of its recipe instead: `train.evaluate --split val
--json` outputs of the same recipe trained on other splits (with --heldout-tta, their --tta
twins, in the same order), each of the run's final epoch (last.pt) like the model it stands
for. Runs whose recorded recipe differs, or scores of an earlier epoch, are refused.

A model fine-tuned in stages (``--init-from``) whose last stage was not itself run on the
splits can carry the validation of an earlier stage instead: --heldout-stage 1 checks the
evaluations against the recipe of its first stage, and the app and the card then say that the
scores are of the model before its fine-tune. --intervals-from copies the calibrated intervals of
that earlier stage's exported file (which must be one of this model's stages), saying so too.
"""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from galaxy_core import paths
from galaxy_core.checkpoint import (half_precision_state, load_checkpoint, read_checkpoint,
                                   save_synced, stage_of, training_stages)
from galaxy_core.data import DataError, list_images
from galaxy_core.evaluate import heldout_split, recipe_differences
from galaxy_core.files import replacing
from galaxy_core.predict import predict_files
from train.common import read_json, run_cli, setup_logging

log = logging.getLogger("export")


def final_epoch_only(path: str, evaluation: dict) -> None:
    """The model these scores stand for was trained on all galaxies and stops at its final
    epoch; best.pt is the epoch that scored best on the very galaxies being scored, which makes
    its score optimistic. So only a run's final epoch (last.pt) may stand in."""
    epoch, epochs = evaluation.get("epoch"), (evaluation.get("train_config") or {}).get("epochs")
    if epoch is not None and epochs is not None and epoch != epochs:
        raise DataError(f"{path} scores epoch {epoch} of {epochs}: score the run's final epoch "
                        f"(last.pt), not the epoch chosen on its own validation galaxies")


def recipe_validation(train_config: dict, heldout: list, heldout_tta: list) -> dict:
    if heldout_tta and len(heldout_tta) != len(heldout):
        raise DataError(f"--heldout-tta needs one file per --heldout file "
                        f"({len(heldout_tta)} for {len(heldout)})")
    splits = []
    for i, path in enumerate(heldout):
        evaluation = read_json(path)
        split = heldout_split(evaluation, read_json(heldout_tta[i]) if heldout_tta else None)
        recipe = evaluation.get("train_config")
        final_epoch_only(path, evaluation)
        if recipe:
            differences = recipe_differences(train_config, recipe)
            if differences:
                raise DataError(f"{path} evaluates another recipe (differs in "
                                f"{', '.join(differences)})")
        else:
            log.warning("%s does not record its training recipe; not checked", path)
        splits.append(split)
        log.info("held-out split (seed %s): RMSE %.4f", split["split_seed"],
                 split["model"]["rmse"])
    return {"splits": splits}


def validated_stage(stages: list, stage: int | None) -> tuple[int, dict]:
    """Of a checkpoint's ``training_stages``, the one (1 = the first) whose recipe held-out
    evaluations must match, and that recipe; ``None``: the checkpoint's own run, its last."""
    stage = len(stages) if stage is None else stage
    if not 1 <= stage <= len(stages):
        raise DataError(f"--heldout-stage {stage}: this checkpoint was trained in "
                        f"{len(stages)} stage{'s' if len(stages) > 1 else ''}")
    return stage, stages[stage - 1]["train_config"]


def intervals_of_stage(stages: list, path: str) -> dict:
    """The intervals of ``path``, an exported model that is one of the earlier of a checkpoint's
    ``training_stages``, marked as calibrated for that stage."""
    earlier = read_checkpoint(path)
    intervals = earlier.get("intervals")
    if not intervals:
        raise DataError(f"{path} carries no calibrated intervals")
    mine = stage_of(earlier)
    number = next((i for i, s in enumerate(stages[:-1], 1)
                   if (s["train_config"], s["epoch"], s["created"]) ==
                   (mine["train_config"], mine["epoch"], mine["created"])), None)
    if number is None:
        raise DataError(f"{path} is not one of the stages this checkpoint was fine-tuned from, "
                        f"so its intervals are not this model's")
    return {**intervals, "stage": number,
            "source": f"{intervals.get('source', '')}; calibrated for training stage {number} "
                      f"of {len(stages)} (the model before its fine-tune) and carried over "
                      f"unchanged"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--half", action="store_true",
                        help="store the residual blocks' convolution weights as float16")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--check-images", default=paths.SAMPLE_IMAGES)
    parser.add_argument("--heldout", nargs="+", default=[], metavar="EVAL_JSON",
                        help="held-out evaluations of the same recipe on other splits")
    parser.add_argument("--heldout-tta", nargs="+", default=[], metavar="EVAL_JSON",
                        help="the same evaluations with --tta, in the same order")
    parser.add_argument("--heldout-stage", type=int, metavar="N",
                        help="the training stage (1 = the first) whose recipe the --heldout "
                             "runs repeat (default: the last, the checkpoint's own run)")
    parser.add_argument("--intervals-from", metavar="EXPORTED_PT",
                        help="copy the calibrated intervals of this exported model, one of "
                             "the stages this checkpoint was fine-tuned from")
    args = parser.parse_args(argv)
    setup_logging()
    raw = read_checkpoint(args.checkpoint)
    original = load_checkpoint(args.checkpoint)  # validates the file first
    raw = {k: v for k, v in raw.items() if k not in ("optimizer_state", "scheduler_state")}
    if args.heldout_stage is not None and not args.heldout:
        raise DataError("--heldout-stage says which stage the --heldout runs repeat: give them")
    stages = training_stages(raw)
    if args.intervals_from:
        raw["intervals"] = intervals_of_stage(stages, args.intervals_from)
    if args.heldout:
        stage, recipe = validated_stage(stages, args.heldout_stage)
        raw["recipe_validation"] = recipe_validation(recipe, args.heldout, args.heldout_tta)
        raw["recipe_validation"].update(stage=stage, stages=len(stages))
    if args.half:
        raw["state_dict"] = half_precision_state(raw["state_dict"])
    # the run folder it came from; an exported file exported again (say, to attach newer
    # held-out scores) keeps the run it names
    raw["exported_from"] = raw.get("exported_from") or os.path.basename(
        os.path.dirname(os.path.abspath(args.checkpoint)))
    with replacing(args.out, ".pt") as tmp:  # replaces the old file only if the check passes
        save_synced(raw, tmp)
        exported = load_checkpoint(tmp)
        images = list_images(args.check_images)
        before = predict_files(original, images, workers=0).frame.iloc[:, 1:].to_numpy()
        after = predict_files(exported, images, workers=0).frame.iloc[:, 1:].to_numpy()
        worst = float(np.abs(before - after).max())
        log.info("largest prediction change on %d check images: %.2e", len(images), worst)
        if worst >= args.tolerance:
            raise ValueError(f"export changes predictions by {worst:.2e} >= {args.tolerance}")
    log.info("wrote %s (%.1f MB)", args.out, os.path.getsize(args.out) / 1e6)
    return 0


if __name__ == "__main__":
    run_cli(main)
