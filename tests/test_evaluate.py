import dataclasses

import numpy as np
import pytest

from galaxy_core.data import read_labels
from galaxy_core.evaluate import evaluate, report_table
from galaxy_core.metrics import without_columns
from galaxy_core.metrics import rmse_report
from galaxy_core.schema import ANSWER_COLUMNS, COLUMN_INDEX
from tests.conftest import make_loaded


def test_rmse_by_hand():
    preds = np.zeros((2, 37))
    targets = np.full((2, 37), np.nan)
    targets[0, COLUMN_INDEX["Class1.1"]] = 0.3  # error 0.3
    targets[1, COLUMN_INDEX["Class1.1"]] = 0.4  # error 0.4
    targets[0, COLUMN_INDEX["Class6.1"]] = 0.0  # error 0
    report = rmse_report(preds, targets)
    assert report["rmse"] == pytest.approx(np.sqrt((0.09 + 0.16) / 3))
    assert report["per_answer"]["Class1.1"] == pytest.approx(np.sqrt(0.125))
    assert report["per_question"]["Q1"] == pytest.approx(np.sqrt(0.125))
    assert report["per_question"]["Q6"] == 0.0
    assert report["per_question"]["Q4"] is None
    assert report["known_cells"] == 3


def test_majority_agreement_counts_only_questions_most_volunteers_reached():
    from galaxy_core.metrics import majority_agreement
    targets = np.full((3, 37), np.nan)
    preds = np.zeros((3, 37))
    q1 = [COLUMN_INDEX[c] for c in ("Class1.1", "Class1.2", "Class1.3")]
    q2 = [COLUMN_INDEX[c] for c in ("Class2.1", "Class2.2")]
    targets[:, q1] = [[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.1, 0.6, 0.3]]
    preds[:, q1] = [[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1]]  # right, wrong, right
    # Q2 hangs off "features" (Class1.2): reached by 30%, 80% and 60% of the volunteers
    targets[:, q2] = [[0.3, 0.0], [0.1, 0.7], [0.5, 0.1]]
    preds[:, q2] = [[0.0, 0.3], [0.1, 0.7], [0.1, 0.5]]  # (not counted), right, wrong
    agreement = majority_agreement(preds, targets)
    assert agreement["Q1"] == {"agreement": pytest.approx(2 / 3), "galaxies": 3}
    assert agreement["Q2"] == {"agreement": 0.5, "galaxies": 2}
    assert agreement["Q3"] is None  # no targets
    targets[0, q1[2]] = np.nan  # a galaxy with an unknown answer is not counted
    assert majority_agreement(preds, targets)["Q1"]["galaxies"] == 2


def test_evaluate_a_model_on_a_folder(galaxy_folder, loaded):
    result = evaluate(loaded, galaxy_folder["images"], galaxy_folder["labels"], workers=0)
    assert result.preds.shape == (16, 37)
    expected = np.sqrt(np.mean((result.preds - galaxy_folder["targets"]) ** 2))
    assert result.report["rmse"] == pytest.approx(expected, rel=1e-5)
    text = report_table(result.report)
    assert "overall" in text and "Q11 number of arms" in text
    assert "top answer = volunteers' in" in text
    assert result.report["majority_agreement"]["Q1"]["galaxies"] == 16


def test_labels_with_answers_the_model_never_learned_are_scored_apart(galaxy_folder):
    # the shipped model learned 17 answers; full Kaggle labels have all 37: the headline must
    # be the score over what the model learned, the all-columns score next to it
    from galaxy_core.evaluate import mean_baseline
    learned = ANSWER_COLUMNS[:17]
    model = make_loaded(head="tree", trained=learned)
    result = evaluate(model, galaxy_folder["images"], galaxy_folder["labels"], workers=0)
    targets = galaxy_folder["targets"]
    assert result.report["untrained_columns_with_targets"] == list(ANSWER_COLUMNS[17:])
    assert result.report["rmse"] == pytest.approx(
        np.sqrt(np.mean((result.preds - targets) ** 2)), rel=1e-5)
    assert result.report["learned_answers"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((result.preds[:, :17] - targets[:, :17]) ** 2)), rel=1e-5)
    baseline = mean_baseline(result)
    assert baseline["learned_answers"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((targets[:, :17] - targets[:, :17].mean(axis=0)) ** 2)), rel=1e-5)
    text = report_table(result.report, baseline)
    assert "overall, the 17 learned answers" in text and "overall, all 37 with targets" in text
    # labels of only the learned answers: one overall row, the same number
    only = evaluate(model, galaxy_folder["images"], galaxy_folder["labels"], workers=0,
                    table=dataclasses.replace(read_labels(galaxy_folder["labels"]),
                                              targets=without_columns(targets, ANSWER_COLUMNS[17:]),
                                              columns=tuple(learned)))
    assert "learned_answers" not in only.report
    assert only.report["rmse"] == pytest.approx(result.report["learned_answers"]["rmse"])


def test_mean_over_splits_and_recipe_differences():
    from galaxy_core.evaluate import mean_over_splits, recipe_differences
    splits = [{"model": {"rmse": 0.1, "per_question": {"Q1": 0.2}, "per_answer": {}},
               "model_tta": None, "mean_baseline": {"rmse": 0.3}},
              {"model": {"rmse": 0.2, "per_question": {"Q1": 0.4}, "per_answer": {}},
               "model_tta": None, "mean_baseline": {"rmse": 0.5}}]
    mean = mean_over_splits(splits)
    assert mean["splits"] == 2
    assert mean["model"]["rmse"] == pytest.approx(0.15)
    assert mean["model"]["per_question"]["Q1"] == pytest.approx(0.3)
    assert mean["model"]["per_question"]["Q2"] is None  # no split knows it
    assert mean["model_tta"]["rmse"] is None and mean["mean_baseline"]["rmse"] == pytest.approx(0.4)
    assert mean["model"]["majority_agreement"]["Q1"] is None  # these splits did not count it
    # agreement with the volunteers' majority: averaged where every split counted it
    for split, share, galaxies in zip(splits, (0.9, 0.8), (800, 790)):
        split["model"]["majority_agreement"] = {"Q1": {"agreement": share, "galaxies": galaxies},
                                                "Q2": {"agreement": 0.5, "galaxies": 400}}
    del splits[1]["model"]["majority_agreement"]["Q2"]
    agreement = mean_over_splits(splits)["model"]["majority_agreement"]
    assert agreement["Q1"] == {"agreement": pytest.approx(0.85), "galaxies": pytest.approx(795)}
    assert agreement["Q2"] is None  # one split alone does not stand for the recipe
    base = {"seed": 0, "val_fraction": 0.2, "out": "a", "image_size": 160, "lr": 1e-3}
    assert recipe_differences(base, dict(base, seed=1, val_fraction=0.0, out="b")) == []
    assert recipe_differences(base, dict(base, image_size=128, lr=2e-3)) == ["image_size", "lr"]
    # a record from before train_fraction existed means the whole training part
    assert recipe_differences(base, dict(base, train_fraction=1.0)) == []
    assert recipe_differences(base, dict(base, train_fraction=0.5)) == ["train_fraction"]
    tuned = dict(base, init_from="runs/split0/last.pt")
    assert recipe_differences(tuned, dict(base, init_from="runs/all/last.pt")) == []
    assert recipe_differences(tuned, base) == ["init_from"]


def test_learning_curve_fit_recovers_a_known_curve_and_refuses_a_flat_one():
    from galaxy_core.evaluate import learning_curve_fit

    def truth(n):
        return 0.06 + 4.0 * n ** -0.6

    fit = learning_curve_fit([1600, 2400, 3200], [truth(1600), truth(2400), truth(3200)])
    assert fit["predict"](4000) == pytest.approx(truth(4000), abs=2e-4)
    assert fit["predict"](4000) < truth(3200)
    assert learning_curve_fit([1600, 2400, 3200], [0.10, 0.09, 0.095]) is None  # not falling
    assert learning_curve_fit([1600, 3200], [0.10, 0.09]) is None  # too few sizes
