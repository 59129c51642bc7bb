"""Sources are cited in docs/references.md, which ships with the code: a citation names one of its sections."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"docs/references\.md, ([A-Z][\w .\-/]*?)[)\]:,;]")


def _sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")])


def test_citations_name_a_section_of_the_references():
    sections = set(re.findall(r"^## (.+)$", (ROOT / "docs" / "references.md").read_text(encoding="utf-8"), re.M))
    cited = {(path.relative_to(ROOT).as_posix(), name) for path in _sources()
             for name in CITATION.findall(path.read_text(encoding="utf-8"))}
    assert cited, "no citation found: the pattern no longer matches how the code cites docs/references.md"
    assert [c for c in sorted(cited) if c[1] not in sections] == []


def test_no_citation_of_a_file_users_do_not_have():
    pattern = re.compile(r"[R]EFERENCE §|\(seed \d{3}\)")  # the brackets keep this line from matching itself
    assert [p.relative_to(ROOT).as_posix() for p in _sources() if pattern.search(p.read_text(encoding="utf-8"))] == []
