import json
import os

import pytest
import torch

from galaxy_core.checkpoint import (CheckpointError, load_checkpoint, read_checkpoint,
                                    resumed_config, training_stages)
from galaxy_core.config import TrainConfig
from galaxy_core.data import DataError
from galaxy_core.model import build_model
from galaxy_core.training import fit


def tiny_config(folder, out, **overrides):
    settings = dict(images=folder["images"], labels=folder["labels"], out=str(out), epochs=3,
                    batch_size=8, lr=3e-3, image_size=32, crop_fraction=0.8, augment="none",
                    head="tree", workers=0, val_fraction=0.25, device="cpu", dropout=0.0)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_fit_lowers_the_loss_and_reports_ordered_events(galaxy_folder, tmp_path):
    events = []
    result = fit(tiny_config(galaxy_folder, tmp_path / "run", epochs=4), on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "decode" and kinds[-1] == "done"
    assert kinds.index("start") < kinds.index("step") < kinds.index("epoch")
    epochs = [e.epoch for e in events if e.kind == "epoch"]
    assert epochs == [1, 2, 3, 4]
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert all(h["val_rmse"] is not None for h in result.history)
    assert os.path.isfile(result.best_path) and os.path.isfile(result.last_path)
    history = json.load(open(tmp_path / "run" / "history.json"))
    assert len(history) == 4
    loaded = load_checkpoint(result.best_path)
    assert loaded.preprocess.image_size == 32 and len(loaded.trained_columns) == 37
    best_epoch = min(history, key=lambda h: h["val_rmse"])["epoch"]
    assert loaded.meta["epoch"] == best_epoch
    # the best epoch's scores, and the mean baseline's, count agreement with the volunteers
    # (every validation galaxy reached Q1, the question everyone is asked)
    best = loaded.meta["metrics"]["best"]
    assert best["val"]["majority_agreement"]["Q1"]["galaxies"] == 4
    assert 0 <= best["baseline_val"]["majority_agreement"]["Q1"]["agreement"] <= 1


def test_resume_continues_from_the_last_epoch(galaxy_folder, tmp_path):
    first = fit(tiny_config(galaxy_folder, tmp_path / "a", epochs=2))
    resumed = fit(tiny_config(galaxy_folder, tmp_path / "b", epochs=3, resume=first.last_path))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history


def test_resume_refuses_another_recipe_split_or_length_before_decoding(galaxy_folder, tmp_path):
    first = fit(tiny_config(galaxy_folder, tmp_path / "a", epochs=2, schedule="onecycle"))
    refusals = {
        "image_size: 32 -> 48": dict(image_size=48),
        "seed: 0 -> 1": dict(seed=1),  # another seed is another split
        "val_fraction: 0.25 -> 0.5": dict(val_fraction=0.5),
        "epochs: 2 -> 3": dict(epochs=3),  # the one-cycle schedule was laid out over 2 epochs
    }
    for difference, change in refusals.items():
        events = []
        config = tiny_config(galaxy_folder, tmp_path / "b", **{
            "epochs": 2, "schedule": "onecycle", "resume": first.last_path, **change})
        with pytest.raises(CheckpointError, match=difference):
            fit(config, on_event=events.append)
        assert events == [] and not (tmp_path / "b").exists()
    with pytest.raises(CheckpointError, match="no optimiser state"):
        fit(tiny_config(galaxy_folder, tmp_path / "b", epochs=2, schedule="onecycle",
                        resume=first.best_path))
    # what may change: where it writes, where and in which arithmetic it computes
    same = fit(tiny_config(galaxy_folder, tmp_path / "b", epochs=2, schedule="onecycle",
                           resume=first.last_path, precision="bfloat16", workers=1))
    assert same.history == first.history  # nothing left to train


def test_resume_refuses_labels_that_split_the_galaxies_otherwise(galaxy_folder, tmp_path):
    first = fit(tiny_config(galaxy_folder, tmp_path / "a", epochs=1))
    labels = (tmp_path / "labels.csv").read_text().splitlines()
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("\n".join(labels[:1] + labels[2:]) + "\n")  # one galaxy less: another split
    with pytest.raises(DataError, match="other validation galaxies"):
        fit(tiny_config(galaxy_folder, tmp_path / "b", epochs=2, labels=str(fewer),
                        resume=first.last_path))
    assert not (tmp_path / "b" / "last.pt").exists()


def test_resume_auto_continues_an_interrupted_run_and_leaves_a_finished_one(galaxy_folder,
                                                                             tmp_path):
    out = tmp_path / "run"
    epochs_seen = []
    interrupted = fit(tiny_config(galaxy_folder, out, epochs=3, schedule="onecycle",
                                  resume="auto"),
                      on_event=lambda e: epochs_seen.append(e.epoch) if e.kind == "epoch" else None,
                      should_stop=lambda: len(epochs_seen) >= 2)  # stops during epoch 3
    assert interrupted.cancelled and [h["epoch"] for h in interrupted.history] == [1, 2]
    finished = fit(tiny_config(galaxy_folder, out, epochs=3, schedule="onecycle",
                               resume="auto"))
    assert [h["epoch"] for h in finished.history] == [1, 2, 3]
    assert finished.history[:2] == interrupted.history
    written = os.path.getmtime(out / "last.pt")
    again = fit(tiny_config(galaxy_folder, out, epochs=3, schedule="onecycle", resume="auto"))
    assert again.history == finished.history and again.best_path == finished.best_path
    assert os.path.getmtime(out / "last.pt") == written  # untouched
    uninterrupted = fit(tiny_config(galaxy_folder, tmp_path / "straight", epochs=3,
                                    schedule="onecycle"))
    assert [h["val_rmse"] for h in finished.history] == pytest.approx(
        [h["val_rmse"] for h in uninterrupted.history], abs=1e-6)
    with pytest.raises(CheckpointError, match="epochs: 3 -> 4"):
        fit(tiny_config(galaxy_folder, out, epochs=4, schedule="onecycle", resume="auto"))


def test_a_resumed_fine_tuning_run_keeps_its_origin_and_recipe(galaxy_folder, tmp_path):
    source = fit(tiny_config(galaxy_folder, tmp_path / "source", epochs=1))
    tuned = fit(tiny_config(galaxy_folder, tmp_path / "tuned", epochs=1,
                            init_from=source.last_path))
    config = resumed_config(tuned.last_path, out=str(tmp_path / "more"), device="cpu")
    assert (config.image_size, config.epochs, config.resume) == (32, 1, tuned.last_path)
    longer = fit(TrainConfig(**{**config.__dict__, "epochs": 2}))  # constant lr: may grow
    raw = read_checkpoint(longer.last_path)
    record = raw["train_config"]
    assert record["init_from"] == source.last_path and record["epochs"] == 2
    # the run it was fine-tuned from stays recorded through the resume (the model card's stages)
    assert [s["train_config"]["out"] for s in raw["earlier_stages"]] == [str(tmp_path / "source")]
    with pytest.raises(ValueError, match="keeps its own image_size"):
        resumed_config(tuned.last_path, image_size=64)


def test_cancellation_stops_between_steps_and_keeps_saved_epochs(galaxy_folder, tmp_path):
    steps = []

    def on_event(event):
        if event.kind == "step":
            steps.append(event)

    result = fit(tiny_config(galaxy_folder, tmp_path / "c", epochs=5), on_event=on_event,
                 should_stop=lambda: len(steps) >= 3)
    assert result.cancelled
    assert len(steps) == 3
    assert len(result.history) == 1  # epoch 1 (2 steps) finished and was saved
    assert load_checkpoint(result.last_path).meta["epoch"] == 1


def test_partial_labels_train_only_known_columns(galaxy_folder, tmp_path):
    import pandas as pd
    frame = pd.read_csv(galaxy_folder["labels"])
    keep = ["GalaxyID"] + [c for c in frame.columns if c.startswith(("Class1.", "Class6."))]
    frame.loc[0, "Class1.1"] = None
    frame[keep].to_csv(tmp_path / "partial.csv", index=False)
    result = fit(tiny_config(galaxy_folder, tmp_path / "p", epochs=1,
                             labels=str(tmp_path / "partial.csv")))
    loaded = load_checkpoint(result.best_path)
    assert loaded.trained_columns == ("Class1.1", "Class1.2", "Class1.3", "Class6.1", "Class6.2")
    per_question = result.history[0]["val_per_question"]
    assert per_question["Q1"] is not None and per_question["Q4"] is None


def test_masked_mse_ignores_nan_cells():
    from galaxy_core.metrics import masked_mse
    preds = torch.tensor([[0.5, 0.0], [1.0, 0.0]])
    targets = torch.tensor([[0.0, float("nan")], [1.0, float("nan")]])
    assert masked_mse(preds, targets).item() == pytest.approx(0.125)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TrainConfig(images="x", labels="y", batch_size=0)
    with pytest.raises(ValueError, match="crop_fraction"):
        TrainConfig(images="x", labels="y", crop_fraction=2.0)


def test_a_leftover_single_image_batch_is_skipped(galaxy_folder, tmp_path):
    # 12 training galaxies in batches of 11: the 12th would be a batch of one, which
    # BatchNorm cannot train on at this size
    result = fit(tiny_config(galaxy_folder, tmp_path / "r", epochs=1, batch_size=11))
    assert len(result.history) == 1


def test_train_fraction_trains_on_a_share_and_evaluation_reproduces_it(galaxy_folder, tmp_path):
    from galaxy_core.evaluate import training_split

    result = fit(tiny_config(galaxy_folder, tmp_path / "run", epochs=1, train_fraction=0.5))
    loaded = load_checkpoint(result.best_path)
    assert loaded.meta["data"]["train_galaxies"] == 6 and loaded.meta["data"]["val_galaxies"] == 4
    train, val = training_split(loaded, galaxy_folder["labels"])
    assert len(train) == 6 and len(val) == 4
    # the checkpoint names the galaxies it learned from (the browser tells fit from test by it)
    assert sorted(loaded.meta["data"]["train_ids"]) == sorted(int(g) for g in train.galaxy_ids)
    with pytest.raises(ValueError, match="train_fraction"):
        tiny_config(galaxy_folder, tmp_path / "bad", train_fraction=1.5)


@pytest.mark.parametrize("optimizer, decoupled", [("adam", False), ("adamw", True)])
def test_optimizer_choice_decides_how_weight_decay_acts(galaxy_folder, tmp_path, optimizer,
                                                         decoupled):
    result = fit(tiny_config(galaxy_folder, tmp_path / optimizer, epochs=1, optimizer=optimizer,
                             weight_decay=0.05))
    raw = read_checkpoint(result.last_path)
    group = raw["optimizer_state"]["param_groups"][0]
    assert group["weight_decay"] == 0.05
    assert bool(group.get("decoupled_weight_decay")) is decoupled
    assert raw["train_config"]["optimizer"] == optimizer


def test_bfloat16_training_computes_in_bfloat16_and_saves_float32_weights(galaxy_folder, tmp_path,
                                                                          monkeypatch):
    import galaxy_core.training as training

    conv_dtypes = []

    def build_and_watch(config):
        net = build_model(config)
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_hook(
            lambda module, inputs, output: conv_dtypes.append((module.training, output.dtype)))
        return net

    monkeypatch.setattr(training, "build_model", build_and_watch)
    result = fit(tiny_config(galaxy_folder, tmp_path / "bf16", epochs=4, precision="bfloat16"))
    trained = {dtype for is_training, dtype in conv_dtypes if is_training}
    validated = {dtype for is_training, dtype in conv_dtypes if not is_training}
    assert trained == {torch.bfloat16}  # the training forward ran in bfloat16...
    assert validated == {torch.float32}  # ...and validation in float32
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    raw = read_checkpoint(result.last_path)
    assert raw["train_config"]["precision"] == "bfloat16"
    assert all(v.dtype == torch.float32 for v in raw["state_dict"].values() if v.is_floating_point())
    assert load_checkpoint(result.best_path).meta["epoch"] >= 1


@pytest.mark.parametrize("bad, message", [({"optimizer": "sgd"}, "optimizer must be one of"),
                                          ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
                                          ({"precision": "float16"}, "precision must be one of")])
def test_bad_optimizer_and_precision_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(images="x", labels="y", **bad)


def test_the_training_page_and_the_cli_show_the_same_field_help():
    """``field_help`` (the page's help texts) is what ``train.train --help`` prints per flag."""
    import argparse
    from galaxy_core.config import add_dataclass_flags, field_help
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, TrainConfig)
    cli_help = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    page_help = field_help(TrainConfig)
    assert cli_help.keys() <= page_help.keys()
    for name, text in cli_help.items():
        assert page_help[name] and text.startswith(page_help[name]), name
    assert "bfloat16 autocast" in page_help["precision"]


def conv_weights(path):
    state = read_checkpoint(path)["state_dict"]
    return {k: v.float() for k, v in state.items() if k.endswith("weight") and v.dim() == 4}


def test_init_from_starts_a_new_run_from_a_checkpoints_weights(galaxy_folder, tmp_path):
    source = fit(tiny_config(galaxy_folder, tmp_path / "source", epochs=2))
    # a learning rate too small to move anything: the run ends where it started
    still = dict(epochs=1, lr=1e-12, image_size=40, dropout=0.25)
    tuned = fit(tiny_config(galaxy_folder, tmp_path / "tuned", init_from=source.last_path,
                            **still))
    fresh = fit(tiny_config(galaxy_folder, tmp_path / "fresh", **still))
    trained, started, scratch = (conv_weights(r.last_path) for r in (source, tuned, fresh))
    assert all(torch.allclose(trained[k], started[k], atol=1e-6) for k in trained)
    assert not all(torch.allclose(trained[k], scratch[k], atol=1e-3) for k in trained)
    raw = read_checkpoint(tuned.last_path)
    assert raw["epoch"] == 1 and raw["preprocess"]["image_size"] == 40
    assert raw["train_config"]["init_from"] == source.last_path
    assert "optimizer_state" in raw  # a fresh optimiser, saved as usual


def test_a_fine_tune_with_resume_auto_starts_from_the_weights_then_continues(galaxy_folder,
                                                                             tmp_path):
    """One command for a fine-tune that survives a kill (make model's): --init-from with
    --resume auto starts from the checkpoint's weights when --out holds no run, and continues
    the run there when it does."""
    import json
    source = fit(tiny_config(galaxy_folder, tmp_path / "source", epochs=2))
    settings = dict(init_from=source.last_path, resume="auto", lr=1e-12, epochs=1)
    first = fit(tiny_config(galaxy_folder, tmp_path / "tuned", **settings))
    trained, started = conv_weights(source.last_path), conv_weights(first.last_path)
    assert all(torch.allclose(trained[k], started[k], atol=1e-6) for k in trained)
    fit(tiny_config(galaxy_folder, tmp_path / "tuned", **dict(settings, epochs=2)))
    history = json.loads((tmp_path / "tuned" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # continued, not started again
    assert read_checkpoint(tmp_path / "tuned" / "last.pt")["train_config"]["init_from"] == \
        source.last_path


def test_a_fine_tune_of_a_fine_tune_records_every_stage_for_the_model_card(galaxy_folder,
                                                                            tmp_path):
    from train.model_card import _recipe_lines
    base = fit(tiny_config(galaxy_folder, tmp_path / "base", epochs=2, augment="none"))
    first = fit(tiny_config(galaxy_folder, tmp_path / "first", epochs=1, lr=3e-4,
                            augment="seed", init_from=base.last_path))
    second = fit(tiny_config(galaxy_folder, tmp_path / "second", epochs=1, lr=1e-4,
                             init_from=first.last_path))
    stages = training_stages(load_checkpoint(second.last_path).meta)
    assert [s["train_config"]["out"] for s in stages] == [
        str(tmp_path / name) for name in ("base", "first", "second")]
    assert [(s["epoch"], s["train_config"]["lr"]) for s in stages] == [
        (2, 3e-3), (1, 3e-4), (1, 1e-4)]
    assert all(s["data"]["device"].startswith("CPU") for s in stages)
    assert all(s["epoch_s"] > 0 for s in stages)
    text = "\n".join(_recipe_lines(stages, ""))
    assert "Trained in 3 stages" in text
    assert "1. from scratch" in text and "2. fine-tuned from `last.pt`" in text
    assert "2 epochs" in text and "augmentation 'none'" in text and "augmentation 'seed'" in text
    # a model trained in one run reads as before
    alone = "\n".join(_recipe_lines(training_stages(load_checkpoint(base.last_path).meta), ""))
    assert "stages" not in alone and "2 epochs" in alone


def test_init_from_refuses_a_wrong_start_before_decoding(galaxy_folder, tmp_path):
    from galaxy_core.checkpoint import CheckpointError

    source = fit(tiny_config(galaxy_folder, tmp_path / "source", epochs=1))
    events = []
    with pytest.raises(CheckpointError, match="has a 'tree' output head, this run a 'plain'"):
        fit(tiny_config(galaxy_folder, tmp_path / "plain", head="plain",
                        init_from=source.last_path), on_event=events.append)
    assert events == [] and not (tmp_path / "plain").exists()
    with pytest.raises(CheckpointError, match="not found"):
        fit(tiny_config(galaxy_folder, tmp_path / "missing", init_from=str(tmp_path / "no.pt")))
    with pytest.raises(ValueError, match="init_from and resume exclude each other"):
        tiny_config(galaxy_folder, tmp_path / "both", init_from=source.last_path,
                    resume=source.last_path)
    with pytest.raises(ValueError, match="init_from and pretrained exclude each other"):
        tiny_config(galaxy_folder, tmp_path / "imagenet", init_from=source.last_path,
                    pretrained=True)


def test_fit_leaves_unknown_answer_cells_out_of_the_loss(galaxy_folder, tmp_path, monkeypatch):
    """Empty cells reach the loss as NaN and are masked out, never read as 0: a run where some
    cells are empty trains to other weights than one where they hold 0, while two runs of one
    file train to the same weights (so the difference is the mask's)."""
    import pandas as pd
    import galaxy_core.training as training
    from galaxy_core.metrics import masked_mse

    frame = pd.read_csv(galaxy_folder["labels"])
    unknown, zeros = frame.copy(), frame.copy()
    unknown.loc[::2, "Class1.1"] = None
    zeros.loc[::2, "Class1.1"] = 0.0
    unknown.to_csv(tmp_path / "unknown.csv", index=False)
    zeros.to_csv(tmp_path / "zeros.csv", index=False)
    targets_seen = []

    def spy(preds, targets):
        targets_seen.append(targets.clone())
        return masked_mse(preds, targets)

    monkeypatch.setattr(training, "masked_mse", spy)
    quick = dict(epochs=1, image_size=16, crop_fraction=1.0, freeze_backbone=True)

    def trained_weights(labels, out):
        result = fit(tiny_config(galaxy_folder, tmp_path / out, labels=str(tmp_path / labels),
                                 **quick))
        return read_checkpoint(result.last_path)["state_dict"]

    with_unknown = trained_weights("unknown.csv", "unknown")
    assert targets_seen and any(torch.isnan(t).any() for t in targets_seen)
    with_zeros = trained_weights("zeros.csv", "zeros")
    again = trained_weights("zeros.csv", "zeros_again")
    assert all(torch.equal(with_zeros[k], again[k]) for k in with_zeros)
    assert not all(torch.equal(with_unknown[k], with_zeros[k]) for k in with_zeros)
