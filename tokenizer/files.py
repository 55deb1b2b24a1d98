"""Tokenizer files: the project's own lossless format, and GPT-2's byte-to-unicode text format.

Own format (a directory written by `save_tokenizer`, read by `load_tokenizer_files`; UTF-8; each file is
replaced atomically, temp file + rename):

- `vocab.json`: a JSON object `{"<id>": "<hex>", ...}`, one entry per token: the decimal id, then the
  token's bytes as lowercase hex (`"256": "2074"` is b" t"). Hex keeps any byte sequence exact.
- `merges.txt`: one merge per line in creation order, the two tokens' bytes in hex separated by one space
  (`20 74` merges b" " and b"t"). Lines starting with `#` are comments; blank lines are ignored.
- `special_tokens.json`: a JSON list of the special-token strings, in order (their ids are in vocab.json).

GPT-2 format (`read_gpt2_vocab`, `read_gpt2_merges`): `vocab.json` maps each token, written with
GPT-2's byte-to-unicode table (every byte mapped to a printable character, b" " to "Ġ"), to its id;
`merges.txt` holds one merge per line as two such strings, after an optional `#version` line.

Every reader raises ValueError naming the file (and line or token) for anything missing or malformed.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizer.textio import atomic_write

VOCAB_FILE, MERGES_FILE, SPECIALS_FILE = "vocab.json", "merges.txt", "special_tokens.json"
MERGES_HEADER = "# jaxlm BPE merges: one per line, creation order, each token's bytes in hex\n"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes map to themselves, the other 68 to chr(256), chr(257), ... in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def _read_text(path: str | os.PathLike, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} file is a directory: {path}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} file is not UTF-8 (byte offset {e.start})") from None


def _read_json(path: str | os.PathLike, what: str):
    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(f"{path}: duplicate key {key!r} in {what} file")
            seen[key] = value
        return seen
    try:
        return json.loads(_read_text(path, what), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {what} file is not valid JSON ({e.msg}, line {e.lineno})") from None


def _merge_lines(path: str | os.PathLike, gpt2: bool) -> Iterable[tuple[int, str, str]]:
    """(line number, left, right) for every merge line of a merges file.

    Own format: `#` starts a comment (hex never does). GPT-2: only a first `#version` line is skipped,
    since `#` is an ordinary token there (`# #` is a merge).
    """
    for lineno, line in enumerate(_read_text(path, "merges").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip() or (line.startswith("#version") and lineno == 1 if gpt2 else line.startswith("#")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}, line {lineno}: expected two tokens separated by one space, got {line!r}")
        yield lineno, parts[0], parts[1]


def _check_merges_known(path, merges: Sequence[tuple[bytes, bytes]], linenos: Sequence[int],
                        vocab: dict[int, bytes]) -> None:
    known = set(vocab.values())
    for (left, right), lineno in zip(merges, linenos):
        for part in (left, right, left + right):
            if part not in known:
                raise ValueError(f"{path}, line {lineno}: merge names token {part!r}, which is not in the vocabulary")


# ---- own format ------------------------------------------------------------------------------------

def _hex(token: bytes) -> str:
    return token.hex()


def _unhex(path, where: str, text) -> bytes:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{path}, {where}: expected a non-empty hex string, got {text!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}, {where}: {text!r} is not valid hex") from None


def read_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """vocab.json of the own format -> {id: token bytes}."""
    data = _read_json(path, "vocab")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: vocab file must hold a non-empty JSON object {{id: hex bytes}}")
    vocab = {}
    for key, value in data.items():
        if not (key.isascii() and key.isdigit()):
            raise ValueError(f"{path}: vocab key {key!r} is not a non-negative decimal token id")
        vocab[int(key)] = _unhex(path, f"token id {key}", value)
    return vocab


def read_merges(path: str | os.PathLike, vocab: dict[int, bytes] | None = None) -> list[tuple[bytes, bytes]]:
    """merges.txt of the own format -> [(left, right), ...]; checked against vocab when given."""
    merges, linenos = [], []
    for lineno, left, right in _merge_lines(path, gpt2=False):
        merges.append((_unhex(path, f"line {lineno}", left), _unhex(path, f"line {lineno}", right)))
        linenos.append(lineno)
    if vocab is not None:
        _check_merges_known(path, merges, linenos, vocab)
    return merges


def read_special_tokens(path: str | os.PathLike) -> list[str]:
    data = _read_json(path, "special tokens")
    if not isinstance(data, list) or not all(isinstance(s, str) and s for s in data):
        raise ValueError(f"{path}: special tokens file must hold a JSON list of non-empty strings")
    return data


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def save_tokenizer(directory: str | os.PathLike, vocab: dict[int, bytes], merges: Sequence[tuple[bytes, bytes]],
                   special_tokens: Sequence[str] = ()) -> Path:
    """Write vocab.json, merges.txt and special_tokens.json into directory (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / VOCAB_FILE,
                  "{\n" + ",\n".join(f'"{i}": "{_hex(vocab[i])}"' for i in sorted(vocab)) + "\n}\n")
    _write_atomic(directory / MERGES_FILE, MERGES_HEADER + "".join(f"{_hex(a)} {_hex(b)}\n" for a, b in merges))
    _write_atomic(directory / SPECIALS_FILE, json.dumps(list(special_tokens), ensure_ascii=False) + "\n")
    return directory


def load_tokenizer_files(directory: str | os.PathLike):
    """(vocab, merges, special_tokens) from a directory written by save_tokenizer."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"tokenizer directory not found: {directory}")
    vocab = read_vocab(directory / VOCAB_FILE)
    merges = read_merges(directory / MERGES_FILE, vocab)
    specials_path = directory / SPECIALS_FILE
    specials = read_special_tokens(specials_path) if specials_path.exists() else []
    return vocab, merges, specials


# ---- GPT-2 format ----------------------------------------------------------------------------------

def _gpt2_bytes(path, where: str, text: str, decoder: dict[str, int]) -> bytes:
    try:
        return bytes(decoder[c] for c in text)
    except KeyError as e:
        raise ValueError(f"{path}, {where}: character {e.args[0]!r} is not in GPT-2's byte-to-unicode table") from None


def read_gpt2_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """GPT-2 vocab.json ({token string: id}) -> {id: token bytes}."""
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    data = _read_json(path, "vocab")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: GPT-2 vocab file must hold a non-empty JSON object {{token: id}}")
    vocab = {}
    for token, i in data.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ValueError(f"{path}: token {token!r} has id {i!r}, expected a non-negative integer")
        if i in vocab:
            raise ValueError(f"{path}: id {i} is given to two tokens")
        vocab[i] = _gpt2_bytes(path, f"token {token!r}", token, decoder)
    return vocab


def read_gpt2_merges(path: str | os.PathLike, vocab: dict[int, bytes] | None = None) -> list[tuple[bytes, bytes]]:
    """GPT-2 merges.txt -> [(left, right), ...]; checked against vocab when given."""
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    merges, linenos = [], []
    for lineno, left, right in _merge_lines(path, gpt2=True):
        where = f"line {lineno}"
        merges.append((_gpt2_bytes(path, where, left, decoder), _gpt2_bytes(path, where, right, decoder)))
        linenos.append(lineno)
    if vocab is not None:
        _check_merges_known(path, merges, linenos, vocab)
    return merges
