"""Generate student exercises from the solved assignments.

Code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers) is replaced by
a stub that raises ``NotImplementedError``, indented like the marker. Everything else is copied
as is. ``python -m effkit.assignments solutions exercises`` regenerates every exercise.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("Your code here: replace this line with your solution")'
HEADER = ("<!-- Generated from solutions/{name} by `make exercises`; edit the solution, "
          "not this file. -->\n")


class MarkerError(ValueError):
    pass


def strip_solutions(text: str, name: str = "<text>") -> str:
    """Replace each solution block with a NotImplementedError stub."""
    out, inside, begin_line = [], False, 0
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"{name}, line {lineno}: {BEGIN} inside another solution block "
                                  f"(opened on line {begin_line})")
            inside, begin_line = True, lineno
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{STUB}\n")
        elif marker == END:
            if not inside:
                raise MarkerError(f"{name}, line {lineno}: {END} without a matching {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{name}: {BEGIN} on line {begin_line} is never closed with {END}")
    return "".join(out)


def exercise_text(solution: Path) -> str:
    text = solution.read_text(encoding="utf-8")
    if BEGIN not in text:
        raise MarkerError(f"{solution} has no {BEGIN} block: an assignment needs at least one task")
    body = strip_solutions(text, solution.name)
    # Put the notice after the YAML front matter so jupytext still reads the header.
    match = re.match(r"(---\n.*?\n---\n)", body, flags=re.S)
    head, rest = (match.group(1), body[match.end():]) if match else ("", body)
    return head + HEADER.format(name=solution.name) + rest


def generate(solutions_dir: str | Path, exercises_dir: str | Path) -> list[Path]:
    """Write one exercise per ``solutions/ch*.md``; returns the written paths."""
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution in sorted(solutions_dir.glob("ch*.md")):
        target = exercises_dir / solution.name
        target.write_text(exercise_text(solution), encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    src, dst = (sys.argv[1:3] + ["solutions", "exercises"][len(sys.argv[1:3]):])
    for path in generate(src, dst):
        print("wrote", path)
