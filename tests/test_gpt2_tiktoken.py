"""GPT-2's files loaded with Tokenizer.from_gpt2 encode every shared text exactly as tiktoken does
(special token included), streamed or not. Skipped when ../shared/data is absent."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_helpers import DATA, EOT

from tokenizer import Tokenizer

tiktoken = pytest.importorskip("tiktoken")
pytestmark = pytest.mark.skipif(not (DATA / "gpt2_vocab.json").exists(), reason="../shared/data is absent")
TEXTS = ["tinystories_sample.txt", "corpus.en", "bench_corpus.txt"]
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _tiktoken_gpt2():
    """OpenAI's GPT-2 Encoding built offline from the vocab file (as ../shared/peers/tiktoken_gpt2.py does):
    tiktoken wants {token bytes: rank}; GPT-2's vocab.json writes the bytes with its own byte-to-unicode table,
    rebuilt here independently of tokenizer.files."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in printable]
    char_to_byte = {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}
    vocab = json.loads((DATA / "gpt2_vocab.json").read_text(encoding="utf-8"))
    ranks = {bytes(char_to_byte[c] for c in token): i for token, i in vocab.items() if token != EOT}
    return tiktoken.Encoding(name="gpt2_offline", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: vocab[EOT]})


@pytest.fixture(scope="module")
def reference():
    return _tiktoken_gpt2()


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.from_gpt2(DATA / "gpt2_vocab.json", DATA / "gpt2_merges.txt", special_tokens=[EOT])


@pytest.mark.parametrize("name", TEXTS)
def test_ids_equal_tiktoken_on_shared_texts(gpt2, reference, name):
    text = (DATA / name).read_text(encoding="utf-8")
    expected = reference.encode(text, allowed_special="all")
    assert gpt2.encode(text) == expected
    assert gpt2.decode(expected) == text
    if name != "bench_corpus.txt":  # streamed line by line (the big one is covered by the CLI benchmark)
        assert list(gpt2.encode_iterable(text.splitlines(keepends=True))) == expected


def test_without_specials_endoftext_is_text_as_in_tiktoken(reference):
    plain = Tokenizer.from_gpt2(DATA / "gpt2_vocab.json", DATA / "gpt2_merges.txt")
    text = (DATA / "tinystories_sample.txt").read_text(encoding="utf-8")
    assert EOT in text
    assert plain.encode(text) == reference.encode(text, disallowed_special=())
    assert plain.encode(EOT) == reference.encode(EOT, disallowed_special=()) and len(plain.encode(EOT)) > 1


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80) | st.text(alphabet=" \n\t'abcdlmstvre0123!?<|>é😀", max_size=80))
def test_random_text_equals_tiktoken(gpt2, reference, text):
    assert gpt2.encode(text) == reference.encode(text, allowed_special="all")
