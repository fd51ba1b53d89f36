import numpy as np
import pandas as pd
import pytest

from galaxy_core import paths, schema


def test_eleven_questions_37_answers_in_kaggle_order():
    assert len(schema.QUESTIONS) == 11
    assert len(schema.ANSWER_COLUMNS) == 37
    assert schema.ANSWER_COLUMNS[:3] == ("Class1.1", "Class1.2", "Class1.3")
    assert schema.ANSWER_COLUMNS[-1] == "Class11.6"
    assert schema.CSV_HEADER == ("GalaxyID", *schema.ANSWER_COLUMNS)
    counts = [len(q.answers) for q in schema.QUESTIONS]
    assert counts == [3, 2, 2, 2, 4, 2, 3, 7, 3, 3, 6]


def test_parents_match_the_kaggle_weighting():
    parents = {q.number: q.parent for q in schema.QUESTIONS}
    assert parents == {1: None, 2: "Class1.2", 3: "Class2.2", 4: "Class2.2", 5: "Class2.2",
                       6: None, 7: "Class1.1", 8: "Class6.1", 9: "Class2.1", 10: "Class4.1",
                       11: "Class4.1"}


def test_question_slices_are_contiguous_and_cover_everything():
    covered = []
    for q in schema.QUESTIONS:
        sl = schema.question_slice(q)
        assert list(schema.ANSWER_COLUMNS[sl]) == list(q.columns)
        covered += list(range(sl.start, sl.stop))
    assert covered == list(range(37))


def test_flow_ends_and_reaches_every_question():
    reached, todo = {1}, [1]
    while todo:
        for a in schema.QUESTION_BY_NUMBER[todo.pop()].answers:
            if a.next_question and a.next_question not in reached:
                reached.add(a.next_question)
                todo.append(a.next_question)
    assert reached == set(range(1, 12))


def test_check_columns_orders_and_rejects_unknown():
    assert schema.check_columns(["Class2.1", "Class1.1"]) == ["Class1.1", "Class2.1"]
    with pytest.raises(ValueError, match="Class12.1"):
        schema.check_columns(["Class12.1"])


def test_answer_name_is_readable():
    assert schema.answer_name("Class4.1") == "Q4 spiral arms (Class4.1)"


# Hand-written rows in the Kaggle weighting, one list per question (Q1 ... Q11): a face-on
# two-armed spiral and a smooth round galaxy. Every answer value is distinct enough that a
# question hung off the wrong answer would not add up.
HAND_WRITTEN = [
    [[0.2, 0.75, 0.05], [0.15, 0.6], [0.22, 0.38], [0.47, 0.13], [0.1, 0.3, 0.16, 0.04],
     [0.3, 0.7], [0.05, 0.1, 0.05], [0.1, 0, 0.05, 0, 0.05, 0.1, 0], [0.06, 0, 0.09],
     [0.17, 0.2, 0.1], [0, 0.31, 0.06, 0, 0, 0.1]],
    [[0.9, 0.08, 0.02], [0.03, 0.05], [0.01, 0.04], [0.02, 0.03], [0, 0.03, 0.02, 0],
     [0.1, 0.9], [0.5, 0.35, 0.05], [0, 0, 0.04, 0, 0.06, 0, 0], [0.03, 0, 0],
     [0.02, 0, 0], [0, 0.01, 0, 0, 0, 0.01]],
]


def check_tree_sums(frame: pd.DataFrame) -> list[int]:
    """Assert the schema's sums on every question whose answers (and parent) ``frame`` has;
    returns the numbers of the questions checked."""
    checked = []
    for q in schema.QUESTIONS:
        if not set(q.columns) <= set(frame.columns):
            continue
        sums = frame[list(q.columns)].sum(axis=1).to_numpy()
        expected = 1.0 if q.parent is None else frame[q.parent].to_numpy()
        np.testing.assert_allclose(sums, expected, atol=1e-5, err_msg=f"Q{q.number}")
        checked.append(q.number)
    return checked


def test_real_kaggle_rows_sum_as_the_schema_says():
    """The 40 shipped samples are Kaggle training rows (questions 1, 2, 6, 7 and 8 only)."""
    frame = pd.read_csv(paths.SAMPLE_LABELS)
    assert len(frame) == 40
    assert check_tree_sums(frame) == [1, 2, 6, 7, 8]


def test_hand_written_rows_sum_as_the_schema_says():
    rows = [[v for answers in row for v in answers] for row in HAND_WRITTEN]
    for row in HAND_WRITTEN:
        assert [len(answers) for answers in row] == [len(q.answers) for q in schema.QUESTIONS]
    frame = pd.DataFrame(rows, columns=list(schema.ANSWER_COLUMNS))
    assert check_tree_sums(frame) == list(range(1, 12))
