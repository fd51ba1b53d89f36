"""Mutation check: plant bugs that matter, one at a time, and see whether the fast tests fail.

    python -m tests.mutants              # every mutant (a few minutes each at most)
    python -m tests.mutants --list       # names and what each one breaks
    python -m tests.mutants NAME ...     # only these
    python -m tests.mutants --quick      # only each mutant's own test files

Each mutant is one exact textual replacement (``old`` -> ``new``) in one source file, made in a
temporary copy of the repository, so the working tree is never touched. The fast tests then run
on that copy: every test file except the torchrun, benchmark and browser tests, and without the
tests marked ``e2e`` (command-line tools run end to end in fresh processes), with ``-x`` so that
a caught mutant stops at its first failure (the files most likely to catch it run first).

A mutant is *killed* when the tests fail and *SURVIVED* when they pass; one whose ``old`` text
is not in its file exactly once *did not apply* (the source moved on: update the mutant). The
tests are first run once without any mutant, and must pass. Exit status 0 only if every mutant
applied and was killed. Not part of ``make test``: it runs the fast tests once per mutant.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the slow suites: torchrun with two processes, the benchmark, a real browser
SLOW_FILES = ("test_distributed.py", "test_bench.py", "test_browser.py")
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not e2e"]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    breaks: str  # the bug, in words
    tests: tuple[str, ...] = ()  # test files likely to catch it, run first


MUTANTS = (
    Mutant("nan-labels-read-as-zero", "galaxy_core/training.py",
           "loss = masked_mse(outputs.float(), targets)",
           "loss = torch.nn.functional.mse_loss(outputs.float(), torch.nan_to_num(targets))",
           "fit trains unknown (NaN) label cells towards 0 instead of masking them",
           ("tests/test_training.py", "tests/test_runs.py")),
    Mutant("password-compared-with-==", "galaxy_core/access.py",
           "return hmac.compare_digest(configured.encode(), entered.encode())",
           "return configured == entered",
           "the admin password is compared in variable time (==, not hmac.compare_digest)",
           ("tests/test_access.py",)),
    Mutant("no-megapixel-limit", "galaxy_core/images.py",
           "if image.width * image.height > MAX_PIXELS:",
           "if False:",
           "images over the 40-megapixel limit are decoded (decompression bombs)",
           ("tests/test_images.py", "tests/test_inputs.py")),
    Mutant("no-upload-size-limit", "galaxy_core/images.py",
           "if len(data) > MAX_BYTES:",
           "if False:",
           "uploads over the 25 MB limit are accepted",
           ("tests/test_images.py", "tests/test_inputs.py")),
    Mutant("val-split-not-checked", "galaxy_core/evaluate.py",
           'if ids_digest(val.galaxy_ids) != data["val_ids_sha"]:',
           "if False:",
           "evaluate --split val scores galaxies other than the ones held out in training",
           ("tests/test_evaluate.py", "tests/test_cli.py")),
    Mutant("two-training-jobs-at-once", "galaxy_core/jobs.py",
           "if self.state is not None and self.state.running:",
           "if False:",
           "a second training job starts while one is running",
           ("tests/test_pages.py", "tests/test_runs.py")),
    Mutant("half-precision-head", "galaxy_core/checkpoint.py",
           'in_blocks = ".layer" in f".{key}" and value.dim() == 4',
           'in_blocks = ".layer" in f".{key}" and value.dim() == 4 or ".fc." in key',
           "export --half stores the output head in float16 too",
           ("tests/test_checkpoint.py", "tests/test_cli.py")),
    # a few more that a user would notice
    Mutant("tree-head-ignores-parents", "galaxy_core/model.py",
           "probs = probs * values[parent]",
           "probs = probs",
           "the tree head's answers no longer sum to their parent answer",
           ("tests/test_model.py", "tests/test_schema.py")),
    Mutant("roundness-hangs-off-features", "galaxy_core/schema.py",
           '"How rounded is it?", "Class1.1",',
           '"How rounded is it?", "Class1.2",',
           "Q7 (how round) weighted by 'features or disk' instead of 'smooth'",
           ("tests/test_schema.py",)),
    Mutant("tta-view-not-turned-back", "galaxy_core/augment.py",
           "-(i // 2),",
           "(i // 2),",
           "the 8-view Grad-CAM turns the rotated views' maps the wrong way back",
           ("tests/test_explain.py", "tests/test_augment.py")),
    Mutant("wildcard-address-is-loopback", "galaxy_core/access.py",
           "if not address:\n        return False",
           "if not address or address == \"0.0.0.0\":\n        return True",
           "a server on every interface (0.0.0.0) lets anyone train without a password",
           ("tests/test_access.py",)),
    Mutant("masked-mse-divides-by-all-cells", "galaxy_core/metrics.py",
           "return diff.pow(2).sum() / known.sum().clamp(min=1)",
           "return diff.pow(2).sum() / known.numel()",
           "the loss averages over unknown cells too (diluted by the missing answers)",
           ("tests/test_training.py",)),
    Mutant("rmse-counts-unknown-cells", "galaxy_core/metrics.py",
           "known = ~np.isnan(targets)\n    sq = np.where(known,",
           "known = np.ones(targets.shape, dtype=bool)\n    sq = np.where(known,",
           "RMSE reads unknown answers as 0 (the partial sample's 20 missing columns)",
           ("tests/test_evaluate.py",)),
    # uncertainty intervals
    Mutant("conformal-quantile-rank-too-low", "galaxy_core/uncertainty.py",
           "rank = math.ceil((len(scores) + 1) * level)",
           "rank = math.ceil(len(scores) * level)",
           "the conformal quantile drops the +1: intervals promise coverage they do not have",
           ("tests/test_uncertainty.py",)),
    Mutant("intervals-ignore-the-scale", "galaxy_core/uncertainty.py",
           "half = q * scale_of(preds, calibration.scale, calibration.floor)",
           "half = q",
           "a prediction near 0 or 1 gets as wide an interval as one near 0.5",
           ("tests/test_uncertainty.py",)),
    Mutant("calibrated-on-training-galaxies", "train/calibrate.py",
           "_, val = training_split(run, args.labels, table)",
           "val, _ = training_split(run, args.labels, table)",
           "intervals calibrated on galaxies the run trained on (too narrow)",
           ("tests/test_uncertainty.py",)),
    Mutant("tta-json-reports-swapped", "train/evaluate.py",
           "outputs = ([(result.one_view, args.json), (result, args.tta_json)] if both",
           "outputs = ([(result, args.json), (result.one_view, args.tta_json)] if both",
           "evaluate --tta-json writes the 8-view scores as the one-view ones",
           ("tests/test_cli.py",)),
    Mutant("served-app-watches-its-files", ".streamlit/config.toml",
           'fileWatcherType = "none"', 'fileWatcherType = "auto"',
           "the served app walks its folder (.venv included) for every new visitor again",
           ("tests/test_layout.py",)),
    Mutant("reframed-views-have-black-corners", "galaxy_core/augment.py",
           "return views + (1 - inside) * _sky_fill(batch, size, generator)", "return views",
           "'reframe' training views show black where they leave the frame, not sky",
           ("tests/test_augment.py",)),
    Mutant("reframe-never-reframes", "galaxy_core/augment.py",
           "chosen = torch.rand(b, generator=generator) < REFRAME_SHARE",
           "chosen = torch.zeros(b, dtype=torch.bool)",
           "'reframe' trains on Kaggle framing only (no zoomed or shifted views)",
           ("tests/test_augment.py",)),
    Mutant("page-scores-read-the-wrong-answer", "galaxy_core/faithfulness.py",
           "shared.ends[:, index].numpy()", "shared.ends[:, 0].numpy()",
           "the page's faithfulness scores take the shared curve ends (image, sky, blur) of the "
           "first answer instead of the chosen one", ("tests/test_faithfulness.py",)),
    Mutant("warm-up-misses-the-page-cache", "pages/common.py",
           "explained = explained_image(loaded, path, sample_title(name), tta=True,\n"
           "                                framed=FRAMING_BY_DEFAULT)",
           "explained = explained_image(loaded, path, sample_title(name), tta=True,\n"
           "                                framed=not FRAMING_BY_DEFAULT)",
           "the server's warm-up computes the Grad-CAM page's default image under another cache "
           "key (framing) than the page reads, so the first visitor still waits", (
               "tests/test_gradcam_page.py",)),
    Mutant("framing-off-by-default", "galaxy_core/framing.py",
           "FRAMING_BY_DEFAULT = True", "FRAMING_BY_DEFAULT = False",
           "automatic framing is off unless asked for, so a wide field is predicted as it is",
           ("tests/test_framing.py",)),
    Mutant("framing-picks-the-nearest-source", "galaxy_core/framing.py",
           "score = light_of[candidates] / (1 + (distance / LIGHT_DISTANCE) ** 2)",
           "score = -distance",
           "with no source over the centre, framing takes the closest star or speck, not the "
           "galaxy",
           ("tests/test_framing.py",)),
    Mutant("wider-views-never-seen", "galaxy_core/augment.py",
           "rotated = torch.rot90(wide if index in WIDE_VIEWS else batch, index // 2, dims=(2, 3))",
           "rotated = torch.rot90(batch, index // 2, dims=(2, 3))",
           "a galaxy large in its frame is never seen wider: a tighter cut-out than the training "
           "ones stays misread",
           ("tests/test_predict.py", "tests/test_framing.py")),
    Mutant("wider-views-for-every-galaxy", "galaxy_core/framing.py",
           "if frame.source is None or not frame.source.r50 > stats.r50_wide:",
           "if frame.source is None:",
           "every galaxy, not only one larger than 95% of training ones, has half its views wider",
           ("tests/test_framing.py", "tests/test_predict.py")),
    Mutant("unlike-flag-says-one-side", "galaxy_core/quality.py",
           "FEATURES[name][values[name] > training_ranges[name][1]]", "FEATURES[name][1]",
           "an unlike-flag says 'too much' even where the measure fell below the training range",
           ("tests/test_framing.py",)),
    Mutant("gradcam-page-ignores-framing", "pages/common.py",
           "return explain_source(_loaded, _source, name, tta, framing=shipped_stats() if framed "
           "else None)",
           "return explain_source(_loaded, _source, name, tta)",
           "the Grad-CAM page explains a wide field as it is while Classify classifies it framed",
           ("tests/test_gradcam_page.py",)),
    Mutant("grey-images-not-flagged", "galaxy_core/quality.py",
           "if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() < GREY_CHROMA:",
           "if False:",
           "a single-band FITS or a greyscale picture passes as a colour cut-out",
           ("tests/test_framing.py", "tests/test_pages.py")),
    Mutant("similar-page-unlike-upload-unflagged", "pages/similar.py",
           "for flag in image_flags(data, name, loaded.preprocess.crop_fraction, frame):",
           "for flag in []:",
           "a photograph gets confident similar galaxies with no warning",
           ("tests/test_similar_page.py",)),
    Mutant("picture-not-cut-with-the-models-frame", "galaxy_core/explain.py",
           "shown = display_crop(source, preprocess, display_size, name=name, frame=frame)",
           "shown = display_crop(source, preprocess, display_size, name=name)",
           "Grad-CAM's picture is not the framed region the model explained, so the map lies "
           "over the wrong pixels",
           ("tests/test_framing.py", "tests/test_gradcam_page.py")),
    Mutant("gradcam-cli-maps-the-unframed-image", "train/gradcam.py",
           "result = compute_cam(loaded, image, args.answer,",
           "result = compute_cam(loaded, prepare_for_model(source, preprocess), args.answer,",
           "train.gradcam shows the framed view but maps the image as it is",
           ("tests/test_cli.py",)),
    Mutant("flags-judge-pils-conversion", "pages/common.py",
           "return flags_as_seen(decoded_rgb(_source, name), shipped_ranges(), frame=_frame,",
           "return flags_as_seen(__import__('galaxy_core.images').images.open_image(_source, "
           "name).convert('RGB'), shipped_ranges(), frame=_frame,",
           "the flags judge PIL's clipped conversion of a deep image, not what the model sees",
           ("tests/test_framing.py",)),
    Mutant("flags-ignore-the-predictions-frame", "galaxy_core/quality.py",
           "    if frame is not None:\n        frame = frame.on(image.width)\n    elif framing",
           "    if False:\n        pass\n    elif framing",
           "the flags judge the image as it is, not the region the prediction cut",
           ("tests/test_framing.py",)),
    Mutant("classify-flags-judge-the-whole-upload", "pages/classify.py",
           "unlike = [image_flags(source, labels[k], loaded.preprocess.crop_fraction, frame)",
           "unlike = [image_flags(source, labels[k], loaded.preprocess.crop_fraction)",
           "a wide field the model saw framed is hedged for being wide on Classify",
           ("tests/test_pages.py",)),
    Mutant("classify-picture-not-the-models-region", "pages/classify.py",
           "labels[result.kept[i]], frame=result.frames[i])", "labels[result.kept[i]])",
           "Classify's picture is not the region the model saw",
           ("tests/test_pages.py",)),
    Mutant("merged-shards-lose-their-frames", "train/predict.py",
           "kept=sorted(kept), frames=[chosen[i] for i in order])", "kept=sorted(kept))",
           "train.predict --flags under torchrun judges nothing",
           ("tests/test_predict.py",)),
    Mutant("prediction-forgets-its-frames", "galaxy_core/predict.py",
           "frames += [chosen[i] for i in good]", "frames += [None for i in good]",
           "a page cannot show, nor the flags judge, the region the model saw",
           ("tests/test_framing.py",)),
    Mutant("percentile-drops-its-bound", "galaxy_core/framing.py",
           "flat = flat[flat >= bound]",
           "flat = flat[flat > bound]",
           "the fast percentile leaves out the pixel at the row-maxima bound, which is often the "
           "value sought: the isophote moves and the shipped statistics no longer apply",
           ("tests/test_framing.py",)),
    Mutant("framing-zooms-on-specks", "galaxy_core/framing.py",
           "    if len(larger):\n        candidates = larger\n", "",
           "a speck near the middle is zoomed in on while the galaxy sits in a corner",
           ("tests/test_framing.py",)),
    Mutant("fine-tune-claims-its-base-scores-unsaid", "galaxy_core/registry.py",
           "    return max(0, stages - int(record.get(\"stage\") or stages))",
           "    return 0",
           "a fine-tune shipped with the held-out scores of the model it started from shows them "
           "as its own",
           ("tests/test_cli.py", "tests/test_pages.py")),
    Mutant("carried-intervals-claim-their-coverage", "pages/classify.py",
           'earlier = " by the model before its fine-tune" if calibration.stage else ""',
           'earlier = ""',
           "Classify states interval coverage measured before the fine-tune as the model's own",
           ("tests/test_pages.py",)),
    Mutant("framing-never-re-centres", "galaxy_core/framing.py",
           "    if not source.covers_centre:  # the middle is sky",
           "    if False:  # the middle is sky",
           "a galaxy far off centre is left where the model's centre crop sees only sky",
           ("tests/test_framing.py",)),
    Mutant("fits-holes-drawn-as-sky", "galaxy_core/fits.py",
           "    if enclosed.any():", "    if False:",
           "a masked pixel in a galaxy's core is drawn as a black hole the model then sees",
           ("tests/test_fits.py",)),
    Mutant("flagged-image-keeps-its-intervals", "pages/classify.py",
           "None if unlike[i] else loaded.calibration", "loaded.calibration",
           "a flagged image's bars carry intervals calibrated on cut-outs it is unlike",
           ("tests/test_pages.py",)),
    Mutant("intervals-csv-keeps-flagged-bounds", "galaxy_core/uncertainty.py",
           "        table.loc[[bool(f) for f in flags], interval_columns(calibration)] = np.nan\n",
           "",
           "the intervals CSV gives a flagged image bounds calibrated on cut-outs it is unlike, "
           "where the page shows none",
           ("tests/test_uncertainty.py", "tests/test_pages.py")),
    Mutant("filled-in-fits-not-flagged", "galaxy_core/quality.py",
           "        return flags(image, training_ranges) + no_data(image, frame, crop_fraction)\n",
           "        return flags(image, training_ranges)\n",
           "a FITS file whose galaxy is mostly filled-in NaN gets a confident, calibrated-looking "
           "verdict about the fill",
           ("tests/test_fits.py",)),
    Mutant("upload-metadata-taken-for-the-fits-mask", "galaxy_core/quality.py",
           "    if not (isinstance(missing, np.ndarray) and missing.dtype == bool and "
           "missing.ndim == 2):",
           "    if missing is None:",
           "a PNG whose text chunk is named like the FITS mask's key crashes Classify, Grad-CAM, "
           "Similar galaxies and train.predict --flags/--intervals",
           ("tests/test_fits.py",)),
    Mutant("no-data-judged-on-the-whole-frame", "galaxy_core/quality.py",
           "    half = min(1.0, crop_fraction * frame.wider) * frame.side / 2",
           "    half = frame.side / 2",
           "a FITS file with masked pixels only where the model does not look is hedged and "
           "loses its intervals",
           ("tests/test_fits.py",)),
    Mutant("samples-index-kept-unframed", "pages/similar.py",
           "    build(dataset, index_path, embedder, rebuild=True)  # from before indexes framed "
           "galaxies\n    st.rerun()\n",
           "",
           "a server upgraded with its samples' index built goes on comparing uploads unframed, "
           "unlike Classify",
           ("tests/test_similar_page.py",)),
    Mutant("grey-picture-filled-with-colour-noise", "galaxy_core/framing.py",
           "    if (array == array[..., :1]).all():  # a grey picture gets grey sky, not colour "
           "noise\n",
           "    if False:\n",
           "a greyscale photograph that framing re-centres gains colour noise and passes the "
           "'no colour' flag",
           ("tests/test_framing.py",)),
    Mutant("similar-query-not-framed", "train/similar.py",
           "embedder.embed_files(paths, framing=framing_of(index))",
           "embedder.embed_files(paths)",
           "train.similar compares a wide-field query as it is with galaxies indexed framed: "
           "the galaxy it shows is not found",
           ("tests/test_similarity.py",)),
    Mutant("similar-page-query-not-framed", "pages/common.py",
           "        data, name, shipped_stats() if framed else None)",
           "        data, name, None)",
           "the Similar page compares and judges a wide-field upload as it is, while Classify "
           "zooms in on it: the two pages disagree on whether to trust it",
           ("tests/test_similar_page.py",)),
    Mutant("fits-axes-read-by-astropy-alone", "galaxy_core/fits.py",
           "    _check_axes_cards(data, label)\n", "",
           "a 6 KB FITS declaring a billion axes or a negative length hangs a server thread",
           ("tests/test_fits.py",)),
    Mutant("fits-any-number-of-pixels", "galaxy_core/fits.py",
           "        if axes[0] * axes[1] > MAX_FITS_PIXELS:", "        if False:",
           "a tiny compressed FITS declaring a survey tile takes gigabytes to colour",
           ("tests/test_fits.py",)),
    Mutant("jpeg-scans-unbounded", "galaxy_core/images.py",
           "if scans > MAX_JPEG_SCANS:", "if scans < 0:",
           "a progressive JPEG of thousands of scans holds a core for minutes",
           ("tests/test_images.py",)),
    Mutant("fine-tune-forgets-its-stages", "galaxy_core/training.py",
           "            earlier_stages = list(state.get(\"earlier_stages\") or [])",
           "            earlier_stages = []",
           "a resumed fine-tune's model card loses the run it started from",
           ("tests/test_training.py",)),
    Mutant("card-shows-only-the-last-stage", "train/model_card.py",
           "    if len(stages) == 1:", "    if stages := stages[-1:]:",
           "the model card describes a fine-tune as if it were the whole recipe",
           ("tests/test_training.py",)),
)


def fast_test_files(root: str) -> list[str]:
    folder = os.path.join(root, "tests")
    return sorted(f"tests/{name}" for name in os.listdir(folder)
                  if re.fullmatch(r"test_\w+\.py", name) and name not in SLOW_FILES)


def copy_repository(target: str) -> None:
    shutil.copytree(ROOT, target, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", ".cache", "__pycache__", ".pytest_cache", "results"))


def run_tests(root: str, first: tuple[str, ...], timeout: float,
              only_first: bool = False) -> tuple[str, str, float]:
    """('passed' | 'failed' | 'error' | 'timed out', first failing test or note, seconds)."""
    files = fast_test_files(root)
    ordered = [f for f in first if f in files]
    if not only_first or not ordered:
        ordered += [f for f in files if f not in first]
    env = {**os.environ, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.time()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", *PYTEST, *ordered], cwd=root,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out", f"no result within {timeout:.0f} s", time.time() - started
    seconds = time.time() - started
    output = done.stdout + done.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    if done.returncode == 0:
        return "passed", "", seconds
    if done.returncode in (1, 2) and failed:  # 2: a collection error (import failed)
        return "failed", failed[0], seconds
    return "error", f"pytest exit {done.returncode}: {output.strip()[-300:]}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per test run")
    parser.add_argument("--quick", action="store_true",
                        help="run only each mutant's own test files (a survivor there may still "
                             "be caught by the other fast tests) and skip the run without a "
                             "mutant")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:34s} {m.path:28s} {m.breaks}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; --list shows them")
    chosen = [by_name[n] for n in args.names] if args.names else list(MUTANTS)

    with tempfile.TemporaryDirectory(prefix="galaxy-mutants-") as tmp:
        copy = os.path.join(tmp, "repo")
        copy_repository(copy)
        print(f"fast tests: {' '.join(fast_test_files(copy))} ({' '.join(PYTEST)})", flush=True)
        if not args.quick:
            outcome, note, seconds = run_tests(copy, (), args.timeout)
            if outcome != "passed":
                print(f"the fast tests do not pass without a mutant ({outcome}: {note}); "
                      f"nothing to measure", file=sys.stderr)
                return 2
            print(f"without a mutant: pass ({seconds:.0f} s)", flush=True)
        results = []
        for mutant in chosen:
            path = os.path.join(copy, mutant.path)
            original = open(path).read() if os.path.isfile(path) else None
            found = original.count(mutant.old) if original is not None else 0
            if found != 1:
                where = "file missing" if original is None else f"found {found} times"
                results.append((mutant, "did not apply", where, 0.0))
            else:
                try:
                    with open(path, "w") as handle:
                        handle.write(original.replace(mutant.old, mutant.new))
                    outcome, note, seconds = run_tests(copy, mutant.tests, args.timeout,
                                                       args.quick)
                finally:
                    with open(path, "w") as handle:
                        handle.write(original)
                verdict = {"failed": "killed", "timed out": "killed (timed out)",
                           "passed": "SURVIVED"}.get(outcome, "error")
                results.append((mutant, verdict, note, seconds))
            mutant_, verdict, note, seconds = results[-1]
            print(f"{verdict:18s} {mutant.name:34s} {seconds:5.0f} s  {note}", flush=True)

    print("\n| mutant | file | bug | result | caught by |\n|---|---|---|---|---|")
    for mutant, verdict, note, seconds in results:
        print(f"| {mutant.name} | {mutant.path} | {mutant.breaks} | {verdict} | {note} |")
    bad = [m.name for m, verdict, _, _ in results if not verdict.startswith("killed")]
    print(f"\n{len(results) - len(bad)} of {len(results)} mutants killed"
          + (f"; not killed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
