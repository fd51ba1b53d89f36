"""The Galaxy Zoo 2 decision tree as data: the single source of truth.

Eleven questions, 37 answers in Kaggle column order (``Class1.1`` ... ``Class11.6``). Each
question names the answer it hangs off (``parent``: its answers sum to that answer's value in
the Kaggle labels, or to 1 for the roots Q1 and, by a quirk of the Kaggle weighting, Q6) and,
per answer, which question a volunteer is asked next (the Galaxy Zoo 2 flow).

Column lists, question slices, the CSV header, the model's output size, answer pickers and
checkpoint checks all derive from ``QUESTIONS``; nothing else types ``Class4.1`` by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

END = None  # "next question" value meaning the classification ends there


@dataclass(frozen=True)
class Answer:
    column: str  # Kaggle column name, e.g. "Class4.1"
    label: str  # short human label, e.g. "spiral arms"
    next_question: int | None  # Galaxy Zoo 2 flow; END when the tree stops
    phrase: str  # how a plain-language verdict says it, e.g. "two spiral arms"


@dataclass(frozen=True)
class Question:
    number: int
    topic: str  # a short name for the question, e.g. "spiral arms"
    text: str
    answers: tuple[Answer, ...]
    parent: str | None  # the answer column this question's answers sum to; None = sums to 1

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(a.column for a in self.answers)


def _q(number, topic, text, parent, answers):
    return Question(
        number=number,
        topic=topic,
        text=text,
        parent=parent,
        answers=tuple(
            Answer(column=f"Class{number}.{i + 1}", label=a[0], next_question=a[1],
                   phrase=a[2] if len(a) > 2 else a[0])
            for i, a in enumerate(answers)
        ),
    )


QUESTIONS: tuple[Question, ...] = (
    _q(1, "shape", "Is the galaxy simply smooth and rounded, with no sign of a disk?", None,
       [("smooth", 7, "smooth galaxy"), ("features or disk", 2, "featured or disk galaxy"),
        ("star or artifact", END, "star or artifact, not a galaxy")]),
    _q(2, "edge-on", "Could this be a disk viewed edge-on?", "Class1.2",
       [("edge-on", 9, "seen edge-on"), ("not edge-on", 3, "face-on")]),
    _q(3, "bar", "Is there a sign of a bar feature through the centre?", "Class2.2",
       [("bar", 4, "barred"), ("no bar", 4, "unbarred")]),
    _q(4, "spiral arms", "Is there any sign of a spiral arm pattern?", "Class2.2",
       [("spiral arms", 10), ("no spiral arms", 5)]),
    _q(5, "bulge", "How prominent is the central bulge?", "Class2.2",
       [("no bulge", 6), ("just noticeable bulge", 6, "small bulge"), ("obvious bulge", 6),
        ("dominant bulge", 6)]),
    _q(6, "anything odd", "Is there anything odd?", None,
       [("something odd", 8), ("nothing odd", END)]),
    _q(7, "roundness", "How rounded is it?", "Class1.1",
       [("completely round", 6), ("in between", 6, "oval"), ("cigar-shaped", 6)]),
    _q(8, "odd feature", "Is the odd feature a ring, or is the galaxy disturbed or irregular?", "Class6.1",
       [("ring", END, "with a ring"), ("lens or arc", END, "with a lens or arc"),
        ("disturbed", END, "disturbed"), ("irregular", END, "irregular"),
        ("other", END, "with some other odd feature"), ("merger", END, "merging"),
        ("dust lane", END, "with a dust lane")]),
    _q(9, "edge-on bulge", "Does the galaxy have a bulge at its centre? If so, what shape?", "Class2.1",
       [("rounded bulge", 6), ("boxy bulge", 6), ("no bulge", 6, "no central bulge")]),
    _q(10, "arm winding", "How tightly wound do the spiral arms appear?", "Class4.1",
       [("tightly wound", 11, "tightly wound arms"), ("medium wound", 11, "medium-wound arms"),
        ("loosely wound", 11, "loosely wound arms")]),
    _q(11, "number of arms", "How many spiral arms are there?", "Class4.1",
       [("1 arm", 5, "one arm"), ("2 arms", 5, "two arms"), ("3 arms", 5, "three arms"),
        ("4 arms", 5, "four arms"), ("more than four arms", 5, "more than four arms"),
        ("can't tell", 5, "arm count unclear")]),
)

ANSWERS: tuple[Answer, ...] = tuple(a for q in QUESTIONS for a in q.answers)
ANSWER_COLUMNS: tuple[str, ...] = tuple(a.column for a in ANSWERS)
NUM_ANSWERS = len(ANSWER_COLUMNS)
ID_COLUMN = "GalaxyID"
CSV_HEADER: tuple[str, ...] = (ID_COLUMN, *ANSWER_COLUMNS)

COLUMN_INDEX: dict[str, int] = {c: i for i, c in enumerate(ANSWER_COLUMNS)}
QUESTION_BY_NUMBER: dict[int, Question] = {q.number: q for q in QUESTIONS}
ANSWER_BY_COLUMN: dict[str, Answer] = {a.column: a for a in ANSWERS}
QUESTION_OF_COLUMN: dict[str, Question] = {a.column: q for q in QUESTIONS for a in q.answers}


def question_slice(question: Question) -> slice:
    """Positions of a question's answers in the 37-vector (they are contiguous)."""
    start = COLUMN_INDEX[question.columns[0]]
    return slice(start, start + len(question.answers))


def answer_name(column: str) -> str:
    """Readable name, e.g. 'Q4 spiral arms (Class4.1)'."""
    question = QUESTION_OF_COLUMN[column]
    return f"Q{question.number} {ANSWER_BY_COLUMN[column].label} ({column})"


def check_columns(columns) -> list[str]:
    """Return ``columns`` as a list in Kaggle order, or raise naming the unknown ones."""
    columns = list(columns)
    unknown = [c for c in columns if c not in COLUMN_INDEX]
    if unknown:
        raise ValueError(
            f"unknown answer column(s) {unknown}; allowed are Class1.1 ... Class11.6 "
            f"({NUM_ANSWERS} Kaggle columns)"
        )
    return sorted(columns, key=COLUMN_INDEX.__getitem__)


def _validate() -> None:
    numbers = [q.number for q in QUESTIONS]
    assert numbers == list(range(1, 12)), numbers
    assert NUM_ANSWERS == 37, NUM_ANSWERS
    assert len(set(ANSWER_COLUMNS)) == NUM_ANSWERS
    for q in QUESTIONS:
        if q.parent is not None:
            parent_question = QUESTION_OF_COLUMN[q.parent]
            # a parent comes earlier in the column order, so the tree head can fill in order
            assert parent_question.number < q.number, (q.number, q.parent)
        for a in q.answers:
            assert a.next_question is END or a.next_question in QUESTION_BY_NUMBER, a


_validate()
