"""The repository speaks of the product: no tracked text file tells how it was developed (a
numbered working session or tracker entry, the tracker entry's target, a shared machine).
ONNX Runtime's InferenceSession or pytest's scope="session" are product words and pass."""

import re
import subprocess

import pytest

# Spelled in pieces so that this file does not hold the phrases it forbids.
SESSION, ISSUE = "sess" + "ion", "iss" + "ue"
DEVELOPMENT_WORDS = re.compile(
    rf"\b{SESSION}s? \d+|\b{ISSUE}s? \d+|\bthis {SESSION}\b|\bprevious {SESSION}\b|\bthe {SESSION}\b|"
    rf"\bthe {ISSUE}'?s?\b|\bthe machine was " + "shared\\b",
    re.IGNORECASE,
)


def _tracked_text_files(repo_root):
    names = subprocess.run(
        ["git", "ls-files"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        n for n in names if n.endswith((".py", ".md", ".sh", ".yaml", ".txt", ".cff", ".toml", ".cpp")) or "/" not in n
    ]


def test_no_tracked_text_file_talks_about_how_the_project_was_developed(repo_root):
    try:
        files = _tracked_text_files(repo_root)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    found = []
    for name in files:
        if name == "tests/test_repository_words.py":
            continue
        try:
            text = open(f"{repo_root}/{name}", encoding="utf-8").read()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if DEVELOPMENT_WORDS.search(line):
                found.append(f"{name}:{number}: {line.strip()[:100]}")
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "line", [f"seed 42 ({SESSION} 9)", f"the {ISSUE}'s target", f"See {ISSUE} 14.", f"this {SESSION}'s run"]
)
def test_the_words_are_caught(line):
    assert DEVELOPMENT_WORDS.search(line)


@pytest.mark.parametrize("line", ["ort.InferenceSession(path)", '@pytest.fixture(scope="session")', "issues a warning"])
def test_product_words_pass(line):
    assert not DEVELOPMENT_WORDS.search(line)
