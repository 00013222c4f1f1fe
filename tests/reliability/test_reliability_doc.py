"""docs/reliability.md names only tests that exist, and maps every attack of security.md.

Conventions of the attack map (docs/reliability.md, "Legend"): a bare `name` in the decide()
column is a corpus case folder; `attack[X]` is a parameter of the e2e attack table; anything
with ``::`` is a test id (path relative to the repo, optional ``[param]``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.corpus import CORPUS, case_names
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "reliability.md"
SECURITY_ITEMS = 23  # 1-16, the classes of issue 14 (17-22) and indirect creation (23, issue 16)


def _table(title: str) -> list[list[str]]:
    text = DOC.read_text()
    start = text.index(title)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-", " ", ":"}:
            continue
        rows.append(cells)
    return rows[1:]  # without the header


def _tokens(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _attack_names() -> set[str]:
    text = (ROOT / "tests" / "e2e" / "test_attacks.py").read_text()
    table = text[text.index("ATTACKS: dict") :]
    return set(re.findall(r'^    "([a-z0-9-]+)": \(', table, re.MULTILINE))


def _check_id(token: str) -> str:
    """'' if the test id exists, else why not."""
    path_text, _, rest = token.partition("::")
    name, _, param = rest.partition("[")
    path = ROOT / path_text
    if not path.is_file():
        return f"{token}: no file {path_text}"
    if name not in _functions(path):
        return f"{token}: no test {name} in {path_text}"
    param = param.rstrip("]")
    if not param:
        return ""
    if name in ("test_case", "test_case_over_https"):
        return "" if param in case_names() else f"{token}: no corpus case {param}"
    if name == "test_attack_is_denied_by_the_webhook":
        return "" if param in _attack_names() else f"{token}: no attack {param}"
    return "" if param in path.read_text() else f"{token}: parameter {param} not in {path_text}"


def test_every_test_id_in_the_doc_exists() -> None:
    ids = set(re.findall(r"`(tests/[^`\s]+?\.py::[^`\s]+)`", DOC.read_text()))
    ids |= set(re.findall(r"`(fuzz/[^`\s]+?\.py::[^`\s]+)`", DOC.read_text()))
    assert len(ids) >= 40
    problems = [p for p in (_check_id(i) for i in sorted(ids)) if p]
    assert problems == []


def test_the_attack_map_covers_security_md_at_each_level() -> None:
    rows = _table("## Attack map")
    numbers = [r[0] for r in rows if r[0].isdigit()]
    assert numbers == [str(n) for n in range(1, SECURITY_ITEMS + 1)]
    attacks = _attack_names()
    problems = []
    for row in rows:
        assert len(row) == 5, row
        number, _what, corpus, http, e2e = row
        for token in _tokens(corpus):
            if "::" not in token and not (CORPUS / token).is_dir():
                problems.append(f"row {number}: no corpus case {token}")
        for token in _tokens(e2e):
            found = re.fullmatch(r"attack\[([a-z0-9-]+)\]", token)
            if found and found.group(1) not in attacks:
                problems.append(f"row {number}: no e2e attack {found.group(1)}")
        for cell in (corpus, http, e2e):  # every level says what tests it, or why not
            assert _tokens(cell) or cell.startswith("n/a"), (number, cell)
    assert problems == []
    # every e2e attack and every new corpus case is in the map
    text = DOC.read_text()
    assert [a for a in sorted(attacks) if f"`attack[{a}]`" not in text] == []
