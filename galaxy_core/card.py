"""The written model card (``MODEL_CARD.md``) cut into the blocks a page shows: each ``##``
section, open or folded, with its ``<details>`` parts turned into folded blocks of their own,
so no page ever prints an HTML tag as text."""

from __future__ import annotations

import re
from dataclasses import dataclass

# sections a visitor does not need first: the lab notebook behind the recipe
FOLDED_SECTIONS = ("Variants compared", "Accuracy against the amount of training data",
                   "Recipe")
_DETAILS = re.compile(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", re.S)


@dataclass(frozen=True)
class Block:
    title: str  # "" for text before the first section
    markdown: str
    folded: bool


def card_blocks(text: str) -> list[Block]:
    """The card as blocks in order; the top-level ``#`` title is dropped (the page has one)."""
    text = re.sub(r"\A# [^\n]*\n", "", text)
    blocks = []
    for index, part in enumerate(re.split(r"^## ", text, flags=re.M)):
        if index == 0:
            title, body = "", part
        else:
            title, _, body = part.partition("\n")
            title = title.strip()
        folded = title in FOLDED_SECTIONS
        position = 0
        for match in _DETAILS.finditer(body):
            before = body[position:match.start()].strip()
            if before:
                blocks.append(Block(title, before, folded))
            blocks.append(Block(f"{title}: {match.group(1).strip()}" if title else
                                match.group(1).strip(), match.group(2).strip(), True))
            title = ""  # the section's title is shown once, with its first block
            position = match.end()
        rest = body[position:].strip()
        if rest:
            blocks.append(Block(title, rest, folded))
    return [b for b in blocks if b.markdown]
