"""Every relative link in README.md and docs/*.md resolves, anchors included, and every
repository path the pages name in backticks exists (the docs follow the code's layout).

The checker is a few pure functions over markdown text; the last tests feed it broken pages
to show that it fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
#: Top-level folders whose paths, written in backticks, must exist in the repository.
REPO_DIRS = ("extproc/", "loadtest/", "tests/", "deploy/", "envoy/", "examples/", "scripts/")
REPO_DIRS += ("protos/", "docs/")

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def doc_pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown page, with GitHub's -1, -2 for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """``PAGE:LINE: target: problem`` for every relative link whose file or anchor is missing."""
    problems = []
    text = page.read_text()
    for number, line in prose_lines(text):
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
            elif anchor and dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
    return problems


def missing_paths(page: Path, root: Path) -> list[str]:
    """``PAGE:LINE: path: no such file`` for repository paths in backticks that do not exist."""
    problems = []
    for number, line in prose_lines(page.read_text()):
        for span in _CODE_SPAN.findall(line):
            for word in span.split():
                path = word.split("::")[0].rstrip(",;:")
                if not path.startswith(REPO_DIRS) or any(c in path for c in "*[]{}<>|$"):
                    continue
                if not (root / path).exists():
                    problems.append(f"{page.relative_to(root)}:{number}: {path}: no such file")
    return problems


@pytest.mark.parametrize("page", doc_pages(ROOT), ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page, ROOT) == []


@pytest.mark.parametrize("page", doc_pages(ROOT), ids=lambda p: p.name)
def test_every_named_repository_path_exists(page: Path) -> None:
    assert missing_paths(page, ROOT) == []


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {t.partition("#")[0] for t in _LINK.findall(readme)}
    unlinked = [p.name for p in doc_pages(ROOT)[1:] if f"docs/{p.name}" not in linked]
    assert unlinked == []


def test_slugs_follow_github() -> None:
    assert slug("Policy (`examples/policy.yaml`)") == "policy-examplespolicyyaml"
    assert slug("The sidecar's server") == "the-sidecars-server"
    assert slug("Tracing cost, how it came down") == "tracing-cost-how-it-came-down"
    assert anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/there.md").write_text("# There\n\n## Known part\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Home\n"
        "[ok](docs/there.md#known-part) [self](#home) [web](https://example.com/x)\n"
        "[gone](docs/gone.md)\n"
        "[bad anchor](docs/there.md#unknown-part)\n"
        "`[in code](docs/gone.md)`\n"
        "```\n[in a fence](docs/gone.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "README.md:3: docs/gone.md: no such file",
        "README.md:4: docs/there.md#unknown-part: no heading with anchor #unknown-part in there.md",
    ]


def test_the_checker_finds_a_stale_module_path(tmp_path: Path) -> None:
    (tmp_path / "extproc/telemetry").mkdir(parents=True)
    (tmp_path / "extproc/telemetry/metrics.py").write_text("")
    page = tmp_path / "README.md"
    page.write_text(
        "see `extproc/telemetry/metrics.py` and `extproc/metrics.py`, `loadtest/*.py`\n"
    )
    assert missing_paths(page, tmp_path) == ["README.md:1: extproc/metrics.py: no such file"]
