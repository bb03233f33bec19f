"""The assignment pipeline: generator, committed exercises, and how exercises fail."""
from pathlib import Path

import jupytext
import nbclient
import pytest

from effkit.tools.assignments import STUB, MarkerError, exercise_text, strip_solutions

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ch*.md"))


def test_strip_keeps_indentation_and_drops_solution():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    out = strip_solutions(src)
    assert "return x + 1" not in out
    assert out == f"def f(x):\n    {STUB}\n"


@pytest.mark.parametrize("bad, words", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_markers_are_errors(bad, words):
    with pytest.raises(MarkerError, match=words):
        strip_solutions(bad, "t.md")


def test_there_are_solutions():
    assert len(SOLUTIONS) >= 2, "every chapter has an assignment in solutions/"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_committed_exercise_equals_generator_output(solution):
    exercise = ROOT / "exercises" / solution.name
    assert exercise.exists(), f"{exercise} missing: run `make exercises`"
    assert exercise.read_text(encoding="utf-8") == exercise_text(solution), (
        f"{exercise.name} differs from the generator's output: run `make exercises`")


def _first_check_cell(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "ek.check." in cell.source:
            return i
    raise AssertionError("the assignment has no ek.check call")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_fails_at_first_check_with_not_implemented(solution, tmp_path):
    nb = jupytext.reads(exercise_text(solution), fmt="md:myst")
    first_check = _first_check_cell(nb)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", (
        f"the exercise failed with {info.value.ename}, not NotImplementedError:\n{info.value}")
    failed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [first_check], (
        f"the exercise must fail at its first check (cell {first_check}), failed at cells {failed}")
