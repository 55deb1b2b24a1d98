"""BPE training: the handout's worked example, equality with a slow textbook trainer, parallel
pre-tokenization, bad input, the CLI, and CS336's corpus.en when ../shared/data is there."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer import bpe
from tokenizer.bpe import count_pretokens, plan_ranges, train_bpe, train_from_counts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EOT = "<|endoftext|>"
# Written out again here (not imported) so the oracle does not share the code under test.
GPT2_RE = regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
WORKED_TEXT = ("low low low low low\nlower lower widest widest widest\n"
               "newest newest newest newest newest newest")
WORKED_MERGES = ["s t", "e st", "o w", "l ow", "w est", "n e", "ne west", "w i", "wi d", "wid est", "low e",
                 "lowe r"]


# ---- the oracle: textbook BPE, recounting every pair at every step ----------------------------------

def gpt2_pretokens(text: str) -> list[str]:
    return GPT2_RE.findall(text)


def textbook_train(text: str, vocab_size: int, specials: list[str], pretokenize=gpt2_pretokens):
    """CS336 §2 done the obvious way: split out specials, pre-tokenize, then merge the most frequent pair
    (ties: greater pair of byte strings) until the vocabulary is full or no pair is left."""
    if specials:
        pieces = re.split("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)), text)
    else:
        pieces = [text]
    counts = Counter(tok.encode() for piece in pieces for tok in pretokenize(piece))
    return textbook_merges(counts, vocab_size, specials)


def textbook_merges(counts: Counter, vocab_size: int, specials: list[str]):
    words = Counter()
    for tok, count in counts.items():
        words[tuple(bytes([b]) for b in tok)] += count
    vocab = [s.encode() for s in specials] + [bytes([b]) for b in range(256)]
    merges = []
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return dict(enumerate(vocab)), merges


def as_strings(merges):
    return [f"{a.decode()} {b.decode()}" for a, b in merges]


# ---- the handout's worked example -------------------------------------------------------------------

def test_worked_example_textbook():
    _, merges = textbook_train(WORKED_TEXT, 256 + 1 + 12, [EOT], pretokenize=str.split)
    assert as_strings(merges) == WORKED_MERGES


def test_worked_example_train_from_counts():
    counts = Counter(w.encode() for w in WORKED_TEXT.split())
    vocab, merges = train_from_counts(counts, 256 + 1 + 12, [EOT])
    assert as_strings(merges) == WORKED_MERGES
    assert vocab[0] == EOT.encode()
    assert [vocab[1 + b] for b in range(256)] == [bytes([b]) for b in range(256)]
    assert [vocab[257 + i] for i in range(12)] == [a + b for a, b in merges]


def test_tie_goes_to_greater_byte_strings():
    # after (B, A): (BA, A) and (A, B) tie; (b"BA", b"A") > (b"A", b"B"), the example
    _, merges = train_from_counts({b"BAA": 1, b"AB": 1, b"BA": 2}, 256 + 3)
    assert merges == [(b"B", b"A"), (b"BA", b"A"), (b"A", b"B")]
    # a proper prefix is smaller: (a, ba) beats (a, b)
    _, merges = train_from_counts({b"ba": 10, b"ab": 1, b"aba": 1}, 256 + 3)
    assert merges == [(b"b", b"a"), (b"a", b"ba"), (b"a", b"b")]


def test_stops_early_when_no_pair_left(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"aaaa")
    vocab, merges = train_bpe(path, 1000, [])
    assert merges == [(b"a", b"a"), (b"aa", b"aa")] and len(vocab) == 258


# ---- equality with the textbook trainer on random corpora --------------------------------------------

SPECIALS = [EOT, EOT + EOT, "[S]"]
ALPHABET = list("ab ") + ["a", "b", "c", " ", "\n", "\t", "'", "s", "1", "2", ".", "!", "é", "ß", "😀", "\u00a0"]


@st.composite
def corpora(draw):
    specials = draw(st.lists(st.sampled_from(SPECIALS), unique=True, max_size=3))
    docs = draw(st.lists(st.text(st.sampled_from(ALPHABET), max_size=30), max_size=6))
    text = ""
    for d in docs:
        text += d + (draw(st.sampled_from(specials)) if specials and draw(st.booleans()) else "")
    vocab_size = 256 + len(specials) + draw(st.integers(0, 40))
    return text, specials, vocab_size


@settings(max_examples=300, deadline=None)
@given(corpora())
def test_train_bpe_equals_textbook(tmp_path_factory, case):
    text, specials, vocab_size = case
    path = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    path.write_bytes(text.encode())
    assert train_bpe(path, vocab_size, specials, num_workers=1) == textbook_train(text, vocab_size, specials)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=8).map(lambda b: bytes(b"\x00\x01a\xff"[x % 4] for x in b)),
                       st.integers(1, 5), max_size=12),
       st.integers(0, 30))
def test_merge_core_equals_textbook_on_tiny_alphabets(counts, extra):
    # four byte values (0x00 and 0xff included) and small counts: ties at almost every step
    assert train_from_counts(counts, 256 + extra) == textbook_merges(Counter(counts), 256 + extra, [])


# ---- parallel pre-tokenization -------------------------------------------------------------------------

@pytest.fixture
def small_blocks(monkeypatch):
    """Make the planner cut a small file into many pieces and use 2 processes."""
    monkeypatch.setattr(bpe, "MIN_BYTES_PER_WORKER", 1)
    monkeypatch.setattr(bpe, "BLOCK_BYTES", 2000)


def story_text(num_stories=60, seed=3):
    from jaxlm.corpus import generate_stories
    stories = generate_stories(num_stories, seed=seed)
    # one long document without separators, so cuts between lines are exercised too
    return EOT.join(stories[:10]) + "\n".join(stories[10:30]) + EOT + EOT.join(stories[30:])


def test_plan_ranges_cut_only_at_safe_places(tmp_path):
    text = story_text()
    path = tmp_path / "c.txt"
    path.write_bytes(data := text.encode())
    ranges = plan_ranges(path, [EOT], 30)
    assert len(ranges) >= 20
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(e0 == s1 for (_, e0), (s1, _) in zip(ranges, ranges[1:]))
    for s, _ in ranges[1:]:
        at_special = data.startswith(EOT.encode(), s)
        at_line = data[s:s + 1] == b"\n" and 0x21 <= data[s - 1] <= 0x7E
        assert at_special or at_line, (s, data[s - 20:s + 20])


@pytest.mark.parametrize("specials", [[EOT], [], [EOT + EOT, EOT, "<pad>"]])
def test_parallel_counts_equal_whole_text_counts(tmp_path, small_blocks, specials):
    text = story_text()
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode())
    pieces = re.split("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)), text) \
        if specials else [text]
    expected = Counter(t.encode() for p in pieces for t in GPT2_RE.findall(p))
    assert count_pretokens(path, specials, num_workers=2) == expected
    assert count_pretokens(path, specials, num_workers=1) == expected


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_parallel_counts_on_random_text(tmp_path_factory, data):
    # tiny pieces: cuts land next to every kind of character, whitespace run and special token;
    # "b<|endoftext|>" makes cutting before "<|endoftext|>" unsafe
    specials = data.draw(st.lists(st.sampled_from(SPECIALS + ["b" + EOT]), unique=True, max_size=3))
    chars = st.sampled_from(ALPHABET + ["\n", "\n", "x.", "\r\n", "  "] + specials)
    text = "".join(data.draw(st.lists(chars, max_size=300)))
    path = tmp_path_factory.mktemp("par") / "c.txt"
    path.write_bytes(text.encode())
    pieces = re.split("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)), text) \
        if specials else [text]
    expected = Counter(t.encode() for p in pieces for t in GPT2_RE.findall(p))
    with mock.patch.object(bpe, "MIN_BYTES_PER_WORKER", 1), mock.patch.object(bpe, "BLOCK_BYTES", 8):
        assert count_pretokens(path, specials, num_workers=2) == expected


def test_never_cuts_inside_a_longer_special(tmp_path, small_blocks):
    # cutting before "<|endoftext|>" would break "b<|endoftext|>" and count a "b" that is not there
    path = tmp_path / "c.txt"
    path.write_bytes(("ab" + "b" + EOT + "cd" + EOT).encode() * 500)
    assert count_pretokens(path, ["b" + EOT, EOT], num_workers=2) == {b"ab": 500, b"cd": 500}


def test_workers_give_identical_results(tmp_path, small_blocks):
    path = tmp_path / "c.txt"
    path.write_bytes(story_text().encode())
    assert train_bpe(path, 600, [EOT], num_workers=1) == train_bpe(path, 600, [EOT], num_workers=2)


def test_no_merge_crosses_documents_or_specials(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(("ab" + EOT + "cd" + EOT) .encode() * 50 + b"ab")
    vocab, merges = train_bpe(path, 300, [EOT])
    assert merges == [(b"a", b"b"), (b"c", b"d")]  # never "bc", "b<", nor anything of the special
    assert sorted(vocab.values()).count(EOT.encode()) == 1


# ---- bad input ---------------------------------------------------------------------------------------

def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello " * 10 + b"\xff" + b" world")
    with pytest.raises(ValueError, match=r"bad\.txt: invalid UTF-8 at byte offset 60"):
        train_bpe(path, 300, [EOT])


def test_invalid_utf8_offset_is_absolute_in_parallel(tmp_path, small_blocks):
    data = bytearray(story_text().encode())
    at = len(data) * 2 // 3
    while data[at] >= 0x80:  # put the bad byte on a character boundary
        at += 1
    data[at] = 0xC3  # a lead byte followed by ASCII: invalid
    data[at + 1] = ord("x")
    path = tmp_path / "bad.txt"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"bad\.txt: invalid UTF-8 at byte offset {at}\b"):
        train_bpe(path, 300, [EOT], num_workers=2)


def test_bad_arguments(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="vocab_size 256 is below"):
        train_bpe(path, 256, [EOT])
    with pytest.raises(ValueError, match="duplicate special tokens"):
        train_bpe(path, 400, [EOT, "<pad>", EOT])
    with pytest.raises(FileNotFoundError):
        train_bpe(tmp_path / "missing.txt", 400, [EOT])


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    vocab, merges = train_bpe(path, 1000, [EOT, "<pad>"])
    assert merges == [] and len(vocab) == 258
    assert vocab[0] == EOT.encode() and vocab[1] == b"<pad>" and vocab[2] == b"\x00"


# ---- the CLI -----------------------------------------------------------------------------------------

def test_cli_end_to_end(tmp_path):
    from jaxlm.corpus import write_corpus
    from tokenizer import Tokenizer
    corpus = tmp_path / "stories.txt"
    write_corpus(corpus, num_stories=200, seed=1)
    out = tmp_path / "tok"
    proc = subprocess.run([sys.executable, "-m", "tokenizer.train", "--input", str(corpus), "--vocab-size", "400",
                           "--special-token", EOT, "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True, check=True)
    assert "peak memory" in proc.stdout and "longest tokens" in proc.stdout
    vocab, merges = train_bpe(corpus, 400, [EOT])
    tok = Tokenizer.load(out)
    assert len(merges) == 400 - 257 and tok.vocab == vocab and tok.merges == merges
    assert tok.special_tokens == [EOT]
    assert tok.decode(tok.encode("Once upon a time")) == "Once upon a time"


def test_cli_bad_input_exits_cleanly(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xfe")
    out = tmp_path / "tok"
    proc = subprocess.run([sys.executable, "-m", "tokenizer.train", "--input", str(bad), "--vocab-size", "300",
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "bad.txt: invalid UTF-8 at byte offset 3" in proc.stderr
    assert not out.exists()


# ---- CS336's corpus.en -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_en():
    path = DATA / "corpus.en"
    if not path.exists():
        pytest.skip("../shared/data not present")
    return path


def test_corpus_en_speed_and_workers(corpus_en, monkeypatch):
    start = time.perf_counter()
    vocab, merges = train_bpe(corpus_en, 500, [EOT])
    assert time.perf_counter() - start < 1.5  # CS336's test_train_bpe_speed bound
    assert len(vocab) == 500 and len(merges) == 500 - 257
    monkeypatch.setattr(bpe, "MIN_BYTES_PER_WORKER", 1)
    monkeypatch.setattr(bpe, "BLOCK_BYTES", 10_000)
    assert train_bpe(corpus_en, 500, [EOT], num_workers=2) == (vocab, merges)


def test_corpus_en_equals_textbook(corpus_en):
    text = corpus_en.read_bytes().decode()
    assert train_bpe(corpus_en, 330, [EOT]) == textbook_train(text, 330, [EOT])


@pytest.mark.parametrize("name, vocab_size", [("corpus.en", 500), ("tinystories_sample.txt", 400)])
def test_learned_tokens_stay_inside_pretokens(name, vocab_size):
    path = DATA / name
    if not path.exists():
        pytest.skip("../shared/data not present")
    text = path.read_bytes().decode()
    pretokens = {t.encode() for doc in text.split(EOT) for t in GPT2_RE.findall(doc)}
    vocab, _ = train_bpe(path, vocab_size, [EOT])
    learned = [t for i, t in vocab.items() if i >= 257]
    assert learned
    # a merge across a document, special-token or pre-token boundary would make a token found in no pre-token
    assert all(any(t in p for p in pretokens) for t in learned)
    if EOT in text and not set("<|>") & set(text.replace(EOT, "")):
        assert not any(ch in t for t in learned for ch in b"<|>")  # those bytes only occur in the special


def test_cs336_adapter(tmp_path):
    from jaxlm.cs336 import get_tokenizer, run_train_bpe
    path = tmp_path / "c.txt"
    path.write_bytes(story_text(20).encode())
    vocab, merges = run_train_bpe(path, 300, [EOT], num_workers=1)
    assert (vocab, merges) == textbook_train(story_text(20), 300, [EOT])
    tok = get_tokenizer(vocab, merges, [EOT])
    assert tok.decode(tok.encode("Once upon a time" + EOT)) == "Once upon a time" + EOT


def test_progress_is_silent_when_not_a_terminal(tmp_path, capfd):
    path = tmp_path / "c.txt"
    path.write_bytes(story_text(20).encode())
    assert train_bpe(path, 300, [EOT], progress=True) == train_bpe(path, 300, [EOT])
    assert capfd.readouterr() == ("", "")


def test_heap_compaction_keeps_results(monkeypatch):
    counts = Counter({w.encode(): c for w, c in Counter(GPT2_RE.findall(story_text(40))).items()})
    expected = train_from_counts(counts, 700, [EOT])
    monkeypatch.setattr(bpe, "COMPACT_SLACK", -10**9)  # compact after every merge
    assert train_from_counts(counts, 700, [EOT]) == expected


def test_many_tasks_per_worker(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setattr(bpe, "TASK_BYTES", 5000)
    path = tmp_path / "c.txt"
    path.write_bytes(story_text().encode())
    assert count_pretokens(path, [EOT], num_workers=2) == count_pretokens(path, [EOT], num_workers=1)
