"""Pre-tokenization shared by training and encoding: the GPT-2 regex and special-token splitting."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import regex

# GPT-2's pattern: contractions, letter runs, digit runs, punctuation runs (each with at most one leading
# space), then whitespace. `\s+(?!\S)` leaves the last space of a run to prefix the next word.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)


def special_pattern(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A regex capturing any special token, longest first so `<a><a>` wins over `<a>`; None if there are none."""
    specials = sorted(set(special_tokens), key=len, reverse=True)
    if not specials:
        return None
    return regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")


def split_on_specials(text: str, pattern: regex.Pattern | None) -> list[str]:
    """Split text at special tokens, keeping them as separate items (the result alternates text, special)."""
    return [text] if pattern is None else pattern.split(text)


def find_chunk_boundaries(path: str | os.PathLike, num_chunks: int, split_token: bytes,
                          probe: int = 1 << 16) -> list[int]:
    """Byte offsets cutting the file into about num_chunks pieces, each cut at the start of `split_token`.

    Cuts land only where split_token begins, so no document (and no multi-byte character) is split;
    duplicates collapse, so fewer chunks may come back.
    """
    size = os.path.getsize(path)
    if num_chunks <= 1 or size == 0 or not split_token:
        return [0, size]
    guesses = [size * i // num_chunks for i in range(num_chunks + 1)]
    bounds = [0]
    with open(path, "rb") as f:
        for guess in guesses[1:-1]:
            pos = max(guess, bounds[-1])
            f.seek(pos)
            carry = b""
            while True:
                block = f.read(probe)
                if not block:
                    pos = size
                    break
                buf = carry + block
                at = buf.find(split_token)
                if at >= 0:
                    pos = pos - len(carry) + at
                    break
                # keep a tail in case the token straddles two reads
                keep = len(split_token) - 1
                carry = buf[-keep:] if keep else b""
                pos += len(block)
            bounds.append(pos)
    bounds.append(size)
    return sorted(set(bounds))


def safe_split_token(special_tokens: Sequence[str]) -> str | None:
    """A special token at whose start a file can be cut without changing how the specials are matched.

    Cutting before an occurrence of `s` is safe unless a special could match across that cut: one that
    contains `s` other than as a prefix, or ends with a prefix of `s` (`s` itself included: "aa" in
    "aaa"). None if no token is safe.
    """
    for s in special_tokens:
        if all(not (t[k:].startswith(s) or s.startswith(t[k:]))
               for t in special_tokens for k in range(1, len(t))):
            return s
    return None
