"""Every citation of the mathematics resolves inside the repository (issue 11, item 8).

Code and docs cite ``docs/math.md §N`` (or ``§N.M``); each such section must exist as a heading
(``## §N ...``) or a numbered item (``**§N.M ...``) of docs/math.md, and nothing may point at a
file outside the repository.
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("kdetheory", "proofs_checks", "tests", "benchmarks", "figures", "docs", "README.md")
THIS = pathlib.Path(__file__).name
CITATION = re.compile(r"docs/math\.md ((?:§\d+(?:\.\d+)?[^§\n]{0,30}?)+)")


def _files():
    for name in SCANNED:
        path = ROOT / name
        for p in ([path] if path.is_file() else path.rglob("*")):
            # docs/math.md defines the sections; this file names the stale forms it looks for
            if p.suffix in (".py", ".md") and p.name not in ("math.md", THIS) and "__pycache__" not in p.parts:
                yield p


def _defined_sections():
    text = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#+ §(\d+(?:\.\d+)?)\b", text, re.M)
    items = re.findall(r"^\*\*§(\d+\.\d+)\b", text, re.M)
    return set(headings) | set(items)


def test_every_math_citation_resolves():
    defined = _defined_sections()
    missing = []
    for p in _files():
        for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for m in CITATION.finditer(line):
                missing += [f"{p.relative_to(ROOT)}:{lineno}: §{s}" for s in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1))
                            if s not in defined]
    assert not missing, "citations of sections docs/math.md does not have:\n" + "\n".join(missing)


def test_no_citation_leaves_the_repository():
    stale = [f"{p.relative_to(ROOT)}:{i}" for p in _files()
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if "../shared" in line or re.search(r"\bSPEC (§|section|\d)", line) and "SciPy SPEC" not in line]
    assert not stale, "citations of a file outside the repository:\n" + "\n".join(stale)
