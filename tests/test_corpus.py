"""The embedded story generator: deterministic, varied, with the features the tokenizer must handle."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from jaxlm.corpus import EOT, generate_stories, write_corpus


@pytest.fixture(scope="module")
def stories():
    return generate_stories(3000, seed=0)


def test_deterministic_and_prefix_stable(stories):
    assert generate_stories(50, seed=0) == stories[:50]
    assert generate_stories(50, seed=1) != stories[:50]
    assert generate_stories(50, seed=1) == generate_stories(50, seed=1)


def test_thousands_of_distinct_words(stories):
    words = set(re.findall(r"[^\W\d_]+", " ".join(stories)))
    assert len(words) >= 2500, len(words)
    assert len(set(stories)) == len(stories)


def test_has_non_ascii_digits_dialogue_and_emoji(stories):
    text = "".join(stories)
    assert any(name in text for name in ["Zoë", "José", "Björn", "Chloé"])
    assert sum(any(ord(c) > 127 for c in s) for s in stories) > len(stories) // 20
    assert sum(any(ord(c) >= 0x1F300 for c in s) for s in stories) > len(stories) // 50  # emoji
    assert sum(bool(re.search(r"\d", s)) for s in stories) > len(stories) // 4
    assert sum('"' in s for s in stories) > len(stories) * 0.9
    for p in ".,!?\"'":
        assert p in text


def test_story_shape(stories):
    assert sum(s.startswith("Once upon a time") for s in stories) > len(stories) // 4
    for s in stories[:200]:
        assert s[-1] in '.!"🌈🐻🎉⭐🌞🍪🐶🐱🦊🌸🎈🚀️😊🍎', s[-40:]
        assert s.count('"') % 2 == 0, s
        assert EOT not in s and not set("<|>") & set(s)  # separators never occur inside a story


def test_write_corpus(tmp_path, stories):
    path = tmp_path / "c.txt"
    n = write_corpus(path, num_stories=20, seed=0)
    data = path.read_bytes()
    assert n == len(data)
    assert data.decode("utf-8").split(EOT) == stories[:20]
    n = write_corpus(path, 100_000, seed=0)
    docs = path.read_bytes().decode("utf-8").split(EOT)
    assert 100_000 <= n < 100_000 + 2000 and docs == stories[:len(docs)]
    with pytest.raises(ValueError):
        write_corpus(path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]  # no temp files left behind


def test_imports_without_jax():
    code = "import sys, jaxlm.corpus; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cli(tmp_path, capsys):
    from jaxlm.corpus import main
    path = tmp_path / "s.txt"
    assert main(["--out", str(path), "--stories", "3", "--seed", "2"]) == 0
    assert path.read_text(encoding="utf-8").split(EOT) == generate_stories(3, seed=2)
    assert "wrote" in capsys.readouterr().out
