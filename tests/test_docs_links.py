"""Self-containment: code and docs cite the docs/ pages, and every cited anchor exists."""
import os
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CITING = ("*.py", "*.md", "*.yaml", "*.cfg")
SKIP_DIRS = {".venv", ".git", "runs", "build", ".pytest_cache", "__pycache__"}
LINK = re.compile(r"docs/([a-z_]+\.md)#([A-Za-z0-9_-]+)")
MD_LINK = re.compile(r"\]\((?:([a-z_]+\.md))?#([A-Za-z0-9_-]+)\)")  # [text](page.md#a), [text](#a)
# Documents that are not in the repository and must not be cited (the team's design notes). The
# names are spelled in pieces so that a grep for them does not find this file.
_REFERENCE, _PEERS = "refer" + "ence/", "peer" + "s"
OUTSIDE = re.compile(_REFERENCE + "|" + _PEERS + r"\.md|(?<!docs/)(?<!\]\()\brsm\.md")


def _files():
    """The repository's files of the `CITING` kinds, except this one and generated directories."""
    this = pathlib.Path(__file__).resolve()
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in names:
            path = pathlib.Path(root) / name
            if any(path.match(pattern) for pattern in CITING) and path != this:
                yield path


def slug(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # no headings inside code blocks
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_slug_follows_github():
    assert slug("The grammar job's settings, and what they rest on") == \
        "the-grammar-jobs-settings-and-what-they-rest-on"
    assert slug("Differences from nupic.torch") == "differences-from-nupictorch"


def test_every_cited_docs_anchor_exists():
    cited = {}
    for path in _files():
        for page, anchor in LINK.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault((page, anchor), []).append(str(path.relative_to(REPO)))
    assert cited, "no docs/<page>.md#<anchor> citation found: the pattern is wrong"
    for page in (REPO / "docs").glob("*.md"):  # Markdown links inside the docs pages
        for target, anchor in MD_LINK.findall(page.read_text(encoding="utf-8")):
            cited.setdefault((target or page.name, anchor), []).append(f"docs/{page.name}")
    missing = {key: where for key, where in cited.items()
               if not (REPO / "docs" / key[0]).is_file() or key[1] not in anchors(key[0])}
    assert not missing, f"citations of missing docs pages or anchors: {missing}"


@pytest.mark.parametrize("text, bad", [(f"see {_REFERENCE}rsm.md §2", True),
                                       (f"{_PEERS}.md §2.4", True), ("(rsm.md §0)", True),
                                       ("docs/rsm.md#selection", False),
                                       ("[docs/rsm.md](rsm.md#selection)", False)])
def test_outside_pattern(text, bad):
    assert bool(OUTSIDE.search(text)) == bad


def test_no_citation_of_documents_outside_the_repository():
    offenders = []
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8",
                                                     errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "cite docs/ pages instead:\n" + "\n".join(offenders)
