"""Write the model card (Markdown) from a checkpoint, its evaluation and the variant comparison.

    python -m train.model_card --checkpoint assets/models/galaxy_resnet18.pt \
        [--evaluation eval.json] [--variants variants.json] --out assets/models/MODEL_CARD.md

Without --evaluation the accuracy section comes from the held-out validation of the model's
recipe that train.export --heldout stored in the checkpoint.

Every number in the card comes from those files; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import logging
import os

from galaxy_core.augment import AUGMENT_DESCRIPTIONS, TTA_VIEWS
from galaxy_core.checkpoint import (epochs_before_last_stage, load_checkpoint, trained_on_reframed,
                                   training_stages)
from galaxy_core.data import DataError
from galaxy_core.evaluate import (heldout_split, learning_curve_fit, mean_over_splits,
                                  shown_by_default)
from galaxy_core.files import write_text
from galaxy_core.framing import WIDE_PERCENTILE, WIDE_ZOOM
from galaxy_core.registry import stages_not_validated
from galaxy_core.schema import QUESTIONS, answer_name
from galaxy_core.uncertainty import coverage_rows
from train.common import read_json, read_text, run_cli, setup_logging

log = logging.getLogger("model_card")

OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW (decoupled weight decay)"}
PRECISION_TEXT = {"float32": "float32",
                  "bfloat16": "bfloat16 autocast (weights, loss and validation in float32)"}
HEAD_TEXT = {
    "tree": "per-question softmax scaled by the parent answer, so outputs obey the Galaxy Zoo "
            "tree by construction",
    "plain": "37 independent outputs clipped to [0, 1], as in the seed; they need not obey the "
             "Galaxy Zoo tree",
}


def starting_point(train_config: dict) -> str:
    """Where training started, from the run's recorded config."""
    if train_config.get("init_from"):
        return f"fine-tuned from `{os.path.basename(train_config['init_from'])}`"
    if train_config.get("pretrained"):
        return "from torchvision's ImageNet weights"
    return "from scratch (no ImageNet weights)"


def _stage_recipe(config: dict) -> str:
    augment = config.get("augment")
    return (f"{OPTIMIZER_NAMES[config.get('optimizer', 'adam')]}, peak lr {config.get('lr')}, "
            f"{config.get('schedule')} schedule, batch {config.get('batch_size')}, "
            f"{config.get('epochs')} epochs, weight decay {config.get('weight_decay')}, MSE over "
            f"known answers, augmentation '{augment}' "
            f"({AUGMENT_DESCRIPTIONS.get(augment, 'not recorded')}), forward pass in "
            f"{PRECISION_TEXT[config.get('precision', 'float32')]}")


def _recipe_lines(stages: list, hardware: str) -> list:
    """The recipe: one run, or each run of a model fine-tuned in stages (``training_stages``),
    with the epoch time and the device each took (``hardware`` where a run did not record its
    device: runs saved before 2026-12-01)."""
    if len(stages) == 1:
        minutes = stages[0]["epoch_s"] / 60
        return [f"- {_stage_recipe(stages[0]['train_config'])}.",
                f"- Training to the saved epoch took {minutes:.1f} min of epoch time on "
                f"{hardware or 'the machine named in the README'}."]
    lines = [f"- Trained in {len(stages)} stages, each a `train.train` run starting from the "
             f"previous one's weights:"]
    for number, stage in enumerate(stages, 1):
        data, versions = stage["data"], stage.get("versions") or {}
        device = data.get("device") or (f"{hardware} (named when the card was written; the run "
                                        f"did not record it)" if hardware
                                        else f"a device the run did not record (torch "
                                             f"{versions.get('torch', '?')})")
        held_out = (f"{data.get('val_galaxies')} held out" if data.get("val_galaxies")
                    else "none held out")
        lines.append(f"  {number}. {starting_point(stage['train_config'])}: "
                     f"{_stage_recipe(stage['train_config'])}; {data.get('train_galaxies')} "
                     f"galaxies for training, {held_out}; ended at epoch {stage.get('epoch')}, "
                     f"{stage['epoch_s'] / 60:.1f} min of epoch time on {device}.")
    return lines


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def _tta_cell(variant: dict) -> str:
    views = variant.get("tta_views")
    return _fmt(variant.get("tta_rmse")) + (f" ({views})" if views and variant.get("tta_rmse")
                                            else "")


def _tta_label(splits: list) -> str:
    views = {(s.get("model_tta") or {}).get("tta_views") for s in splits} - {None}
    return f"model + {views.pop()}-view TTA" if len(views) == 1 else "model + TTA"


def _share(counted: dict | None, with_count: bool = True) -> str:
    if not counted:
        return "—"
    share = f"{100 * counted['agreement']:.1f}%"
    return f"{share} (n = {counted['galaxies']:.0f})" if with_count else share


def _accuracy_section(splits: list, own: bool, not_validated: int = 0) -> list:
    mean = mean_over_splits(splits)
    tta = _tta_label(splits)
    if own:
        head = ("## Accuracy on the validation galaxies",
                "RMSE over all known galaxy × answer cells (Kaggle definition), on the galaxies "
                "this model held out:")
    else:
        head = ("## Accuracy on held-out galaxies",
                "This model was trained on every labelled galaxy, so none are left to test it "
                "on. Its accuracy is that of its recipe: the identical training run on other "
                "splits, each scored on the galaxies it never saw (RMSE over all known galaxy "
                "× answer cells, Kaggle definition), each run at its final epoch, where this "
                "model stops too" + (
                    f". These are the scores of the model before its last "
                    f"{f'{not_validated} training stages' if not_validated > 1 else 'training stage'}"
                    f" (Recipe): the fine-tune "
                    f"was not itself run on these splits, and what it changed was measured on "
                    f"split 0 alone (docs/command-line.md, \"The full recipe, fine-tuned\"):"
                    if not_validated else ":"))
    lines = [head[0], head[1], "",
             f"| held-out split | galaxies | model | {tta} | predict the training mean |",
             "|---|---|---|---|---|"]
    for split in splits:
        lines.append(f"| seed {split.get('split_seed', '?')} | {split['model'].get('galaxies')} | "
                     f"{_fmt(split['model']['rmse'])} | "
                     f"{_fmt((split.get('model_tta') or {}).get('rmse'))} | "
                     f"{_fmt((split.get('mean_baseline') or {}).get('rmse'))} |")
    if len(splits) > 1:
        lines.append(f"| **mean** | | **{_fmt(mean['model']['rmse'])}** | "
                     f"{_fmt(mean['model_tta']['rmse'])} | {_fmt(mean['mean_baseline']['rmse'])} |")
    learned = [q for q in QUESTIONS if mean["model"]["per_question"][f"Q{q.number}"] is not None]
    which = "mean over the splits" if len(splits) > 1 else "the validation galaxies"
    # agreement with the volunteers' majority, of the predictions the app shows by default
    shown = shown_by_default(mean)
    agreement = shown["majority_agreement"]
    base_agreement = mean["mean_baseline"]["majority_agreement"]
    with_agreement = any(agreement[f"Q{q.number}"] for q in learned)
    lines += ["", f"Per question ({which}):", "",
              f"| question | model | {tta} | predict the training mean |"
              + (" top answer = volunteers' majority | same, always the training majority |"
                 if with_agreement else ""),
              "|---|---|---|---|" + ("---|---|" if with_agreement else "")]
    for q in learned:
        key = f"Q{q.number}"
        row = (f"| Q{q.number} {q.topic} | {_fmt(mean['model']['per_question'][key])} | "
               f"{_fmt(mean['model_tta']['per_question'][key])} | "
               f"{_fmt(mean['mean_baseline']['per_question'][key])} |")
        if with_agreement:
            row += f" {_share(agreement[key])} | {_share(base_agreement[key], False)} |"
        lines.append(row)
    if with_agreement:
        lines += ["", "Top answer = volunteers' majority: how often the likeliest answer "
                  f"({tta if shown is mean['model_tta'] else 'model, one view'}) is the one "
                  "most volunteers gave, over the galaxies (n) where most "
                  "volunteers reached the question; beside it, always answering the training "
                  "galaxies' most common answer."]
    lines += ["", f"<details><summary>Per answer ({which})</summary>", "",
              "| answer | model | TTA | mean baseline |", "|---|---|---|---|"]
    for q in learned:
        for column in q.columns:
            lines.append(f"| {answer_name(column)} | {_fmt(mean['model']['per_answer'][column])} "
                         f"| {_fmt(mean['model_tta']['per_answer'][column])} | "
                         f"{_fmt(mean['mean_baseline']['per_answer'][column])} |")
    return lines + ["", "</details>", ""]


def _variants_section(variants: list) -> list:
    if not variants:
        return []
    lines = ["## Variants compared", "",
             "Each row is one training run scored on the validation galaxies of its split (the "
             "split seed also seeds initialisation and augmentation), at the epoch that scored "
             "best on them: chosen on the same galaxies, so slightly flattering, and fair only "
             "for comparing rows (the held-out table above scores final epochs). Rows marked "
             "64 px are a "
             "reduced budget (12 epochs), each adding one change to the row above. Minutes are "
             "epoch time under the load of the day (the GPU rows ran 8 or 3 at once on one "
             "GPU) and are no speed comparison. TTA (n): the number of views averaged.", "",
             "| variant | epochs | split | val RMSE | + TTA (views) | trained on | minutes |",
             "|---|---|---|---|---|---|---|"]
    for v in variants:
        minutes = v.get("minutes")
        lines.append(f"| {v['name']} | {v['epochs']} | {v.get('split_seed', 0)} | "
                     f"{_fmt(v['best_val_rmse'])} | {_tta_cell(v)} | "
                     f"{v.get('hardware', '2-core CPU')} | "
                     f"{'—' if minutes is None else f'{minutes:.1f}'} |")
    return lines + [""]


def _learning_curve_section(variants: list, splits: list, target_galaxies,
                            target_epochs=None, fine_tuned: bool = False) -> list:
    """Variants rows that carry ``learning_curve`` (a label shared by the runs of one curve) and
    ``train_galaxies``: the recipe on growing shares of one split's training galaxies.
    ``target_epochs``: the shipped model's, so that a curve measured at another schedule
    length says that its extrapolation assumes the data gain carries over."""
    curves = {}
    for v in variants:
        if v.get("learning_curve") and v.get("train_galaxies"):
            curves.setdefault(v["learning_curve"], []).append(v)
    if not curves:
        return []
    lines = ["## Accuracy against the amount of training data", "",
             "The recipe trained on nested shares of one split's training galaxies (the smaller "
             "share's galaxies are part of the larger), each scored on the same held-out "
             "galaxies. A fit of RMSE = floor + scale × galaxies^-exponent extrapolates to the "
             "shipped model's training set: an estimate, not a measurement.", ""]
    mean_tta = mean_over_splits(splits)["model_tta"]["rmse"] if splits else None
    for label, rows in curves.items():
        rows = sorted(rows, key=lambda v: v["train_galaxies"])
        lines += [f"**Learning curve: {label}**", "",
                  "| training galaxies | val RMSE | + TTA (views) |",
                  "|---|---|---|"]
        lines += [f"| {v['train_galaxies']} | {_fmt(v['best_val_rmse'])} | {_tta_cell(v)} |"
                  for v in rows]
        lines.append("")
        sizes = [v["train_galaxies"] for v in rows]
        for what, key in (("one view", "best_val_rmse"), ("TTA", "tta_rmse")):
            points = [(v["train_galaxies"], v.get(key)) for v in rows if v.get(key) is not None]
            fit = learning_curve_fit(*zip(*points)) if len(points) >= 3 else None
            if fit is None:
                lines.append(f"- {what}: no fit (needs three sizes with RMSE falling as data "
                             f"grows).")
                continue
            at_largest, at_target = fit["predict"](max(sizes)), fit["predict"](target_galaxies)
            loose = (" (three sizes fix the three parameters exactly, so floor and exponent are "
                     "loose)" if len(points) == 3 else "")
            text = (f"- {what}: floor {fit['floor']:.4f}, exponent {fit['exponent']:.2f}{loose}; "
                    f"at {target_galaxies} galaxies {at_target:.4f}, "
                    f"{at_largest - at_target:.4f} below the fit at {max(sizes)}")
            if key == "tta_rmse" and mean_tta is not None and target_galaxies > max(sizes):
                text += (f". Applied to the recipe's mean over the held-out splits "
                         f"({mean_tta:.4f}), the shipped model"
                         f"{' before its fine-tune' if fine_tuned else ''} would score about "
                         f"{mean_tta - (at_largest - at_target):.4f} with TTA")
                curve_epochs = sorted({v.get("epochs") for v in rows} - {None})
                if target_epochs and curve_epochs and curve_epochs != [target_epochs]:
                    text += (f" (the curve's runs trained "
                             f"{'/'.join(str(e) for e in curve_epochs)} epochs and "
                             f"{'the model before its fine-tune' if fine_tuned else 'this model'} "
                             f"{target_epochs}: that assumes the gain from more data carries "
                             f"over to the other schedule)")
            lines.append(text + ".")
        lines.append("")
    return lines


def _intervals_section(calibration) -> list:
    """The calibrated intervals: how they are made and how often they held, per question."""
    if calibration is None:
        return ["## Uncertainty", "", "This model carries no calibrated intervals "
                "(`python -m train.calibrate` adds them from a run's held-out galaxies).", ""]
    measured = calibration.coverage or {}
    lines = ["## Uncertainty: calibrated intervals", "",
             f"Every learned answer has an interval meant to hold the volunteers' fraction "
             f"{calibration.level:.0%} of the time (the black line across each bar in the app; "
             f"`train.predict --intervals`): split-conformal, from {calibration.source}. Each "
             f"answer's residuals are scaled by "
             + ("sqrt(p(1-p)) + " f"{calibration.floor}" if calibration.scale == "binomial"
                else "a constant") +
             ", so a prediction near 0 or 1 gets a narrower interval than one near 0.5. How "
             "often the intervals of the model that held those galaxies out contained the "
             "volunteers' fraction, fitted on one half of them and counted on the other (both "
             "ways round):", "",
             "| question | coverage | mean width | answers x galaxies |", "|---|---|---|---|"]
    for name, row in coverage_rows(measured):
        lines.append(f"| {'all learned answers' if name == 'all' else name} | "
                     f"{row['coverage']:.1%} | {row['mean_width']:.3f} | {row['n']} |")
    lines += ["", "The intervals promise nothing for an image unlike the training cut-outs "
              "(the app flags those), and they cover vote fractions, which carry their own "
              "counting noise (about 40 votes per galaxy).", ""]
    return lines


def render(loaded, splits: list, own: bool, variants: list, notes: str, hardware: str,
           faithfulness: str = "") -> str:
    meta = loaded.meta
    data = meta.get("data", {})
    train_config = meta.get("train_config", {})
    stages = training_stages(meta)
    fine_tuned = (f", then fine-tuned in {len(stages) - 1} more stage"
                  f"{'s' if len(stages) > 2 else ''} (Recipe)" if len(stages) > 1 else "")
    learned = [q for q in QUESTIONS if all(c in loaded.trained_columns for c in q.columns)]
    if own:
        which_epoch = "the one with the best validation RMSE"
        split_text = (f"{data.get('train_galaxies')} for training, {data.get('val_galaxies')} "
                      f"held out for validation by a seeded permutation of GalaxyIDs (seed "
                      f"{data.get('split_seed')}). No validation galaxy was trained on.")
    else:
        which_epoch = "the last"
        seeds = ", ".join(str(s.get("split_seed")) for s in splits)
        split_text = (f"all {data.get('train_galaxies')} used for training, none held out. "
                      f"The held-out accuracy below comes from the same recipe trained on "
                      f"{data.get('galaxies', 0) - min(s['model'].get('galaxies', 0) for s in splits)}"
                      f"-galaxy parts (splits by seeded permutation of GalaxyIDs, seeds {seeds}). "
                      f"The 40 shipped sample galaxies are in split 0's held-out part, so they "
                      f"were in this model's training data but not in that run's.")
    lines = [
        "# Model card: Galaxy Zoo ResNet18 (shipped default)",
        "",
        "## What it is",
        f"- torchvision ResNet18 {starting_point(stages[0]['train_config'])}"
        f"{fine_tuned}, seed head Linear(512,512) → "
        f"ReLU → Dropout({loaded.net.config.dropout}) → Linear(512,37), **{loaded.net.config.head}"
        f"** output head ({HEAD_TEXT[loaded.net.config.head]}).",
        f"- Input: centre {loaded.preprocess.crop_fraction:.0%} of the frame (the galaxy), "
        f"resized to {loaded.preprocess.image_size} px, ImageNet normalisation; stored in the "
        f"checkpoint so every tool preprocesses identically. Test-time averaging (TTA, on by "
        f"default in the app and `train.predict`) averages the {TTA_VIEWS} flips and "
        f"right-angle rotations of that crop; with automatic framing (also on by default) half "
        f"of them see a square {WIDE_ZOOM:g}x wider when the galaxy is larger in its frame than "
        f"{WIDE_PERCENTILE}% of training galaxies, in case it was cut out tighter.",
        f"- Residual-block convolution weights stored in float16, everything else in float32 "
        f"(saved with torch {meta.get('versions', {}).get('torch', '?')}); created "
        f"{meta.get('created', '?')}, epoch {meta.get('epoch')} of "
        f"{train_config.get('epochs', '?')} ({which_epoch})"
        + (f" of its last stage, after {epochs_before_last_stage(stages)} epochs "
           f"before it." if len(stages) > 1 else "."),
        "",
        "## Data and split",
        f"- {data.get('galaxies')} real Kaggle Galaxy Zoo training galaxies (the shared sample): "
        + split_text,
        f"- **Learned** (had targets): {', '.join(f'Q{q.number} {q.topic}' for q in learned)} "
        f"— {len(loaded.trained_columns)} of 37 answers.",
        f"- **Not learned** (no targets in this sample): "
        f"{', '.join(f'Q{q.number} {q.topic}' for q in QUESTIONS if q not in learned)}. Their "
        f"outputs are untrained; the app greys them out and the verdict skips them.",
        "",
        "## Recipe",
        f"- Reproduce: `{notes}`" if notes else "",
        *_recipe_lines(stages, hardware),
        "",
        *_accuracy_section(splits, own, 0 if own else stages_not_validated(meta)),
        *_variants_section(variants),
        *_learning_curve_section(variants, [] if own else splits, data.get("train_galaxies"),
                                 stages[0]["train_config"].get("epochs"), len(stages) > 1),
        *_intervals_section(loaded.calibration),
        *(["## Grad-CAM faithfulness", "", faithfulness.strip(), ""] if faithfulness else []),
        "## Limits",
        f"- Trained on {data.get('train_galaxies')} SDSS galaxies in Kaggle-style 424 px "
        f"cut-outs; other surveys, colour stretches or processed images are out of "
        f"distribution, and so are framings "
        + ("beyond the zooms and shifts of its fine-tune (Recipe)."
           if trained_on_reframed(stages) else "unlike those cut-outs."),
        "- The held-out galaxies come from the same 5,000-galaxy range of GalaxyIDs; accuracy on "
        "other galaxies can differ, and the splits above already differ by several "
        "thousandths.",
        "- Predictions estimate volunteer vote fractions, not physical ground truth; about 44 "
        "votes per galaxy put a counting-noise floor near 0.04 RMSE.",
        "- Questions 3, 4, 5, 9, 10 and 11 are not learned (see above).",
        "",
        "## Credits",
        "Images: Sloan Digital Sky Survey. Labels: Galaxy Zoo 2 (Willett et al. 2013, MNRAS 435, "
        "2835), as released for the Kaggle Galaxy Challenge (Dieleman, Willett & Dambre 2015, "
        "MNRAS 450, 1441). Sample provenance: `assets/samples/SOURCE.md`.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--evaluation", help="train.evaluate --split val --json output for a "
                        "model with its own validation split (default: the held-out "
                        "validation of its recipe stored in the checkpoint by train.export)")
    parser.add_argument("--evaluation-tta", help="the same with --tta")
    parser.add_argument("--variants", help="JSON list of {name, epochs, best_val_rmse, minutes, "
                        "and optionally split_seed, tta_rmse, tta_views, hardware; learning_curve (a "
                        "label) with train_galaxies for the runs of a learning curve}")
    parser.add_argument("--hardware", default="", help="the machine it was trained on (for a "
                        "model trained in stages: the one for stages that did not record it)")
    parser.add_argument("--command", default="", help="the command that trained it")
    parser.add_argument("--faithfulness", metavar="MD",
                        help="the Grad-CAM faithfulness table (train.gradcam --evaluate "
                             "--markdown) to include")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    loaded = load_checkpoint(args.checkpoint)
    if args.evaluation:
        splits = [heldout_split(read_json(args.evaluation), read_json(args.evaluation_tta)
                                if args.evaluation_tta else None)]
    else:
        splits = (loaded.meta.get("recipe_validation") or {}).get("splits") or []
        if not splits:
            raise DataError(f"{args.checkpoint} has no validation of its own recipe: pass "
                            f"--evaluation, or export it with --heldout")
    variants = read_json(args.variants) if args.variants else []
    faithfulness = read_text(args.faithfulness) if args.faithfulness else ""
    text = render(loaded, splits, bool(args.evaluation), variants, args.command, args.hardware,
                  faithfulness)
    write_text(args.out, text)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
