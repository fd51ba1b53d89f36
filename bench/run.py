"""Benchmarks: each figure is a ratio against the hardware's own ceiling, measured in one run.

    python -m bench.run [--quick] [--json bench/results/latest.json]

Uses the shipped model and sample galaxies (replicated to make larger folders). Prints a table
and writes JSON. ``--quick`` (8 images, few repeats) only proves that everything runs.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from galaxy_core import paths
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.config import TrainConfig
from galaxy_core.data import list_images
from galaxy_core.explain import compute_cam
from galaxy_core.files import write_json
from galaxy_core.images import normalize, prepare_for_model
from galaxy_core.metrics import masked_mse
from galaxy_core.predict import predict_files, predict_image
from galaxy_core.training import fit

TARGETS = {
    "single_image_latency_ratio": ("<=", 1.25),
    "batch_predict_throughput_ratio": (">=", 0.85),
    "batch_predict_speedup_vs_seed": (">=", 2.0),
    "training_epoch_throughput_ratio": (">=", 0.85),
    "gradcam_latency_ratio": ("<=", 1.5),
    "batch_predict_memory_ratio_4000_vs_400": ("<=", 1.2),
}


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def replicate_images(source_dir: str, count: int, folder: str) -> list[str]:
    """``count`` JPEG files copied round-robin from the samples, with distinct GalaxyIDs."""
    sources = list_images(source_dir)
    os.makedirs(folder, exist_ok=True)
    out = []
    for i in range(count):
        target = os.path.join(folder, f"{900000 + i}.jpg")
        if not os.path.exists(target):
            shutil.copyfile(sources[i % len(sources)], target)
        out.append(target)
    return out


def seed_pipeline(loaded, files, batch_size=32, as_seed_shipped=False):
    """The seed's approach: PIL open + torchvision crop/resize/normalise per image, main process,
    eager float32. By default at this model's own input (crop and size), so that only the
    plumbing differs; ``as_seed_shipped``: the seed's own 224 px resize of the whole frame."""
    p = loaded.preprocess
    size, crop = ((224, 224), 1.0) if as_seed_shipped else (p.image_size, p.crop_fraction)
    transform = transforms.Compose([
        transforms.Resize(size),
        transforms.ToTensor(),
        transforms.Normalize(p.mean, p.std),
    ])
    rows = []
    net = loaded.net.eval()
    with torch.no_grad():
        for start in range(0, len(files), batch_size):
            batch = []
            for path in files[start:start + batch_size]:
                image = Image.open(path).convert("RGB")
                side = min(image.size) * crop
                left, top = (image.width - side) / 2, (image.height - side) / 2
                image = image.crop((left, top, left + side, top + side))
                batch.append(transform(image))
            rows.append(net.predict(torch.stack(batch)).numpy())
    return np.concatenate(rows)


def memory_child(count: int, workdir: str) -> None:
    """Runs in a subprocess: predict ``count`` images, print peak RSS in MB."""
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    files = replicate_images(paths.SAMPLE_IMAGES, count, os.path.join(workdir, "memory"))
    predict_files(loaded, files, batch_size=64, workers=1)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss(count: int, workdir: str) -> float:
    done = subprocess.run([sys.executable, "-m", "bench.run", "--memory-child", str(count),
                           "--workdir", workdir], capture_output=True, text=True, check=True,
                          cwd=paths.PROJECT_ROOT)
    return float(done.stdout.strip().splitlines()[-1])


class BFloat16(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


def inference_choices(loaded, x, repeats, with_compile) -> dict:
    """Forward throughput of each way to run the same weights, and how far outputs (the
    probabilities) move on real galaxies ``x``."""
    from galaxy_core.model import inference_copy

    plain = copy.deepcopy(loaded.net).eval()
    variants = {
        "eager, NCHW (seed)": (plain, x.contiguous()),
        "eager, channels-last": (copy.deepcopy(plain).to(memory_format=torch.channels_last), x),
        "BatchNorm folded + channels-last (used)": (inference_copy(plain), x),
    }
    # bfloat16 halves the arithmetic where the CPU has native bf16 (AVX512-BF16/AMX) but
    # moves outputs by more than the 1e-3 allowed, so it is an opt-in, not the default
    variants["bfloat16 autocast of that (opt-in)"] = (BFloat16(inference_copy(plain)), x)
    if with_compile:
        variants["torch.compile of the folded, weights frozen"] = (
            torch.compile(inference_copy(plain), options={"freezing": True}), x)
    out = {}
    with torch.inference_mode():
        reference = plain(x.contiguous())
        for name, (net, inputs) in variants.items():
            seconds = timed(lambda: net(inputs), repeats)
            out[name] = (len(x) / seconds, float((net(inputs) - reference).abs().max()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 images, 1 repeat: smoke only")
    parser.add_argument("--json", default=os.path.join("bench", "results", "latest.json"))
    parser.add_argument("--with-compile", action="store_true",
                        help="also time torch.compile (minutes of compilation on a small CPU)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.workdir)
        return 0

    n_images = 8 if args.quick else 1024
    repeats = 1 if args.quick else 5
    batch = 8 if args.quick else 64
    workdir = tempfile.mkdtemp(prefix="galaxy-bench-")
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    # the ceiling: the fastest forward of these weights (BatchNorm folded, channels-last), the
    # same network prediction runs, so a ratio shows only what decoding and plumbing cost
    net, p = loaded.fast_net, loaded.preprocess
    size = p.image_size
    files = replicate_images(paths.SAMPLE_IMAGES, n_images, os.path.join(workdir, "images"))
    results, raw = {}, {}

    # 1. one upload, bytes in -> probabilities out, vs the raw forward at batch 1
    data = open(files[0], "rb").read()
    x1 = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        raw["forward_b1_s"] = timed(lambda: net(x1), repeats * 4)
    raw["single_image_end_to_end_s"] = timed(lambda: predict_image(loaded, data), repeats * 4)
    results["single_image_latency_ratio"] = raw["single_image_end_to_end_s"] / raw["forward_b1_s"]

    # 2-3. a folder of JPEGs -> CSV, vs the raw forward throughput and vs the seed's pipeline
    xb = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        forward_batch_s = timed(lambda: net(xb), repeats)
    raw["forward_images_per_s"] = batch / forward_batch_s
    out_csv = os.path.join(workdir, "pred.csv")

    def ours():
        predict_files(loaded, files, batch_size=batch, workers=1).to_csv(out_csv)

    raw["batch_predict_images_per_s"] = n_images / timed(ours, max(1, repeats // 2))
    raw["seed_pipeline_images_per_s"] = n_images / timed(
        lambda: seed_pipeline(loaded, files), max(1, repeats // 2))
    results["batch_predict_throughput_ratio"] = (raw["batch_predict_images_per_s"]
                                                 / raw["forward_images_per_s"])
    results["batch_predict_speedup_vs_seed"] = (raw["batch_predict_images_per_s"]
                                                / raw["seed_pipeline_images_per_s"])
    # the opt-in bfloat16 mode (train.predict --precision bfloat16): reported, not a target,
    # since it moves outputs by more than 1e-3
    raw["batch_predict_bfloat16_images_per_s"] = n_images / timed(
        lambda: predict_files(loaded, files, batch_size=batch, workers=1,
                              precision="bfloat16").to_csv(out_csv), max(1, repeats // 2))
    # context, not the target: the seed as it shipped (224 px, whole frame), i.e. what a user
    # of the seed waited for; our smaller cropped input is a recipe choice that also pays here
    raw["seed_as_shipped_224px_images_per_s"] = n_images / timed(
        lambda: seed_pipeline(loaded, files, as_seed_shipped=True), max(1, repeats // 2))
    context = {"bfloat16_speedup_vs_seed": (raw["batch_predict_bfloat16_images_per_s"]
                                           / raw["seed_pipeline_images_per_s"]),
              "speedup_vs_seed_as_shipped_224px": (raw["batch_predict_images_per_s"]
                                                   / raw["seed_as_shipped_224px_images_per_s"])}

    # 4. a training epoch including data loading vs raw forward+backward on in-memory tensors
    labels = os.path.join(workdir, "labels.csv")
    ids = [os.path.splitext(os.path.basename(f))[0] for f in files]
    rng = np.random.default_rng(0)
    with open(labels, "w") as handle:
        handle.write("GalaxyID,Class1.1,Class1.2,Class1.3\n")
        for galaxy_id in ids:
            v = rng.dirichlet([1, 1, 1])
            handle.write(f"{galaxy_id},{v[0]:.4f},{v[1]:.4f},{v[2]:.4f}\n")
    train_batch = 32
    epochs = 1 if args.quick else 2
    config = TrainConfig(images=os.path.dirname(files[0]), labels=labels,
                         out=os.path.join(workdir, "run"), epochs=epochs, batch_size=train_batch,
                         image_size=size, crop_fraction=p.crop_fraction, augment="full",
                         head="tree", val_fraction=0.0, workers=2, device="cpu")
    started = time.perf_counter()
    history = fit(config).history
    raw["training_wall_s_including_decode"] = time.perf_counter() - started
    raw["training_epoch_images_per_s"] = history[-1]["train_images_per_s"]
    raw["training_images_per_s_including_decode"] = (
        n_images * epochs / raw["training_wall_s_including_decode"])
    # the opt-in bfloat16 autocast (train.train --precision bfloat16), same epochs: context
    bf16_config = dataclasses.replace(config, out=os.path.join(workdir, "run-bf16"),
                                      precision="bfloat16")
    raw["training_bfloat16_epoch_images_per_s"] = fit(bf16_config).history[-1][
        "train_images_per_s"]
    context["training_bfloat16_speedup"] = (raw["training_bfloat16_epoch_images_per_s"]
                                            / raw["training_epoch_images_per_s"])
    from galaxy_core.model import build_model
    trainee = build_model(loaded.net.config).train().to(memory_format=torch.channels_last)
    trainee.load_state_dict(loaded.net.state_dict())
    optimizer = torch.optim.Adam(trainee.parameters(), 1e-3)
    xt = torch.randn(train_batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    yt = torch.rand(train_batch, 37)

    def train_step():
        loss = masked_mse(trainee(xt), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    raw["forward_backward_images_per_s"] = train_batch / timed(train_step, repeats * 2)
    results["training_epoch_throughput_ratio"] = (raw["training_epoch_images_per_s"]
                                                  / raw["forward_backward_images_per_s"])

    # 5. Grad-CAM of one image vs forward+backward of one image
    image = prepare_for_model(files[0], p)
    net_eval = loaded.net.eval()
    x_one = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)

    def forward_backward_one():
        x = x_one.clone().requires_grad_(True)
        net_eval(x)[0, 0].backward()
        for param in net_eval.parameters():
            param.grad = None

    raw["forward_backward_b1_s"] = timed(forward_backward_one, repeats * 4)
    raw["gradcam_s"] = timed(lambda: compute_cam(loaded, image, None), repeats * 4)
    results["gradcam_latency_ratio"] = raw["gradcam_s"] / raw["forward_backward_b1_s"]
    # the Grad-CAM page's default: the map averaged over the 8 views, one batch of 8
    raw["gradcam_8_views_s"] = timed(lambda: compute_cam(loaded, image, None, tta=True), repeats)
    context["gradcam_8_views_vs_forward_backward_b1"] = (raw["gradcam_8_views_s"]
                                                         / raw["forward_backward_b1_s"])

    # 6. memory of batch prediction: 4000 images vs 400 (each in a fresh process)
    small, large = (16, 160) if args.quick else (400, 4000)
    raw[f"predict_peak_rss_mb_{small}"] = peak_rss(small, workdir)
    raw[f"predict_peak_rss_mb_{large}"] = peak_rss(large, workdir)
    results["batch_predict_memory_ratio_4000_vs_400"] = (raw[f"predict_peak_rss_mb_{large}"]
                                                         / raw[f"predict_peak_rss_mb_{small}"])

    # 7. what each inference choice is worth (forward at the batch size above; max |diff|)
    real = normalize(torch.stack([prepare_for_model(f, p) for f in files[:batch]]), p)
    choices = inference_choices(loaded, real.contiguous(memory_format=torch.channels_last),
                                repeats, args.with_compile)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
               "python": platform.python_version(), "model_input_px": size,
               "images": n_images, "batch": batch, "quick": args.quick,
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"machine: {machine}")
    print(f"{'measure':44s} {'value':>9s}  target   ok")
    for name, value in results.items():
        op, target = TARGETS[name]
        ok = value <= target if op == "<=" else value >= target
        print(f"{name:44s} {value:9.3f}  {op}{target:<5}  {'yes' if ok else 'NO'}")
    print("inference choices (forward images/s at batch %d, max |change| of outputs):" % batch)
    for name, (rate, diff) in choices.items():
        print(f"  {name:44s} {rate:10.1f}  {diff:.1e}")
    print("context, not targets (bfloat16 moves outputs by the change above; the seed as "
          "shipped ran a 224 px whole frame; training speedup is epoch vs float32 epoch):")
    for name, value in context.items():
        print(f"  {name:44s} {value:10.3f}")
    print("absolute figures:")
    for name, value in raw.items():
        print(f"  {name:44s} {value:10.4f}")
    if args.json:
        write_json(args.json, {"machine": machine, "ratios": results, "context": context,
                               "absolute": raw,
                               "inference_choices": {k: {"images_per_s": r, "max_abs_change": d}
                                                     for k, (r, d) in choices.items()},
                               "targets": {k: f"{op} {t}" for k, (op, t) in TARGETS.items()}})
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
