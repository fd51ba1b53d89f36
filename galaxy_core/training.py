"""The one training loop (``fit``), used by the CLI and by the training page.

``fit`` takes a ``TrainConfig``, an event callback and a stop flag; it never prints. Images
are decoded once into uint8 caches (training ones with room for rotations), so each step costs
little more than the model's own forward and backward. It saves ``last.pt`` every epoch and
``best.pt`` whenever validation RMSE improves, atomically and in the order ``runs`` describes
(so a kill at any moment loses at most the epoch in progress), and can resume from
``last.pt``: only with the settings that run was started with
(``checkpoint.read_run_to_resume``), on the same split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import augment, runs
from .checkpoint import (CheckpointError, atomic_save, load_checkpoint, make_checkpoint,
                         read_run_to_resume, recorded_config, resume_path, training_stages)
from .config import TrainConfig
from .data import (DataError, check_images_exist, decode_images, image_path, read_labels,
                   select_subset, split_train_val)
from .device import bfloat16_warning, describe, select_device
from .distributed import (SINGLE, DistContext, any_rank, barrier, gather, mean_across,
                          shard_order, split_evenly, sync_buffers)
from .images import normalize_float
from .metrics import masked_mse, score
from .model import build_model
from .predict import run_model
from .schema import NUM_ANSWERS

log = logging.getLogger(__name__)

EVAL_BATCH = 128


@dataclass
class TrainEvent:
    """What the loop reports. ``kind``: decode, start, step, epoch, done, cancelled."""

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    elapsed_s: float = 0.0
    message: str = ""
    metrics: dict = field(default_factory=dict)


@dataclass
class FitResult:
    out_dir: str
    best_path: str
    last_path: str
    history: list
    best_metrics: dict
    cancelled: bool
    device: str


def _no_stop():
    return False


def _make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "onecycle" and total_steps >= 4:
        # warm up for a quarter of the run (at least two steps, as OneCycleLR needs)
        pct_start = min(0.5, max(0.25, 2.0 / total_steps))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=total_steps, pct_start=pct_start)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return None


def predict_cached(net, images_uint8: torch.Tensor, preprocess, tta: bool = False,
                   batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Probabilities (N, 37) for a uint8 (N,3,S,S) cache, in batches."""
    outputs = [run_model(net, preprocess, images_uint8[start:start + batch_size], tta)
               for start in range(0, len(images_uint8), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, NUM_ANSWERS), np.float32)


def column_means(targets: np.ndarray) -> np.ndarray:
    """Mean of each answer over its known cells (0 where none is known)."""
    known = ~np.isnan(targets)
    return np.nan_to_num(targets).sum(axis=0) / np.maximum(known.sum(axis=0), 1)


def baseline_report(train_targets: np.ndarray, val_targets: np.ndarray) -> dict:
    """Scores (RMSE, majority agreement) of predicting the training mean for every validation
    galaxy."""
    mean = column_means(train_targets)
    return score(np.broadcast_to(mean, val_targets.shape), val_targets)


@dataclass
class _Data:
    table: object
    train_table: object
    val_table: object
    train_images: torch.Tensor  # uint8 (N, 3, C, C), with room for rotations
    val_images: torch.Tensor  # uint8 (M, 3, S, S), exactly the eval preprocessing
    description: dict


def _read_table(config: TrainConfig):
    """The run's galaxies (labels, subset), each checked to have an image: the inputs' errors,
    reported before anything is written."""
    table = select_subset(read_labels(config.labels), config.subset, config.subset_mode,
                          config.seed)
    check_images_exist(config.images, table.galaxy_ids)
    return table


def _load_data(config: TrainConfig, table, preprocess, emit, started, ctx: DistContext,
               expected_val_sha: str | None = None) -> _Data:
    """Split and decoded images of ``table``; ``expected_val_sha``, when given (a resumed
    run), is the validation split the run was trained on, refused if the labels now split
    otherwise."""
    train_table, val_table = split_train_val(table, config.val_fraction, config.seed,
                                            config.train_fraction)
    if expected_val_sha and ids_digest(val_table.galaxy_ids) != expected_val_sha:
        raise DataError(f"{config.labels}: splits into other validation galaxies than the run "
                        f"being resumed was validated on (the labels file changed?); a resumed "
                        f"run must keep its split, so start a new run instead")
    log.info("%d training and %d validation galaxies; answers with targets: %s",
             len(train_table), len(val_table), ", ".join(table.columns))

    def decode(tbl, size, fraction, what):
        paths = [image_path(config.images, g) for g in tbl.galaxy_ids]
        return decode_images(
            paths, size, fraction, workers=config.workers, cache_dir=config.cache_dir,
            on_progress=lambda done, total: emit(TrainEvent(
                "decode", step=done, steps=total, message=f"decoding {what} images",
                elapsed_s=time.perf_counter() - started)))

    def decode_all():
        return (decode(train_table, augment.context_size(preprocess, config.augment),
                       augment.context_fraction(preprocess, config.augment), "training"),
                decode(val_table, preprocess.image_size, preprocess.crop_fraction, "validation"))

    # with a shared on-disk cache, rank 0 decodes once and the others then read its cache
    shared_cache = ctx.distributed and bool(config.cache_dir)
    if shared_cache and not ctx.is_main:
        barrier(ctx)
    train_images, val_images = decode_all()
    if shared_cache and ctx.is_main:
        barrier(ctx)
    description = {
        "images": os.path.abspath(config.images), "labels": os.path.abspath(config.labels),
        "galaxies": len(table), "train_galaxies": len(train_table),
        "val_galaxies": len(val_table), "val_fraction": config.val_fraction,
        "train_fraction": config.train_fraction,
        "split_seed": config.seed, "subset": config.subset,
        "val_ids_sha": ids_digest(val_table.galaxy_ids), "world_size": ctx.world_size,
        # which galaxies it learned from, so a page can tell a fit from a fair test per galaxy
        "train_ids": [int(g) for g in train_table.galaxy_ids],
    }
    return _Data(table, train_table, val_table, train_images, val_images, description)


def _validate(net, data: _Data, preprocess, ctx: DistContext) -> dict:
    """Scores (RMSE, majority agreement) on the validation set; each rank predicts a share,
    all ranks get the whole report, identical to a single process's."""
    sync_buffers(net, ctx)
    mine = split_evenly(len(data.val_table), ctx)
    preds = predict_cached(net, data.val_images[mine], preprocess)
    full = np.zeros((len(data.val_table), NUM_ANSWERS), np.float32)
    for index, part in gather((mine, preds), ctx):
        full[index] = part
    return score(full, data.val_table.targets)


def starting_weights(config: TrainConfig) -> tuple[dict, list]:
    """The weights ``config.init_from`` names (fine-tuning) and the training stages that made
    them (``training_stages``), read before any image is decoded so that a wrong file fails at
    once. Only the output head's kind must match: dropout, image size and crop are the new
    run's own."""
    source = load_checkpoint(config.init_from)
    if source.net.config.head != config.head:
        raise CheckpointError(f"{config.init_from}: has a {source.net.config.head!r} output head, "
                              f"this run a {config.head!r} one: choose head "
                              f"{source.net.config.head!r} to fine-tune it")
    log.info("starting from the weights of %s (epoch %s)", config.init_from,
             source.meta.get("epoch", "?"))
    return source.net.state_dict(), training_stages(source.meta)


def fit(config: TrainConfig, on_event=None, should_stop=None, ctx: DistContext = SINGLE,
        device: torch.device | None = None) -> FitResult:
    """Train per ``config``; under torchrun pass the session's ``ctx`` and ``device``. The
    process that writes (rank 0) holds ``config.out``'s lock throughout: a folder holds one
    run and has one writer (``runs``)."""
    emit = (on_event or (lambda event: None)) if ctx.is_main else (lambda event: None)
    should_stop = should_stop or _no_stop
    started = time.perf_counter()
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    start_weights, earlier_stages = starting_weights(config) if config.init_from else (None, [])
    # a run in another folder (a fork) is checked before anything is created; the folder's own
    # last.pt is read under the lock, where no other writer can be replacing it
    fork = config.resume not in ("", "auto") and not runs.is_own_last(config.out, config.resume)
    state = read_run_to_resume(config.resume, config) if fork else None
    table = _read_table(config)
    with runs.writer_lock(config.out) if ctx.is_main else contextlib.nullcontext():
        resume_from = config.resume if fork else resume_path(config)
        if resume_from and not fork:
            state = read_run_to_resume(resume_from, config)
        own = state is not None and not fork
        if ctx.is_main:
            runs.claim(config.out, resuming_own=own, overwrite=config.overwrite)
            if own:
                runs.settle(config.out, state)
        if state is not None and int(state.get("epoch", 0)) >= config.epochs:
            return _finished_run(resume_from, state, emit, started)
        if state is not None:  # a resumed or forked run keeps the stages it started from
            earlier_stages = list(state.get("earlier_stages") or [])
        return _train(config, table, state, resume_from, own, start_weights, earlier_stages,
                      emit, should_stop, started, ctx, device)


def _train(config: TrainConfig, table, state: dict | None, resume_from: str, own: bool,
           start_weights, earlier_stages: list, emit, should_stop, started: float,
           ctx: DistContext, device: torch.device | None) -> FitResult:
    """``fit``'s loop, with the folder claimed: from scratch, from ``start_weights``
    (fine-tuning) or from ``state`` (the last.pt at ``resume_from``: the folder's ``own``, or
    another folder's)."""
    device = device or select_device(config.device)
    preprocess = config.preprocess()
    augment_generator = torch.Generator().manual_seed(config.seed * 1000 + ctx.rank)
    bfloat16 = config.precision == "bfloat16"
    if bfloat16 and (caution := bfloat16_warning(device)):
        log.warning(caution)
    data = _load_data(config, table, preprocess, emit, started, ctx,
                      expected_val_sha=((state or {}).get("data") or {}).get("val_ids_sha"))
    train_targets = torch.from_numpy(data.train_table.targets)
    model_config = config.model_config()
    run_record = dataclasses.asdict(config)
    # how this run claimed its folder, not part of the run (a resumed or compared run must not
    # inherit or differ by it)
    del run_record["overwrite"]
    # one id for all of a run's checkpoints, resumed or forked, so that a best.pt can be told
    # to be this run's (runs written before ids existed have "")
    run_id = state.get("run_id", "") if state is not None else uuid.uuid4().hex[:12]
    if state is not None:  # the weights come from the checkpoint; the record keeps their origin
        model_config = dataclasses.replace(model_config, pretrained=False)
        recorded = recorded_config(state)
        run_record.update(init_from=recorded["init_from"], pretrained=recorded["pretrained"])
    net = build_model(model_config)
    if start_weights is not None:
        net.load_state_dict(start_weights)
    net = net.to(device).to(memory_format=torch.channels_last)
    model = net
    if ctx.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                        else None)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    optimizer = optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)
    per_rank = len(shard_order(torch.arange(len(data.train_table)), ctx))
    if per_rank < 2:
        raise DataError(f"{len(data.train_table)} training galaxies are too few: each process "
                        f"needs at least 2 per step (BatchNorm)")
    # a last step of a single image would break BatchNorm; that image waits for the next
    # epoch's reshuffle instead
    steps_per_epoch = per_rank // config.batch_size + (per_rank % config.batch_size >= 2)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch * config.epochs)

    history, best_metrics, start_epoch, best_rmse = [], {}, 0, math.inf
    if state is not None:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in state["state_dict"].items()})
        optimizer.load_state_dict(state["optimizer_state"])  # read_run_to_resume checked it
        if scheduler is not None and state.get("scheduler_state"):
            scheduler.load_state_dict(state["scheduler_state"])
        history = list(state.get("history", []))
        start_epoch = int(state.get("epoch", 0))
        best_rmse = _best_score(history)
        best_metrics = state.get("metrics", {}).get("best", {})
        augment_generator.manual_seed(config.seed * 1000 + ctx.rank + 7919 * start_epoch)
        log.info("resumed from %s at epoch %d", resume_from, start_epoch)

    best_path = os.path.join(config.out, runs.BEST)
    last_path = os.path.join(config.out, runs.LAST)
    pending_path = os.path.join(config.out, runs.PENDING_BEST)
    if ctx.is_main and not own:  # a new run, or a fork: the folder starts with this run only
        runs.discard(config.out)
        if state is not None:
            runs.start_fork(config.out, resume_from, state)
    baseline = (baseline_report(data.train_table.targets, data.val_table.targets)
                if len(data.val_table) else {})
    emit(TrainEvent("start", epoch=start_epoch, epochs=config.epochs, steps=steps_per_epoch,
                    message=f"training on {describe(device)}"
                            + (f" x {ctx.world_size} processes" if ctx.distributed else "")
                            + (" with bfloat16 autocast" if bfloat16 else ""),
                    metrics={"device": describe(device), "train_galaxies": len(data.train_table),
                             "val_galaxies": len(data.val_table),
                             "baseline_val_rmse": baseline.get("rmse"),
                             "history": list(history)},  # a resumed run's earlier epochs
                    elapsed_s=time.perf_counter() - started))

    cancelled = False
    for epoch in range(start_epoch, config.epochs):
        model.train()
        epoch_start = time.perf_counter()
        # the same permutation on every rank (seeded by epoch), then each takes its share
        order = torch.randperm(len(data.train_table),
                               generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        order = shard_order(order, ctx)
        loss_sum, seen = 0.0, 0
        for step in range(steps_per_epoch):
            if any_rank(should_stop(), ctx, device):
                cancelled = True
                break
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            batch = data.train_images[index].to(device, non_blocking=True).float().div_(255.0)
            batch = augment.augment_batch(batch, preprocess, config.augment, augment_generator)
            batch = normalize_float(batch, preprocess).contiguous(memory_format=torch.channels_last)
            targets = train_targets[index].to(device, non_blocking=True)
            # bfloat16 covers the forward pass only: weights, gradients' accumulation into
            # them, the loss and validation stay float32
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
                outputs = model(batch)
            loss = masked_mse(outputs.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.item() * len(index)
            seen += len(index)
            emit(TrainEvent("step", epoch=epoch + 1, epochs=config.epochs, step=step + 1,
                            steps=steps_per_epoch, metrics={"train_loss": loss_sum / seen},
                            elapsed_s=time.perf_counter() - started))
        if cancelled:
            break

        elapsed = time.perf_counter() - epoch_start
        record = {"epoch": epoch + 1,
                  "train_loss": mean_across(loss_sum / max(1, seen), ctx, device),
                  "lr": optimizer.param_groups[0]["lr"], "epoch_s": elapsed,
                  "train_images_per_s": seen * ctx.world_size / elapsed}
        report = _validate(net, data, preprocess, ctx) if len(data.val_table) else {}
        if report:
            record.update(val_loss=report["rmse"] ** 2, val_rmse=report["rmse"],
                          val_per_question=report["per_question"],
                          val_per_answer=report["per_answer"])
        history.append(record)
        epoch_rmse = _score(record)
        improved = epoch_rmse < best_rmse
        if improved:
            best_rmse = epoch_rmse
            best_metrics = {"epoch": epoch + 1, "val": report, "baseline_val": baseline}
        if ctx.is_main:  # only rank 0 writes; it saves the unwrapped model
            metrics = {"best": best_metrics, "last": {"epoch": epoch + 1, "val": report}}

            def checkpoint(with_optimizer):
                return make_checkpoint(
                    net, preprocess, data.table.columns, epoch=epoch + 1, metrics=metrics,
                    history=history, data={**data.description, "device": describe(device)},
                    train_config=run_record,
                    optimizer_state=optimizer.state_dict() if with_optimizer else None,
                    scheduler_state=(scheduler.state_dict() if with_optimizer and scheduler
                                     else None), run_id=run_id,
                    earlier_stages=earlier_stages)

            # last.pt is the commit point: a kill before it is replaced redoes this epoch on
            # resume; what follows it, runs.settle completes from it (see runs)
            if improved:
                atomic_save(checkpoint(False), pending_path)
            atomic_save(checkpoint(True), last_path)
            if os.path.exists(pending_path):
                os.replace(pending_path, best_path)
            runs.write_history(os.path.join(config.out, runs.HISTORY), history)
        emit(TrainEvent("epoch", epoch=epoch + 1, epochs=config.epochs, steps=steps_per_epoch,
                        metrics={**record, "improved": improved, "best_rmse": best_rmse},
                        elapsed_s=time.perf_counter() - started))
    barrier(ctx)  # the others wait until rank 0 has written the last checkpoint

    emit(TrainEvent("cancelled" if cancelled else "done", epoch=len(history),
                    epochs=config.epochs, metrics={"best_rmse": best_rmse},
                    elapsed_s=time.perf_counter() - started))
    return FitResult(out_dir=config.out, best_path=best_path if os.path.exists(best_path) else "",
                     last_path=last_path if os.path.exists(last_path) else "", history=history,
                     best_metrics=best_metrics, cancelled=cancelled, device=describe(device))


def _score(record: dict) -> float:
    """What an epoch is judged by: its validation RMSE, or for a run without validation
    galaxies the root of its training loss."""
    if record.get("val_rmse") is not None:
        return record["val_rmse"]
    return record["train_loss"] ** 0.5


def _best_score(history: list) -> float:
    """The best (lowest) epoch score in a run's history (inf when it has none)."""
    return min([_score(h) for h in history if not math.isnan(_score(h))] or [math.inf])


def _finished_run(path: str, state: dict, emit, started: float) -> FitResult:
    """What resuming a run that already holds all its epochs returns: that run, untouched."""
    epoch = int(state.get("epoch", 0))
    log.info("%s already holds all %d epochs: nothing left to train", path, epoch)
    folder = os.path.dirname(path)
    history = list(state.get("history", []))
    emit(TrainEvent("done", epoch=epoch, epochs=epoch, message="nothing left to train",
                    metrics={"best_rmse": _best_score(history)},
                    elapsed_s=time.perf_counter() - started))
    best = os.path.join(folder, "best.pt")
    return FitResult(out_dir=folder, best_path=best if os.path.exists(best) else "",
                     last_path=path, history=history,
                     best_metrics=state.get("metrics", {}).get("best", {}), cancelled=False,
                     device="")


def ids_digest(ids) -> str:
    return hashlib.sha256(",".join(str(int(g)) for g in ids).encode()).hexdigest()[:16]
