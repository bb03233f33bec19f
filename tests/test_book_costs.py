"""Chapter costs: the measured cold build in book/costs.json, the tool that reads jupyter-cache,
and each chapter's opening line, which must quote the measured figure."""
import json
import re
from pathlib import Path

import pytest

from effkit.tools import book_costs

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("ch*.md"))
COSTS = json.loads((ROOT / "book" / "costs.json").read_text())


def test_every_chapter_has_a_measured_cold_time():
    assert COSTS["profile"] == "full" and COSTS["cold"] is True
    assert sorted(COSTS["seconds"]) == CHAPTERS
    assert all(s > 0 for s in COSTS["seconds"].values())
    assert COSTS["total_seconds"] == pytest.approx(sum(COSTS["seconds"].values()), abs=1)


def test_every_chapter_says_which_run_measured_it():
    assert sorted(COSTS["sources"]) == CHAPTERS
    assert all(isinstance(how, str) and how for how in COSTS["sources"].values())


def test_record_writes_a_source_per_chapter(tmp_path):
    entry = book_costs.record({"ch00_setup": 15.0, "ch01_cross_entropy": 60.0}, tmp_path / "c.json", "note")
    assert sorted(entry["sources"]) == ["ch00_setup", "ch01_cross_entropy"]
    assert entry["total_seconds"] == 75.0


def test_the_cold_book_fits_the_budget():
    assert COSTS["total_seconds"] <= 90 * 60, "a cold full-profile book must build in 90 minutes on 2 cores"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_states_its_measured_cost_up_front(chapter):
    text = (ROOT / "book" / f"{chapter}.md").read_text()
    opening = text[: text.index("```{code-cell}")]          # before the first code cell
    match = re.search(r"\*\*What this chapter runs\.\*\*(.*?):::", opening, re.S)
    assert match, f"{chapter} must open with a 'What this chapter runs.' note before its first code cell"
    stated = re.search(r"about \*\*([\d]+ (?:s|min))\*\*", match.group(1))
    assert stated, f"{chapter}'s note must give its cold time as 'about **N min**'"
    assert stated.group(1) == book_costs.minutes(COSTS["seconds"][chapter]), (
        f"{chapter} says {stated.group(1)}, book/costs.json measured "
        f"{book_costs.minutes(COSTS['seconds'][chapter])}")
    assert "GPU" in match.group(1) and "cache" in match.group(1)


def test_minutes_and_table_format():
    assert book_costs.minutes(40.4) == "40 s" and book_costs.minutes(1000) == "17 min"
    out = book_costs.table({"ch00_setup": 15.0, "ch02_full_finetuning": 1500.0})
    assert "ch00_setup" in out and "25 min" in out and out.splitlines()[-1].split() == ["total", "25", "min"]


def test_a_build_folder_without_records_reads_as_empty(tmp_path):
    assert book_costs.execution_seconds(tmp_path) == {}


def test_the_readme_table_quotes_the_measured_times():
    readme = (ROOT / "README.md").read_text()
    for chapter, seconds in COSTS["seconds"].items():
        assert f"| {chapter} | {book_costs.minutes(seconds)} |" in readme, chapter
    assert f"| **total** | **{book_costs.minutes(COSTS['total_seconds'])}** |" in readme
