"""Every relative link of the README and the manual points at a file of the repository, and every
anchor at a heading of that page."""

import glob
import os
import re

import pytest

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str):
    with open(path, encoding="utf-8") as f:
        return {_anchor(line.lstrip("#")) for line in f if line.startswith("#")}


def _pages(repo_root):
    return [os.path.join(repo_root, "README.md")] + sorted(
        glob.glob(os.path.join(repo_root, "docs", "**", "*.md"), recursive=True)
    )


def test_the_anchor_of_a_heading_is_githubs():
    assert _anchor(" Use it from your own project") == "use-it-from-your-own-project"
    assert _anchor(" The C++ kernel `iou_aware._C` (optional)") == "the-c-kernel-iou_aware_c-optional"


def test_every_relative_link_resolves(repo_root):
    broken = []
    for page in _pages(repo_root):
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(page, repo_root)}: {target} (no such file)")
            elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
                broken.append(f"{os.path.relpath(page, repo_root)}: {target} (no such heading)")
    assert broken == [], "\n".join(broken)


@pytest.mark.parametrize("page", ["README.md", "docs/README.md"])
def test_the_entry_pages_exist(repo_root, page):
    assert os.path.isfile(os.path.join(repo_root, page))
