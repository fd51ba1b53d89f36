"""A one-line, plain-language verdict derived by walking the decision tree.

From Q1, each step takes the most likely answer (by its share of its question, i.e. the
probability conditional on reaching that question) and follows the tree's flow to the next
question. Questions the model never learned are skipped and listed, never guessed; the walk
then resumes at Q6 ("anything odd?"), which every galaxy is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import (ANSWER_COLUMNS, COLUMN_INDEX, QUESTION_BY_NUMBER, Answer, Question,
                     question_slice)

ODD_QUESTION = 6
MAX_STEPS = len(QUESTION_BY_NUMBER) + 1


@dataclass(frozen=True)
class Step:
    question: Question
    answer: Answer
    share: float  # probability of this answer given that the question is reached


@dataclass(frozen=True)
class Verdict:
    text: str
    steps: tuple[Step, ...]
    not_learned: tuple[Question, ...]  # questions on the path the model has no targets for
    answers: str = ""  # ``text`` without its note on what was not learned (for a table's rows)


def _hedge(share: float) -> str:
    if share >= 0.75:
        return ""
    return "probably " if share >= 0.5 else "possibly "


def _branch(question: Question) -> list[Question]:
    """``question`` and every question reachable from it before the shared Q6."""
    seen, todo = {question.number}, [question.number]
    while todo:
        for answer in QUESTION_BY_NUMBER[todo.pop()].answers:
            nxt = answer.next_question
            if nxt is not None and nxt != ODD_QUESTION and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [QUESTION_BY_NUMBER[n] for n in sorted(seen)]


def walk_tree(preds, trained_columns=ANSWER_COLUMNS) -> Verdict:
    preds = np.asarray(preds, dtype=np.float64)
    if preds.shape != (len(ANSWER_COLUMNS),):
        raise ValueError(f"expected {len(ANSWER_COLUMNS)} probabilities, got shape {preds.shape}")
    trained = set(trained_columns)
    steps, skipped, visited = [], [], set()
    number = 1
    while number is not None and number not in visited and len(visited) < MAX_STEPS:
        visited.add(number)
        question = QUESTION_BY_NUMBER[number]
        if not all(c in trained for c in question.columns):
            skipped += [q for q in _branch(question) if q not in skipped]
            number = ODD_QUESTION if ODD_QUESTION not in visited else None
            continue
        values = preds[question_slice(question)]
        total = values.sum()
        shares = values / total if total > 0 else np.full(len(values), 1 / len(values))
        best = int(np.argmax(shares))
        answer = question.answers[best]
        steps.append(Step(question, answer, float(shares[best])))
        number = answer.next_question
    answers = ", ".join(_hedge(s.share) + s.answer.phrase for s in steps)
    answers = (answers[:1].upper() + answers[1:] if answers
               else "No verdict: the model learned no question")
    # said so a newcomer reads it: these questions were reached, but this model cannot answer them
    text = answers + (f" (not judged, as this model never learned these questions: "
                      f"{', '.join(q.topic for q in skipped)})" if skipped else "")
    return Verdict(text=text, steps=tuple(steps), not_learned=tuple(skipped), answers=answers)


def top_answer(preds, trained_columns=ANSWER_COLUMNS) -> str:
    """The trained answer column with the highest predicted value."""
    index = [COLUMN_INDEX[c] for c in trained_columns]
    return ANSWER_COLUMNS[index[int(np.argmax(np.asarray(preds)[index]))]]
