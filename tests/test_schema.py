import numpy as np
import pytest

from galaxy_core import schema


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


def test_kaggle_sample_sums(tmp_path):
    from tests.conftest import tree_targets
    t = tree_targets(5)
    for q in schema.QUESTIONS:
        sums = t[:, schema.question_slice(q)].sum(1)
        expected = 1.0 if q.parent is None else t[:, schema.COLUMN_INDEX[q.parent]]
        np.testing.assert_allclose(sums, expected, atol=1e-5)
