"""Tokenizer: equality with the slow sequential-merge encoder, special tokens, round trips, chunked
streaming, decoding, and every bad-input error of the constructor and the file formats."""
from __future__ import annotations

import json
import os
import re

import regex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_helpers import EOT, GPT2_RE, slow_encode, story_text, trained_vocab_merges

from tokenizer import Tokenizer
from tokenizer import tokenizer as tokenizer_module
from tokenizer.files import bytes_to_unicode

BYTES_VOCAB = {i: bytes([i]) for i in range(256)}
# Overlapping specials: one is a prefix of another, and "xyz"/"yzw" overlap in "xyzw".
SPECIALS = [EOT, EOT + EOT, "xyz", "yzw"]
# Pieces that stress the cut points: contractions, whitespace runs, fragments of special tokens.
PIECES = ["a", "b", "l", "ll", "ve", "'", " ", "  ", "\n", "\t", " \n ", "x", "y", "z", "w", "<|", "endoftext",
          "|>", EOT, "é", "😀", "7", "!", ".", "don", "Lily"]


@pytest.fixture(scope="module")
def trained():
    vocab, merges = trained_vocab_merges()
    return vocab, merges


@pytest.fixture(scope="module")
def tok(trained):
    return Tokenizer(*trained, special_tokens=SPECIALS)


texts_of_pieces = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
story_like = st.integers(0, 10_000).map(lambda seed: story_text(2, seed=seed)[:400])


# ---- encoding equals the slow encoder ----------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(text=st.one_of(texts_of_pieces, story_like, st.text(max_size=60)))
def test_encode_equals_slow_sequential_merges(tok, trained, text):
    vocab, merges = trained
    assert tok.encode(text) == slow_encode(text, tok.vocab, merges, SPECIALS)


def test_trained_tokenizer_compresses_and_round_trips(tok):
    text = story_text(50, seed=7)
    ids = tok.encode(text)
    assert len(ids) < len(text.encode("utf-8")) / 2  # merges are really applied
    assert tok.decode(ids) == text


def test_cache_bound_does_not_change_ids(trained, monkeypatch):
    text = story_text(30, seed=3)
    expected = Tokenizer(*trained, special_tokens=[EOT]).encode(text)
    monkeypatch.setattr(tokenizer_module, "CACHE_MAX", 8)
    small = Tokenizer(*trained, special_tokens=[EOT])
    assert small.encode(text) == expected
    assert len(small._cache) <= 8


def test_handmade_merges_by_rank():
    # merges: (a,b) then (ab,c) then (b,c): "abc" -> ab then abc, never a + bc
    vocab = dict(BYTES_VOCAB) | {256: b"ab", 257: b"abc", 258: b"bc"}
    merges = [(b"a", b"b"), (b"ab", b"c"), (b"b", b"c")]
    tok = Tokenizer(vocab, merges)
    for text in ["abc", "abcbc", "bcab", "aabbcc", "xbcabc abc"]:
        assert tok.encode(text) == slow_encode(text, vocab, merges)
    assert tok.encode("abc") == [257]
    assert tok.encode("bca") == [258, ord("a")]


def test_repeated_pair_merges_left_to_right():
    vocab = dict(BYTES_VOCAB) | {256: b"aa", 257: b"aaa"}
    merges = [(b"a", b"a"), (b"aa", b"a")]
    tok = Tokenizer(vocab, merges)
    for n in range(1, 9):
        assert tok.encode("a" * n) == slow_encode("a" * n, vocab, merges)
    assert tok.encode("aaa") == [257] and tok.encode("aaaa") == [256, 256]


def test_ascii_pattern_classes_equal_the_unicode_ones():
    for c in map(chr, range(128)):
        for unicode_class, ascii_class in [(r"\p{L}", "[A-Za-z]"), (r"\p{N}", "[0-9]"), (r"\s", r"\s")]:
            assert bool(regex.fullmatch(unicode_class, c)) == bool(re.fullmatch(ascii_class, c, re.ASCII)), (c, unicode_class)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=80) | texts_of_pieces,
       start=st.integers(0, 100), length=st.integers(0, 100))
def test_pretokenize_equals_gpt2_regex(text, start, length):
    assert tokenizer_module.pretokenize(text) == GPT2_RE.findall(text)
    end = min(start + length, len(text))
    assert tokenizer_module.pretokenize(text, start, end) == GPT2_RE.findall(text[start:end])


# ---- special tokens ----------------------------------------------------------------------------------

def test_specials_longest_first_and_never_split(tok):
    eot, double = tok.special_ids[EOT], tok.special_ids[EOT + EOT]
    assert eot != double
    assert tok.encode(EOT) == [eot]
    assert tok.encode(EOT + EOT) == [double]
    assert tok.encode(EOT * 3) == [double, eot]
    assert tok.encode("hi" + EOT + EOT + "there") == tok.encode("hi") + [double] + tok.encode("there")
    # overlapping specials: the leftmost match wins, then scanning resumes after it
    assert tok.encode("xyzw") == [tok.special_ids["xyz"]] + tok.encode("w")
    assert tok.encode("xyzw")[:1] != [tok.special_ids["yzw"]]
    assert tok.encode("ayzw") == tok.encode("a") + [tok.special_ids["yzw"]]


def test_without_specials_endoftext_is_plain_text(trained):
    plain = Tokenizer(*trained)
    ids = plain.encode("hi" + EOT)
    assert len(ids) > 2 and plain.decode(ids) == "hi" + EOT
    assert ids == slow_encode("hi" + EOT, plain.vocab, trained[1])


def test_missing_specials_are_appended(trained):
    vocab, merges = trained
    assert vocab[0] == EOT.encode()  # train_bpe puts the specials first
    size = len(vocab)
    tok = Tokenizer(vocab, merges, special_tokens=[EOT, "<pad>", "🙂"])
    assert tok.special_ids[EOT] == 0
    assert tok.special_ids["<pad>"] == max(vocab) + 1 and tok.special_ids["🙂"] == max(vocab) + 2
    assert tok.vocab_size == len(vocab) + 2
    assert tok.decode(tok.encode("a<pad>🙂")) == "a<pad>🙂"
    assert len(vocab) == size  # the caller's dict is not modified


# ---- round trips and decoding ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_round_trip_random_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_empty_and_decode_errors(tok):
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert list(tok.encode_iterable([])) == [] and list(tok.encode_iterable(["", ""])) == []
    with pytest.raises(ValueError, match=r"token id 99999 \(position 1\)"):
        tok.decode([5, 99999])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="token id 'a'"):
        tok.decode(["a"])


def test_decode_replaces_broken_utf8():
    tok = Tokenizer(BYTES_VOCAB, [])
    ids = tok.encode("é")
    assert len(ids) == 2 and tok.decode(ids[:1]) == "\ufffd" and tok.decode(ids) == "é"


# ---- streaming ---------------------------------------------------------------------------------------

def _cut(text: str, points: list[int]) -> list[str]:
    cuts = sorted({p % (len(text) + 1) for p in points})
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(texts_of_pieces, story_like), points=st.lists(st.integers(0, 10_000), max_size=12))
def test_encode_iterable_any_chunking(tok, text, points):
    chunks = _cut(text, points)
    assert "".join(chunks) == text
    assert list(tok.encode_iterable(chunks)) == tok.encode(text)


def test_encode_iterable_one_character_at_a_time(tok):
    text = "they'll  \n\n  go" + EOT + EOT + "xy" + "zw  'l" + EOT[:-1] + " 😀" + EOT
    assert list(tok.encode_iterable(iter(text))) == tok.encode(text)


def test_encode_iterable_is_lazy(tok):
    def chunks():
        yield "hello there" + EOT + "more text "
        raise RuntimeError("read too far")
    it = tok.encode_iterable(chunks())
    assert next(it) == tok.encode("hello")[0]
    with pytest.raises(TypeError, match="str chunks"):
        list(tok.encode_iterable([b"bytes"]))


def test_encode_iterable_file_lines(tok, tmp_path):
    text = story_text(40, seed=5, separator="\n" + EOT + "\n")
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(tok.encode_iterable(f)) == tok.encode(text)


# ---- constructor and file errors ---------------------------------------------------------------------

def test_constructor_errors():
    with pytest.raises(ValueError, match="duplicate special token '<s>'"):
        Tokenizer(BYTES_VOCAB, [], ["<s>", "<t>", "<s>"])
    with pytest.raises(ValueError, match=r"merge #0 .* names token b'ab'"):
        Tokenizer(BYTES_VOCAB, [(b"a", b"b")])
    with pytest.raises(ValueError, match="lacks 1 of the 256 single bytes"):
        Tokenizer({i: bytes([i]) for i in range(255)}, [])
    with pytest.raises(ValueError, match="expected non-empty bytes"):
        Tokenizer(BYTES_VOCAB | {256: "ab"}, [])
    with pytest.raises(ValueError, match="non-empty string"):
        Tokenizer(BYTES_VOCAB, [], [""])
    with pytest.raises(ValueError, match="must be a list of strings"):
        Tokenizer(BYTES_VOCAB, [], EOT)


ODD_TOKENS = {256: b"\x00\xff", 257: b" \n", 258: b"\r\n", 259: b"#", 260: b"\xe2\x82", 261: b"\xe2\x82\xac"}
ODD_MERGES = [(b"\x00", b"\xff"), (b" ", b"\n"), (b"\r", b"\n"), (b"\xe2", b"\x82"), (b"\xe2\x82", b"\xac")]


def test_save_load_round_trip_any_bytes(tmp_path):
    vocab = {i + 3: bytes([i]) for i in range(256)} | {i + 3: t for i, t in ODD_TOKENS.items()}
    merges = ODD_MERGES  # b"#" (id 262) duplicates a single byte: it must survive too
    tok = Tokenizer(vocab, merges, ["<|a|>", "é"])
    tok.save(tmp_path / "t")
    assert sorted(os.listdir(tmp_path / "t")) == ["merges.txt", "special_tokens.json", "vocab.json"]
    back = Tokenizer.load(tmp_path / "t")
    assert back.vocab == tok.vocab and back.merges == tok.merges and back.special_tokens == ["<|a|>", "é"]
    same = Tokenizer.from_files(tmp_path / "t" / "vocab.json", tmp_path / "t" / "merges.txt", ["<|a|>", "é"])
    text = "\x00\xff €\r\n #<|a|>é"
    assert back.encode(text) == tok.encode(text) == same.encode(text)
    assert json.loads((tmp_path / "t" / "vocab.json").read_text())["3"] == "00"


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _own_files(tmp_path, vocab_text=None, merges_text="# comment\n61 62\n"):
    vocab = {str(i): f"{i:02x}" for i in range(256)} | {"256": "6162"}
    v = _write(tmp_path / "vocab.json", vocab_text if vocab_text is not None else json.dumps(vocab))
    m = _write(tmp_path / "merges.txt", merges_text)
    return v, m


def test_own_format_reads_and_errors(tmp_path):
    v, m = _own_files(tmp_path)
    assert Tokenizer.from_files(v, m).encode("ab") == [256]
    cases = [
        (dict(vocab_text="{not json"), r"vocab.json: vocab file is not valid JSON"),
        (dict(vocab_text="[1, 2]"), r"non-empty JSON object"),
        (dict(vocab_text='{"0": "00", "0": "01"}'), r"duplicate key '0'"),
        (dict(vocab_text='{"x": "00"}'), r"vocab key 'x' is not a non-negative decimal token id"),
        (dict(vocab_text='{"0": "zz"}'), r"token id 0: 'zz' is not valid hex"),
        (dict(merges_text="61 62\n6162\n"), r"merges.txt, line 2: expected two tokens"),
        (dict(merges_text="61  62\n"), r"merges.txt, line 1: expected two tokens"),
        (dict(merges_text="61 6g\n"), r"merges.txt, line 1: '6g' is not valid hex"),
        (dict(merges_text="61 62\n\n62 63\n"), r"merges.txt, line 3: merge names token b'bc'"),
    ]
    for kwargs, message in cases:
        v, m = _own_files(tmp_path, **kwargs)
        with pytest.raises(ValueError, match=message):
            Tokenizer.from_files(v, m)
    with pytest.raises(ValueError, match="vocab file not found"):
        Tokenizer.from_files(tmp_path / "nope.json", m)
    with pytest.raises(ValueError, match="tokenizer directory not found"):
        Tokenizer.load(tmp_path / "nope")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    tok = Tokenizer(BYTES_VOCAB, [], [EOT])
    tok.save(tmp_path)
    before = (tmp_path / "vocab.json").read_bytes()
    import tokenizer.files as files_module

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(files_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        Tokenizer(BYTES_VOCAB | {256: b"ab"}, [(b"a", b"b")]).save(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "vocab.json").read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["merges.txt", "special_tokens.json", "vocab.json"]


# ---- GPT-2 byte-to-unicode format --------------------------------------------------------------------

def test_bytes_to_unicode_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("!")] == "!" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[0] == "Ā"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def _gpt2_files(tmp_path, extra_vocab=None, merges_lines=("#version: 0.2", "Ġ t", "Ġt h", "Ġth e", "# #")):
    enc = bytes_to_unicode()
    vocab = {enc[b]: b for b in range(256)}
    for i, tok in enumerate(["Ġt", "Ġth", "Ġthe", "##", EOT], start=256):
        vocab[tok] = i
    vocab |= extra_vocab or {}
    v = _write(tmp_path / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    m = _write(tmp_path / "merges.txt", "\n".join(merges_lines) + "\n")
    return v, m


def test_gpt2_format_reads_and_errors(tmp_path):
    v, m = _gpt2_files(tmp_path)
    tok = Tokenizer.from_gpt2(v, m, [EOT])
    assert tok.encode(" the ##" + EOT) == [258, ord(" "), 259, 260]  # "# #" is a merge, not a comment
    assert tok.special_ids[EOT] == 260 and tok.vocab[256] == b" t"
    v, m = _gpt2_files(tmp_path, extra_vocab={"a b": 300})
    with pytest.raises(ValueError, match=r"token 'a b': character ' ' is not in GPT-2's byte-to-unicode table"):
        Tokenizer.from_gpt2(v, m)
    v, m = _gpt2_files(tmp_path, extra_vocab={"Ġx": 256})
    with pytest.raises(ValueError, match="id 256 is given to two tokens"):
        Tokenizer.from_gpt2(v, m)
    v, m = _gpt2_files(tmp_path, merges_lines=("Ġ t", "Ġt hey"))
    with pytest.raises(ValueError, match=r"merges.txt, line 2: merge names token b'hey'"):
        Tokenizer.from_gpt2(v, m)
    v, m = _gpt2_files(tmp_path, merges_lines=("Ġ t", "Ġtx"))
    with pytest.raises(ValueError, match=r"line 2: expected two tokens"):
        Tokenizer.from_gpt2(v, m)
    with pytest.raises(ValueError, match="merges file not found"):
        Tokenizer.from_gpt2(v, tmp_path / "missing.txt")
