"""docs/contract.md is the contract, and what cites it must land in it.

- No file cites the old form "CONTRACT §N" (the brief's numbering, before
  docs/contract.md existed).
- Every "docs/contract.md §N" or "§N.M" names a heading of docs/contract.md
  (``## N. Title`` or ``### N.M Title``), also in a list ("§3.4, §4", "§2 and §4").
- Every exit code that bootpull.errors defines is a row of the contract's exit-code
  table, with the error class that defines it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from bootpull import errors

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
#: the folders whose files may cite the contract (tests/ is left out: this file names
#: the old form on purpose)
SCANNED = ("bootstrap", "repo-layout", "homebase", "image-build", "qemu", "docs")
SKIPPED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})

OLD_FORM = "CONTRACT §"
SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)
SUBSECTION = re.compile(r"^### (\d+)\.(\d+)\.? ", re.MULTILINE)
ANY_HEADING = re.compile(r"^(#{2,3}) (.*)$", re.MULTILINE)
NUMBER = r"§(\d+(?:\.\d+)*)"
#: a citation and the section numbers listed right after it
CITATION = re.compile(
    r"(?:docs/)?contract\.md " + NUMBER + r"((?:(?:, | and | or |–|-)" + NUMBER + r")*)")
LISTED = re.compile(NUMBER)
TABLE_ROW = re.compile(r"^\|\s*`?(\d+)`?\s*\|(.*)$", re.MULTILINE)


def headings(text: str) -> set[str]:
    """The section numbers of the contract: "6" for ``## 6. ...``, "2.5" for ``### 2.5 ...``."""
    found = set(SECTION.findall(text))
    found |= {f"{major}.{minor}" for major, minor in SUBSECTION.findall(text)}
    return found


def citation_problems(label: str, text: str, known: set[str]) -> list[str]:
    """Each old-form citation, and each citation of a section ``known`` does not hold."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if OLD_FORM in line:
            problems.append(f"{label}:{number}: cites {OLD_FORM}..., the old form; "
                            "write docs/contract.md §N")
        for match in CITATION.finditer(line):
            cited = [match.group(1), *LISTED.findall(match.group(2))]
            problems.extend(
                f"{label}:{number}: cites docs/contract.md §{section}, which has no "
                f"heading '## {section}.' or '### {section}'"
                for section in cited if section not in known)
    return problems


def text_files() -> Iterator[Path]:
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if parts & SKIPPED_DIRS or any(p.endswith(".egg-info") for p in parts):
                continue
            if path.is_file() and not path.is_symlink():
                yield path


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # not text: nothing in it can be a citation a person reads


def section_text(text: str, title_word: str) -> str:
    """The body of the top-level section whose heading holds ``title_word``."""
    starts = [(m.start(), m.group(0)) for m in SECTION.finditer(text)]
    for index, (start, _) in enumerate(starts):
        heading = text[start:text.index("\n", start)]
        if title_word.lower() in heading.lower():
            end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
            return text[start:end]
    raise AssertionError(f"docs/contract.md has no '## N.' section about {title_word!r}")


def exit_code_rows(text: str) -> dict[int, str]:
    """Code → the rest of its row, from the exit-code table of the contract."""
    body = section_text(text, "exit codes")
    return {int(code): rest for code, rest in TABLE_ROW.findall(body)}


def defined_exit_codes() -> dict[int, list[str]]:
    """Code → the classes of bootpull.errors that set it (inherited codes left out),
    and any module-level integer constant named ``*EXIT*``."""
    codes: dict[int, list[str]] = {}
    for name, value in vars(errors).items():
        if (isinstance(value, type) and issubclass(value, errors.BootpullError)
                and "exit_code" in vars(value)):
            codes.setdefault(value.exit_code, []).append(name)
        elif isinstance(value, int) and not isinstance(value, bool) and "EXIT" in name:
            codes.setdefault(value, []).append(name)
    return codes


# -- the tests -----------------------------------------------------------------------


def test_the_contract_keeps_the_brief_numbering() -> None:
    known = headings(CONTRACT.read_text(encoding="utf-8"))
    assert {"1", "2", "3", "4", "5"} <= known


def test_every_heading_is_numbered_in_order() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    major = 0
    minor = 0
    for match in ANY_HEADING.finditer(text):
        level, title = match.groups()
        if level == "##":
            assert title.startswith(f"{major + 1}. "), f"expected '## {major + 1}. ': {title}"
            major, minor = major + 1, 0
        else:
            assert title.startswith(f"{major}.{minor + 1} "), (
                f"expected '### {major}.{minor + 1} ' under section {major}: {title}")
            minor += 1


def test_no_old_citations_and_every_citation_lands() -> None:
    known = headings(CONTRACT.read_text(encoding="utf-8"))
    problems: list[str] = []
    for path in text_files():
        text = read_text(path)
        if text is not None:
            problems += citation_problems(str(path.relative_to(ROOT)), text, known)
    assert not problems, "\n".join(problems)


def test_the_contract_cites_only_its_own_sections() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    known = headings(text)
    missing = sorted({n for n in LISTED.findall(text) if n not in known})
    assert not missing, f"docs/contract.md refers to §{', §'.join(missing)}, which it lacks"


def test_every_exit_code_is_in_the_contract_table() -> None:
    rows = exit_code_rows(CONTRACT.read_text(encoding="utf-8"))
    defined = defined_exit_codes()
    assert defined, "bootpull.errors defines no exit code: the test reads it wrongly"
    problems = []
    for code, names in sorted(defined.items()):
        if code not in rows:
            problems.append(f"exit code {code} ({', '.join(names)}) has no row in "
                            "docs/contract.md's exit-code table")
            continue
        problems.extend(f"the row of exit code {code} does not name `{name}`"
                        for name in names if f"`{name}`" not in rows[code])
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_should() -> None:
    known = {"1", "2", "2.5", "3", "3.4", "4"}
    good = "see docs/contract.md §2.5. And docs/contract.md §3.4, §4; contract.md §1"
    assert citation_problems("x", good, known) == []
    assert citation_problems("x", "the codes are CONTRACT §3", known)
    assert citation_problems("x", "docs/contract.md §42", known)
    assert citation_problems("x", "docs/contract.md §2.9", known)
    assert citation_problems("x", "docs/contract.md §3.4, §7", known)
    assert citation_problems("x", "(docs/contract.md §2 and §8)", known)
    assert headings("## 1. A\n### 1.1 B\n### 1.2. C\n## 2. D\n") == {"1", "1.1", "1.2", "2"}
    table = "## 6. Exit codes\n\n| code | error |\n|---|---|\n| 0 | — |\n| `12` | `X` |\n"
    assert exit_code_rows(table + "## 7. Next\n| 99 | no |\n") == {0: " — |", 12: " `X` |"}
