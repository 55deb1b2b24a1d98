"""Byte-level BPE encoding and decoding: `Tokenizer` (CS336 §2.6), exact and fast in pure Python.

encode: split out the special tokens (longest first), pre-tokenize each text piece with the GPT-2 regex,
then map every pre-token to ids through a cache; a cache miss runs the BPE merges by rank (lowest rank
first, every occurrence left to right), which equals applying the merges in creation order for merges as
BPE training makes them (each merge joins tokens that earlier merges or single bytes produce). Like
tiktoken, a pre-token whose bytes are a single byte or a merge result is that one token.
encode_iterable streams: it holds back only the unfinished tail of the text seen so far.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat

from tokenizer import files
from tokenizer.pretokenize import PRETOKEN_RE, special_pattern

# GPT2_PATTERN with its classes spelled out for ASCII (\p{L} = [A-Za-z], \p{N} = [0-9], \s = [ \t\n\v\f\r]):
# the same pre-tokens on ASCII text (tests check every class on all 128 characters), and the standard
# library's engine runs it about twice as fast as `regex` runs the Unicode pattern.
ASCII_PRETOKEN_RE = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)
CACHE_MAX = 1 << 17  # cached pre-tokens; the cache is emptied when full, bounding memory while streaming
_NO_RANK = 1 << 62  # the rank of a pair that has no merge (above any real rank)


class _PretokenCache(dict):
    """{pre-token str: tuple of ids}; a miss runs BPE (dict calls __missing__ from C, so hits stay fast)."""

    def __init__(self, bpe):
        super().__init__()
        self.bpe = bpe

    def __missing__(self, pretoken: str) -> tuple[int, ...]:
        if len(self) >= CACHE_MAX:
            self.clear()
        ids = self[pretoken] = self.bpe(pretoken)
        return ids


class Tokenizer:
    """Byte-level BPE tokenizer over `vocab` {id: bytes} and `merges` [(left bytes, right bytes)] in creation order.

    Special tokens (strings) are never split; those missing from vocab get new ids after the largest one.
    """

    def __init__(self, vocab: dict[int, bytes], merges: Sequence[tuple[bytes, bytes]],
                 special_tokens: Sequence[str] | None = None):
        if isinstance(special_tokens, str):
            raise ValueError(f"special_tokens must be a list of strings, got the string {special_tokens!r}")
        special_tokens = list(special_tokens or [])
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = [(bytes(a), bytes(b)) for a, b in merges]
        self.special_tokens: list[str] = special_tokens
        _check_vocab(self.vocab, special_tokens)

        token_ids: dict[bytes, int] = {}
        for i in sorted(self.vocab):
            token_ids.setdefault(self.vocab[i], i)
        self.special_ids: dict[str, int] = {}
        for s in special_tokens:
            encoded = s.encode("utf-8")
            if encoded not in token_ids:
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id] = encoded
                token_ids[encoded] = new_id
            self.special_ids[s] = token_ids[encoded]

        # (left id, right id) -> rank, and rank -> merged id; the first of duplicate merges wins
        self._rank_of: dict[tuple[int, int], int] = {}
        self._merged_ids: list[int] = [-1] * len(self.merges)
        # the whole pre-token is one token when its bytes are a single byte or a merge result: skip BPE
        self._whole: dict[bytes, int] = {bytes([b]): token_ids[bytes([b])] for b in range(256)}
        for rank, (a, b) in enumerate(self.merges):
            for part in (a, b, a + b):
                if part not in token_ids:
                    raise ValueError(f"merge #{rank} ({a!r}, {b!r}) names token {part!r}, which is not in the vocabulary")
            pair = (token_ids[a], token_ids[b])
            if pair not in self._rank_of:
                self._rank_of[pair] = rank
                self._merged_ids[rank] = token_ids[a + b]
                self._whole.setdefault(a + b, token_ids[a + b])
        self._byte_ids = [token_ids[bytes([b])] for b in range(256)]
        self._cache = _PretokenCache(self._bpe)
        self._special_re = special_pattern(special_tokens)
        # every proper prefix of a special token: a stream must wait when its text ends in one
        self._special_prefixes = {s[:k] for s in special_tokens for k in range(1, len(s))}
        self._max_special_len = max(map(len, special_tokens), default=0)

    # ---- construction from files ------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                   special_tokens: Sequence[str] | None = None) -> "Tokenizer":
        """Read the project's own format (see tokenizer.files)."""
        vocab = files.read_vocab(vocab_path)
        return cls(vocab, files.read_merges(merges_path, vocab), special_tokens)

    @classmethod
    def from_gpt2(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike,
                  special_tokens: Sequence[str] | None = None) -> "Tokenizer":
        """Read GPT-2-style files (byte-to-unicode text form), e.g. OpenAI's vocab.json/merges.txt."""
        vocab = files.read_gpt2_vocab(vocab_json)
        return cls(vocab, files.read_gpt2_merges(merges_txt, vocab), special_tokens)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """A tokenizer saved by `save` (vocab, merges and special tokens)."""
        return cls(*files.load_tokenizer_files(directory))

    def save(self, directory: str | os.PathLike):
        """Write vocab.json, merges.txt, special_tokens.json (own format) atomically into directory."""
        return files.save_tokenizer(directory, self.vocab, self.merges, self.special_tokens)

    def __reduce__(self):  # pickle (e.g. to a spawned worker) as the inputs, not the cache and tables
        return type(self), (self.vocab, self.merges, self.special_tokens)

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (ids index embedding rows)."""
        return max(self.vocab) + 1

    # ---- encoding ---------------------------------------------------------------------------------
    def _bpe(self, pretoken: str) -> tuple[int, ...]:
        """Merge the bytes of one pre-token: apply the lowest-ranked merge present, leftmost first, until none.

        Only the two pairs beside a merge change, so only their ranks are looked up again (tiktoken's loop).
        """
        data = pretoken.encode("utf-8")
        whole = self._whole.get(data)
        if whole is not None:
            return (whole,)
        byte_ids, rank_get, merged_ids = self._byte_ids, self._rank_of.get, self._merged_ids
        ids = list(map(byte_ids.__getitem__, data))
        # ranks[i]: rank of the pair (ids[i], ids[i + 1]); the last entry is always _NO_RANK
        ranks = [*map(rank_get, zip(ids, ids[1:]), repeat(_NO_RANK)), _NO_RANK]
        while True:
            rank = min(ranks)
            if rank == _NO_RANK:
                break
            i = ranks.index(rank)
            new = ids[i] = merged_ids[rank]
            del ids[i + 1], ranks[i]
            if i:
                ranks[i - 1] = rank_get((ids[i - 1], new), _NO_RANK)
            ranks[i] = rank_get((new, ids[i + 1]), _NO_RANK) if i + 1 < len(ids) else _NO_RANK
        return tuple(ids)

    def _encode_pretokens(self, pretokens: Iterable[str], out: list[int]) -> None:
        out.extend(chain.from_iterable(map(self._cache.__getitem__, pretokens)))

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        """Append the ids of text that holds no special token."""
        if text:
            self._encode_pretokens(pretokenize(text), out)

    def encode(self, text: str) -> list[int]:
        """Token ids of text; special tokens become their ids and are never split."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        out: list[int] = []
        if self._special_re is None:
            self._encode_ordinary(text, out)
            return out
        for i, piece in enumerate(self._special_re.split(text)):
            if i % 2:
                out.append(self.special_ids[piece])
            else:
                self._encode_ordinary(piece, out)
        return out

    def _encode_prefix(self, text: str) -> tuple[list[int], str]:
        """(ids of the longest prefix of text whose ids cannot change when more text follows, the rest).

        Specials: a scan position is settled unless the text from it to the end is a proper prefix of a
        special token (it might complete to one). Pre-tokens: all but the last two are settled, since the
        regex reads at most two characters past the end of a match that is not the last
        (`'ll` after `'`, the lookahead of `\\s+(?!\\S)`, the character that stops a greedy run).
        """
        out: list[int] = []
        hold = len(text)  # text[hold:] may still become (part of) a special token
        start = 0  # text[:start] is settled
        if self._special_re is not None:
            for k in range(max(0, len(text) - self._max_special_len + 1), len(text)):
                if text[k:] in self._special_prefixes:
                    hold = k
                    break
            for m in self._special_re.finditer(text):
                if m.start() >= hold:
                    break
                self._encode_ordinary(text[start:m.start()], out)
                out.append(self.special_ids[m.group()])
                start = m.end()
            if start >= hold:
                return out, text[start:]
        pretokens = pretokenize(text, start, hold)
        if len(pretokens) <= 2:
            return out, text[start:]
        self._encode_pretokens(pretokens[:-2], out)
        return out, pretokens[-2] + pretokens[-1] + text[hold:]

    def encode_stream(self, chunks: Iterable[str]) -> Iterator[list[int]]:
        """Lazily yield lists of ids whose concatenation is encode("".join(chunks)), one list per chunk
        (plus one at the end); only the unsettled tail of the text is held between chunks."""
        pending = ""
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise TypeError(f"expected str chunks, got {type(chunk).__name__}")
            if chunk:
                ids, pending = self._encode_prefix(pending + chunk)
                yield ids
        yield self.encode(pending)

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of "".join(iterable) (e.g. an open text file), in memory bounded by the chunks."""
        return chain.from_iterable(self.encode_stream(iterable))

    # ---- decoding ---------------------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated bytes of the tokens."""
        ids = list(ids)
        vocab = self.vocab
        try:
            return b"".join([vocab[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(pos for pos, i in enumerate(ids) if not _hashable_in(i, vocab))
            raise ValueError(f"token id {ids[bad]!r} (position {bad}) is not in the vocabulary "
                             f"(ids 0..{max(vocab)})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the tokens; invalid UTF-8 (e.g. a character cut between tokens) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def pretokenize(text: str, start: int = 0, end: int | None = None) -> list[str]:
    """GPT-2 pre-tokens of text[start:end] (lookahead stops at end), by the fast engine when text is ASCII."""
    pattern = ASCII_PRETOKEN_RE if text.isascii() else PRETOKEN_RE  # isascii is O(1) on CPython strings
    return pattern.findall(text, start, len(text) if end is None else end)


def _hashable_in(i, vocab: dict) -> bool:
    try:
        return i in vocab
    except TypeError:
        return False


def _check_vocab(vocab: dict[int, bytes], special_tokens: list[str]) -> None:
    for i, token in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ValueError(f"vocabulary id {i!r} is not a non-negative int")
        if not isinstance(token, bytes) or not token:
            raise ValueError(f"vocabulary entry {i} is {token!r}, expected non-empty bytes")
    tokens = set(vocab.values())
    missing = [b for b in range(256) if bytes([b]) not in tokens]
    if missing:
        raise ValueError(f"vocabulary lacks {len(missing)} of the 256 single bytes (first: {bytes([missing[0]])!r})")
    seen = set()
    for s in special_tokens:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special token {s!r} is not a non-empty string")
        if s in seen:
            raise ValueError(f"duplicate special token {s!r}")
        seen.add(s)
