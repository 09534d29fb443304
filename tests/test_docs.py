"""The pages a reader meets hold together: README.md and docs/*.md.

- Every relative link (``[text](path)``, ``[text](path#anchor)``, ``![alt](path)``, ``[ref]: path``) resolves
  to a file or folder inside the repository, and an anchor into a Markdown file names one of its headings
  (GitHub's heading ids). Links inside code are not links and are left alone; http(s) links are not fetched.
- No page points at a GitHub repository of this project (``github.com/<owner>/jaxgan``, Colab's
  ``colab.research.google.com/github/<owner>/jaxgan``) unless ``pyproject.toml`` declares that URL: the project
  publishes none, so such a badge or clone command leads nowhere.
- No page narrates how the work was organised (sessions, issue numbers, stops, which machine was lent).

Pure Python, no network, well under a second.
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pages() -> list[Path]:
  """README.md and every docs/*.md, in a fixed order."""
  return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str, keep_code_spans: bool = False) -> list[tuple[int, str]]:
  """(line number, line) outside fenced code blocks, with inline code spans blanked out (or only their
  backticks dropped, with ``keep_code_spans``)."""
  out, fence = [], None
  for number, line in enumerate(text.splitlines(), 1):
    stripped = line.lstrip()
    marker = stripped[:3]
    if fence is None and marker in ("```", "~~~"):
      fence = marker
      continue
    if fence is not None:
      if stripped.startswith(fence):
        fence = None
      continue
    blank = (lambda m: m.group(2)) if keep_code_spans else (lambda m: " " * len(m.group(0)))
    out.append((number, re.sub(r"(`+)(.+?)\1", blank, line)))
  return out


INLINE_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")   # the (target) after any [...]
REFERENCE_TARGET = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def link_targets(text: str) -> list[tuple[int, str]]:
  """(line number, target) of every Markdown link and image outside code."""
  found = []
  for number, line in prose_lines(text):
    found += [(number, m.group(1)) for m in INLINE_TARGET.finditer(line)]
    m = REFERENCE_TARGET.match(line)
    if m:
      found.append((number, m.group(1)))
  return found


def heading_ids(text: str) -> set[str]:
  """The anchors GitHub gives the ATX headings of a Markdown text: lower case, punctuation dropped (word
  characters, hyphens and spaces kept), spaces to hyphens; a repeated id gets -1, -2, ..."""
  ids: set[str] = set()
  seen: dict[str, int] = {}
  for _, line in prose_lines(text, keep_code_spans=True):
    m = HEADING.match(line)
    if not m:
      continue
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))   # [text](url) -> text
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    ids.add(slug if n == 0 else f"{slug}-{n}")
  return ids


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
  """One line per relative link of ``page`` that leaves ``root``, names no file there, or names an anchor
  that the target Markdown file does not have."""
  text = page.read_text(encoding="utf-8")
  problems = []
  for number, target in link_targets(text):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):      # http:, https:, mailto:, ...
      continue
    path_part, _, anchor = target.partition("#")
    path_part = urllib.parse.unquote(path_part)
    if not path_part:
      dest = page
    elif path_part.startswith("/"):
      dest = (root / path_part.lstrip("/")).resolve()
    else:
      dest = (page.parent / path_part).resolve()
    where = f"{page.relative_to(root)}:{number}: ({target})"
    if dest != root.resolve() and root.resolve() not in dest.parents:
      problems.append(f"{where} points outside the repository")
    elif not dest.exists():
      problems.append(f"{where}: no such file {dest.relative_to(root.resolve())}")
    elif anchor and dest.suffix.lower() == ".md" and anchor not in heading_ids(dest.read_text(encoding="utf-8")):
      problems.append(f"{where}: {dest.name} has no heading with the id '{anchor}'")
  return problems


PROJECT_REPO = re.compile(
    r"(?:github\.com|githubusercontent\.com|colab\.research\.google\.com/github)/([\w.-]+)/jaxgan(?=[/#?)\s\"']|\.git\b|$)",
    re.I)


def declared_repos() -> set[str]:
  """owner/jaxgan of every project URL that pyproject.toml declares (none today)."""
  text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
  return {f"{m.group(1).lower()}/jaxgan" for m in PROJECT_REPO.finditer(text)}


# Sentences about how the work was organised, not about jaxgan. Precise on purpose: each names a session,
# an issue or stop number, or a machine being lent, none of which a user's page needs.
DIARY = [
    r"\b(?:this|previous|earlier|last|next|that) session\b",
    r"\bissue #?\d+",
    r"\bstop \d+\b",
    r"\b(?:was|were|is|not) lent\b",
    r"\bnot available (?:that|to)day\b",
    r"\bthat day's machine\b",
]


def diary_sentences(text: str, name: str) -> list[str]:
  """One line per diary phrase outside fenced code."""
  return [f"{name}:{number}: {m.group(0)!r}: {line.strip()[:100]}"
          for number, line in prose_lines(text) for pattern in DIARY
          for m in re.finditer(pattern, line, re.I)]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_relative_links_resolve(page):
  assert broken_links(page) == []


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_no_link_to_a_project_repository_that_is_not_declared(page):
  declared = declared_repos()
  text = page.read_text(encoding="utf-8")
  bad = [f"{page.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
         for m in PROJECT_REPO.finditer(text) if f"{m.group(1).lower()}/jaxgan" not in declared]
  assert bad == [], ("links to a jaxgan repository that pyproject.toml's [project.urls] does not declare "
                     "(the project publishes none; remove the badge or link):\n" + "\n".join(bad))


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_no_diary_sentences(page):
  assert diary_sentences(page.read_text(encoding="utf-8"), page.name) == []


def test_the_checks_catch_what_they_should(tmp_path):
  """The checkers themselves, on a page written for the purpose."""
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## FID features (`--fid`)\n\n## Same\n\n## Same\n")
  (tmp_path / "README.md").write_text(
      "# Title\n\n"
      "[ok](docs/other.md) [ok](docs/other.md#fid-features---fid) [ok](docs/other.md#same-1) [ok](#title)\n"
      "[![badge](docs/missing.svg)](https://example.org/x) [bad anchor](docs/other.md#nothing)\n"
      "[outside](../etc/passwd) `[in code](nowhere.md)`\n"
      "```\n[in a fence](nowhere.md)\n```\n"
      "[ref]: docs/gone.md\n")
  problems = broken_links(tmp_path / "README.md", root=tmp_path)
  assert len(problems) == 4, problems
  assert [p.split(": (")[1].split(")")[0] for p in problems] == [
      "docs/missing.svg", "docs/other.md#nothing", "../etc/passwd", "docs/gone.md"]
  assert PROJECT_REPO.search("[![Open In Colab](x.svg)](https://colab.research.google.com/github/someone/jaxgan/blob/main/a.ipynb)")
  assert PROJECT_REPO.search("git clone https://github.com/someone/jaxgan.git")
  assert not PROJECT_REPO.search("https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
  assert not PROJECT_REPO.search("https://github.com/someone/jaxgan-extras")
  assert len(diary_sentences("Measured in this session.\nSee issue 17 and stop 24.\nNo GPU was lent.\n", "x")) == 4
  assert diary_sentences("One image per session of the pipeline; the tissue 17 is fine.\n```\nthis session\n```\n",
                         "x") == []
