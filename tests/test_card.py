"""The written model card as page blocks: no HTML tag left as text, the lab notebook folded."""

from galaxy_core import paths
from galaxy_core.card import card_blocks


def test_details_become_folded_blocks_and_no_tag_is_left():
    text = ("# Card\n\nintro\n\n## Accuracy\nopen table\n\n<details><summary>Per answer"
            "</summary>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n</details>\n\nafter\n\n"
            "## Variants compared\nlong log\n")
    blocks = card_blocks(text)
    assert [(b.title, b.folded) for b in blocks] == [
        ("", False), ("Accuracy", False), ("Accuracy: Per answer", True), ("", False),
        ("Variants compared", True)]
    assert blocks[2].markdown.startswith("| a | b |")
    assert not any("<" in b.markdown or "<" in b.title for b in blocks)


def test_the_shipped_card_renders_without_literal_tags():
    with open(paths.MODEL_CARD, encoding="utf-8") as handle:
        blocks = card_blocks(handle.read())
    assert not any("<details" in b.markdown or "</details>" in b.markdown for b in blocks)
    titles = [b.title for b in blocks if b.title]
    assert "Limits" in titles and "Variants compared" in titles
    assert next(b for b in blocks if b.title == "Variants compared").folded
