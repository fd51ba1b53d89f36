import numpy as np

from galaxy_core.schema import ANSWER_COLUMNS, COLUMN_INDEX
from galaxy_core.verdict import top_answer, walk_tree


def preds_with(**values):
    p = np.zeros(37)
    for key, v in values.items():
        p[COLUMN_INDEX[key.replace("_", ".")]] = v
    return p


def test_barred_two_armed_spiral():
    p = preds_with(Class1_2=0.9, Class1_1=0.1, Class2_2=0.9, Class3_1=0.8, Class3_2=0.1,
                   Class4_1=0.85, Class4_2=0.05, Class10_1=0.7, Class10_2=0.15,
                   Class11_2=0.8, Class11_1=0.05, Class5_2=0.7, Class5_3=0.2,
                   Class6_2=0.9, Class6_1=0.1)
    verdict = walk_tree(p)
    assert verdict.text == ("Featured or disk galaxy, face-on, barred, spiral arms, tightly "
                            "wound arms, two arms, small bulge, nothing odd")
    assert [s.question.number for s in verdict.steps] == [1, 2, 3, 4, 10, 11, 5, 6]


def test_smooth_cigar_and_hedging():
    p = preds_with(Class1_1=0.6, Class1_2=0.3, Class1_3=0.1, Class7_3=0.6, Class7_2=0.0,
                   Class7_1=0.0, Class6_1=0.6, Class6_2=0.4, Class8_6=0.5, Class8_3=0.1)
    text = walk_tree(p).text
    assert text.startswith("Probably smooth galaxy, cigar-shaped")
    assert "merging" in text


def test_unlearned_questions_are_named_not_guessed():
    trained = [c for c in ANSWER_COLUMNS if c.split(".")[0] in ("Class1", "Class2", "Class6",
                                                                 "Class7", "Class8")]
    p = preds_with(Class1_2=0.9, Class2_2=0.9, Class3_1=0.9, Class6_2=1.0)
    verdict = walk_tree(p, trained)
    assert "barred" not in verdict.text
    assert {q.number for q in verdict.not_learned} == {3, 4, 5, 10, 11}
    assert verdict.text.endswith("nothing odd (not judged, as this model never learned these "
                                 "questions: bar, spiral arms, bulge, arm winding, number of arms)")


def test_star_ends_the_walk():
    verdict = walk_tree(preds_with(Class1_3=0.9, Class1_1=0.1))
    assert verdict.text == "Star or artifact, not a galaxy"


def test_top_answer_only_among_trained():
    p = preds_with(Class4_1=0.99, Class1_1=0.5)
    assert top_answer(p) == "Class4.1"
    assert top_answer(p, ["Class1.1", "Class1.2"]) == "Class1.1"


def test_the_verdicts_answers_leave_out_its_note_on_what_was_not_learned():
    """A batch table shows ``answers``: every row would repeat the same note."""
    learned = [c for c in ANSWER_COLUMNS
               if c.startswith(("Class1.", "Class6.", "Class7.", "Class8."))]
    preds = np.full(len(ANSWER_COLUMNS), 0.1)
    preds[ANSWER_COLUMNS.index("Class1.1")] = 0.8  # smooth: on to Q7 (learned) and Q6
    verdict = walk_tree(preds, learned)
    assert verdict.not_learned == ()
    preds[ANSWER_COLUMNS.index("Class1.2")] = 0.9  # features: on to Q2, not learned
    verdict = walk_tree(preds, learned)
    assert verdict.not_learned and verdict.text.startswith(
        verdict.answers + " (not judged, as this model never learned these questions: ")
    assert "not learned" not in verdict.answers
