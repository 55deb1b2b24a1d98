"""`python -m tokenizer.encode` / `encode_file`: the .npy equals Tokenizer.encode (1 and 2 workers),
memory-mapped loading, uint32 for big vocabularies, UTF-8 split across read blocks, and no partial output."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from tokenizer_helpers import EOT, story_text, trained_vocab_merges

from tokenizer import Tokenizer
from tokenizer import encode as encode_module
from tokenizer.encode import encode_file, main, npy_header
from tokenizer.textio import InvalidUTF8Error


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    Tokenizer(*trained_vocab_merges(), special_tokens=[EOT]).save(d)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text(story_text(3000, seed=11), encoding="utf-8")  # about 600 KB
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_npy_equals_encode(tok_dir, corpus, tmp_path, workers, monkeypatch, capsys):
    monkeypatch.setattr(encode_module, "BLOCK_BYTES", 4096)  # many blocks, characters cut at block edges
    monkeypatch.setattr(encode_module, "RANGE_BYTES", 100_000)  # several worker ranges
    out = tmp_path / "ids.npy"
    assert main(["--tokenizer", str(tok_dir), "--input", str(corpus), "--output", str(out),
                 "--workers", str(workers)]) == 0
    ids = np.load(out, mmap_mode="r")
    expected = Tokenizer.load(tok_dir).encode(corpus.read_text(encoding="utf-8"))
    assert ids.dtype == np.uint16 and isinstance(ids, np.memmap)
    np.testing.assert_array_equal(ids, np.array(expected))
    printed = capsys.readouterr().out
    assert f"{len(expected):,} tokens" in printed and "bytes/token" in printed and "MB/s" in printed
    assert os.listdir(tmp_path) == ["ids.npy"]  # no temp or part files left


def test_cli_as_module_subprocess(tok_dir, tmp_path):
    text = "Tom's café 😀 said hi." + EOT + "\n\n  Lily ran.  "
    src = tmp_path / "in.txt"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out.npy"
    run = subprocess.run([sys.executable, "-m", "tokenizer.encode", "--tokenizer", str(tok_dir), "--input", str(src),
                          "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "bytes/token" in run.stdout
    assert np.load(out).tolist() == Tokenizer.load(tok_dir).encode(text)


def test_uint32_for_big_vocab_and_empty_file(tmp_path):
    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {70_000: b"big"}, [], special_tokens=["big"])
    src = tmp_path / "in.txt"
    src.write_text("a big b", encoding="utf-8")
    stats = encode_file(tok, src, tmp_path / "o.npy")
    ids = np.load(tmp_path / "o.npy", mmap_mode="r")
    assert ids.dtype == np.uint32 and ids.tolist() == [97, 32, 70_000, 32, 98] and stats.n_tokens == 5
    src.write_text("", encoding="utf-8")
    stats = encode_file(tok, src, tmp_path / "e.npy", workers=2)
    assert np.load(tmp_path / "e.npy").shape == (0,) and stats.n_tokens == 0 and stats.n_bytes == 0


def test_npy_header_fits_any_length():
    import io
    for n in (0, 7, 10**12):
        f = io.BytesIO(npy_header(np.dtype(np.uint16), n))
        assert np.lib.format.read_magic(f) == (1, 0)
        assert np.lib.format.read_array_header_1_0(f) == ((n,), False, np.dtype("<u2"))
        assert f.tell() == encode_module.NPY_HEADER_BYTES


@pytest.mark.parametrize("workers", [1, 2])
def test_invalid_utf8_names_offset_and_leaves_no_output(tok_dir, tmp_path, workers, monkeypatch):
    monkeypatch.setattr(encode_module, "BLOCK_BYTES", 64)
    monkeypatch.setattr(encode_module, "RANGE_BYTES", 200)
    good = ("Lily saw a café. " * 20 + EOT) * 3
    data = good.encode() + b"ok \xff tail" + (EOT + "more").encode()
    src = tmp_path / "bad.txt"
    src.write_bytes(data)
    out = tmp_path / "out.npy"
    with pytest.raises(InvalidUTF8Error, match=rf"bad.txt: invalid UTF-8 at byte offset {len(good.encode()) + 3}\b"):
        encode_file(Tokenizer.load(tok_dir), src, out, workers=workers)
    assert os.listdir(tmp_path) == ["bad.txt"]
    # the CLI reports it as one line and exits 1
    assert main(["--tokenizer", str(tok_dir), "--input", str(src), "--output", str(out)]) == 1
    assert os.listdir(tmp_path) == ["bad.txt"]


def test_truncated_character_at_end_and_missing_input(tok_dir, tmp_path):
    src = tmp_path / "cut.txt"
    src.write_bytes("abc é".encode()[:-1])
    with pytest.raises(InvalidUTF8Error, match="byte offset 4"):
        encode_file(Tokenizer.load(tok_dir), src, tmp_path / "o.npy")
    with pytest.raises(ValueError, match="input file not found"):
        encode_file(Tokenizer.load(tok_dir), tmp_path / "nope.txt", tmp_path / "o.npy")


def test_utf8_cut_points():
    cut = encode_module._utf8_cut
    for text in ["abc", "é", "€", "😀", "a😀", "😀b"]:
        data = text.encode()
        for k in range(len(data) + 1):
            head = data[:k]
            i = cut(head)
            head[:i].decode("utf-8")  # complete characters only
            data[i:].decode("utf-8")  # and i is a character boundary of the whole text
            assert len(head) - i < 4


def test_workers_cut_only_where_a_special_token_is_safe(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(encode_module, "RANGE_BYTES", 50_000)
    vocab, merges = trained_vocab_merges()
    text = corpus.read_text(encoding="utf-8").replace(EOT + "Lily", EOT + EOT + "Lily")
    src = tmp_path / "in.txt"
    src.write_text(text, encoding="utf-8")
    cases = [([EOT], lambda n: n > 4),  # cut at every few documents
             ([], lambda n: n == 1),  # nothing marks a safe cut: one range
             ([EOT, EOT + EOT], lambda n: n == 1)]  # a cut before EOT could split EOT+EOT
    for specials, ranges_ok in cases:
        tok = Tokenizer(vocab, merges, specials)
        stats = encode_file(tok, src, tmp_path / "o.npy", workers=2)
        assert ranges_ok(stats.ranges), (specials, stats)
        assert np.load(tmp_path / "o.npy").tolist() == tok.encode(text)


def test_tokenizer_pickles_as_its_inputs():
    import pickle
    tok = Tokenizer(*trained_vocab_merges(), special_tokens=[EOT, "<pad>"])
    tok.encode("warm the cache")
    back = pickle.loads(pickle.dumps(tok))
    assert back.vocab == tok.vocab and back.special_ids == tok.special_ids and len(back._cache) == 0
    assert back.encode("Lily<pad>" + EOT) == tok.encode("Lily<pad>" + EOT)
