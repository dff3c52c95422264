"""tests/postgres_selection.txt, the one place that says which tests run on PostgreSQL too:
every line names a test file that exists, every test left out says why, and the matching
keeps a file's other tests while leaving out exactly the named ones."""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import read_selection, selected

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ROOT / "tests" / "postgres_selection.txt"


def test_every_line_names_an_existing_test_file_and_every_exclusion_says_why() -> None:
    keep, drop = read_selection(SELECTION)
    assert keep
    for prefix in keep + drop:
        assert (ROOT / prefix.split("::", 1)[0]).is_file(), prefix
    for prefix in drop:  # left out of a file that is run, else the line means nothing
        assert any(prefix.startswith(k + "::") for k in keep), prefix
    for line in SELECTION.read_text(encoding="utf-8").splitlines():
        if line.startswith("-"):
            assert "#" in line and line.split("#", 1)[1].strip(), f"no reason given: {line}"


def test_matching_by_prefix(tmp_path: Path) -> None:
    sel = tmp_path / "sel.txt"
    sel.write_text("# a comment\ntests/a.py\n-tests/a.py::test_x  # why\n\ntests/b.py::test_y\n")
    keep, drop = read_selection(sel)
    assert (keep, drop) == (["tests/a.py", "tests/b.py::test_y"], ["tests/a.py::test_x"])
    assert selected("tests/a.py::test_z", keep, drop)
    assert selected("tests/a.py::test_x_more", keep, drop)  # a longer name is another test
    assert not selected("tests/a.py::test_x", keep, drop)
    assert selected("tests/b.py::test_y[param]", keep, drop)
    assert not selected("tests/b.py::test_yz", keep, drop)
    assert not selected("tests/c.py::test_y", keep, drop)
