"""Every chapter opens with what the reader will be able to do and what it assumes (right after
the generated "What this chapter runs" note) and closes with a recap whose numbers a cell prints."""
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("ch*.md"))


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_opens_with_outcomes_and_assumptions_after_the_note(path):
    text = path.read_text(encoding="utf-8")
    note_end = text.index(":::\n", text.index(":::{note}") + 1) + 4
    after = text[note_end:].lstrip("\n")
    first = after.split("\n\n", 1)[0]
    assert first.startswith("**After this chapter you can**"), first[:80]
    assert "**It assumes**" in first


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_closes_with_a_recap_printed_by_a_cell(path):
    text = path.read_text(encoding="utf-8")
    recap = re.search(r"^## Recap\n(.*?)(?=^## )", text, re.S | re.M)
    assert recap, "no '## Recap' section before the questions"
    body = recap.group(1)
    assert "```{code-cell} ipython3" in body and "ek.results.load(" in body, \
        "the recap's numbers come from the run's recorded results, printed by a cell"
    prose = re.sub(r"```.*?```", "", body, flags=re.S)
    assert not re.search(r"\d+\.\d+|\d+ ?%", prose), "the recap's prose types a number; print it instead"
