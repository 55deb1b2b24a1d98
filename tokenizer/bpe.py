"""Byte-level BPE training (CS336 §2): parallel pre-token counting, then heap-driven incremental merges.

Two stages, each testable on its own:
- `count_pretokens`: worker processes read byte ranges of the file (cut where a special token starts,
  and inside long documents between lines, so no pre-token and no character straddles two ranges) and
  send back only {pre-token bytes: count}, never text.
- `train_from_counts`: merges over the distinct pre-tokens. A pair -> pre-tokens index limits each merge
  to the words that contain the pair; a max-heap with lazy deletion finds the most frequent pair.
Memory grows with the number of distinct pre-tokens, not with the file size.
"""
from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import repeat

from tokenizer.pretokenize import (PRETOKEN_RE, find_chunk_boundaries, safe_split_token, special_pattern,
                                   split_on_specials)
from tokenizer.textio import decode_utf8
from tokenizer.workers import default_num_workers, process_pool

BLOCK_BYTES = 4 << 20  # a worker reads and pre-tokenizes at most about this much text at a time
MIN_BYTES_PER_WORKER = 1 << 20  # below this a process costs more than it saves
TASK_BYTES = 64 << 20  # a worker task (one result dict sent back) covers at most about this much
COMPACT_SLACK = 100_000  # rebuild the heap once it holds this many entries more than twice the pairs


# ---- stage 1: pre-token counts ---------------------------------------------------------------------

def _count_text(text: str, specials_re, counts: Counter) -> None:
    """Add the pre-tokens of `text` (special tokens removed, never counted) to counts (str keys)."""
    pieces = split_on_specials(text, specials_re)
    for piece in pieces[::2]:  # odd items are the special tokens themselves
        if piece:
            counts.update(PRETOKEN_RE.findall(piece))


def _count_ranges(path: str, ranges: Sequence[tuple[int, int]], special_tokens: Sequence[str],
                  on_range=None) -> dict[bytes, int]:
    """Worker: pre-token counts of some byte ranges of `path`, reading one range at a time."""
    specials_re = special_pattern(special_tokens)
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        for start, end in ranges:
            f.seek(start)
            _count_text(decode_utf8(f.read(end - start), path, start), specials_re, counts)
            if on_range is not None:
                on_range(end - start)
    return {tok.encode("utf-8"): c for tok, c in counts.items()}


def _line_cut(f, pos: int, end: int, probe: int = 1 << 16) -> int:
    """First offset p in [pos, end) where a newline follows a visible ASCII character, else `end`.

    Such a p always separates two pre-tokens (no GPT-2 pre-token holds a non-space followed by a
    newline) and the tokens left of it do not look past it, so long documents can be cut there.
    """
    p = max(pos, 1)
    while p < end:
        f.seek(p - 1)
        block = f.read(min(probe, end - p) + 1)
        at = block.find(b"\n", 1)
        while at > 0 and not 0x21 <= block[at - 1] <= 0x7E:
            at = block.find(b"\n", at + 1)
        if at > 0:
            return p - 1 + at
        p += len(block) - 1
    return end


def plan_ranges(path: str | os.PathLike, special_tokens: Sequence[str], pieces: int) -> list[tuple[int, int]]:
    """About `pieces` byte ranges of similar size that can be pre-tokenized independently.

    Cuts go where a special token starts (`find_chunk_boundaries`), then, inside documents longer than
    twice the target size, between lines (`_line_cut`; only when no special token contains a newline).
    """
    size = os.path.getsize(path)
    if pieces <= 1 or size == 0:
        return [(0, size)] if size else []
    target = -(-size // pieces)
    split_token = safe_split_token(special_tokens)
    bounds = (find_chunk_boundaries(path, pieces, split_token.encode("utf-8")) if split_token else [0, size])
    if any("\n" in s for s in special_tokens):
        return list(zip(bounds[:-1], bounds[1:]))
    ranges = []
    with open(path, "rb") as f:
        for start, end in zip(bounds[:-1], bounds[1:]):
            while end - start > 2 * target:
                cut = _line_cut(f, start + target, end)
                if cut >= end:
                    break
                ranges.append((start, cut))
                start = cut
            ranges.append((start, end))
    return ranges


def _group(ranges: list[tuple[int, int]], groups: int) -> list[list[tuple[int, int]]]:
    """Consecutive ranges split into at most `groups` lists of about equal total bytes."""
    total = sum(e - s for s, e in ranges)
    out: list[list[tuple[int, int]]] = [[]]
    done = 0
    for s, e in ranges:
        if out[-1] and done >= total * len(out) / groups:
            out.append([])
        out[-1].append((s, e))
        done += e - s
    return out


def count_pretokens(input_path: str | os.PathLike, special_tokens: Sequence[str] = (), *,
                    num_workers: int | None = None, progress: bool = False) -> Counter[bytes]:
    """{pre-token bytes: count} over the file; special tokens split the text and are not counted."""
    path = os.fspath(input_path)
    size = os.path.getsize(path)
    workers = num_workers if num_workers is not None else default_num_workers()
    workers = max(1, min(workers, size // MIN_BYTES_PER_WORKER))
    pieces = max(4 * workers if workers > 1 else 1, -(-size // BLOCK_BYTES))
    tasks = workers if workers == 1 else max(workers, -(-size // TASK_BYTES))
    groups = _group(plan_ranges(path, special_tokens, pieces), tasks)
    bar = _bar(progress, total=size, unit="B", unit_scale=True, desc="pre-tokenizing")
    specials = tuple(special_tokens)
    if len(groups) == 1:
        total = Counter(_count_ranges(path, groups[0], specials, bar.update))
    else:
        total = Counter()
        with process_pool(min(workers, len(groups))) as pool:
            results = pool.map(_count_ranges, repeat(path), groups, repeat(specials))
            for g, counts in zip(groups, results):  # in order, so the first bad byte is the one reported
                total.update(counts)
                bar.update(sum(e - s for s, e in g))
    bar.close()
    return total


# ---- stage 2: merges -------------------------------------------------------------------------------

# Heap entries are (-count, key(left), key(right), left_id, right_id). heapq pops the smallest, so the
# key must reverse byte-string order: ties then go to the lexicographically greater pair of byte strings.
# key(b) maps byte x to chr(511 - x) and ends with chr(512), greater than any mapped byte, so that a
# prefix (smaller as bytes) gets the greater key.
_REVERSE = {i: chr(511 - i) for i in range(256)}


def _reversed_order_key(token: bytes) -> str:
    return token.decode("latin-1").translate(_REVERSE) + chr(512)


def validate_special_tokens(vocab_size: int, special_tokens: Sequence[str]) -> None:
    if isinstance(special_tokens, str):
        raise ValueError("special_tokens must be a list of strings, not one string")
    if len(set(special_tokens)) != len(special_tokens):
        dups = sorted({s for s in special_tokens if special_tokens.count(s) > 1})
        raise ValueError(f"duplicate special tokens: {dups}")
    if any(not s for s in special_tokens):
        raise ValueError("special tokens must be non-empty strings")
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} is below 256 bytes + {len(special_tokens)} special tokens")


def train_from_counts(counts: Mapping[bytes, int], vocab_size: int, special_tokens: Sequence[str] = (), *,
                      progress: bool = False) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """BPE merges over pre-tokens given as {bytes: count}; returns (vocab, merges) like `train_bpe`."""
    special_tokens = list(special_tokens)
    validate_special_tokens(vocab_size, special_tokens)
    vocab: dict[int, bytes] = {i: s.encode("utf-8") for i, s in enumerate(special_tokens)}
    first = len(vocab)
    vocab.update({first + b: bytes([b]) for b in range(256)})
    keys = {i: _reversed_order_key(t) for i, t in vocab.items()}

    words: list[list[int]] = []  # each distinct pre-token as a list of token ids
    freqs: list[int] = []
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}  # live pair -> words that contain it (or did: stale)
    for tok, c in counts.items():
        if len(tok) < 2 or c <= 0:
            continue
        w = len(words)
        ids = [first + b for b in tok] if first else list(tok)
        words.append(ids)
        freqs.append(c)
        for p in zip(ids, ids[1:]):
            pair_counts[p] = pair_counts.get(p, 0) + c
            s = where.get(p)
            if s is None:
                where[p] = {w}
            else:
                s.add(w)
    heap = [(-c, keys[a], keys[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    num_merges = vocab_size - len(vocab)
    bar = _bar(progress, total=num_merges, desc="merging")
    while len(merges) < num_merges:
        # Lazy deletion: an entry is current when its count matches. A stale entry whose pair still has
        # a (smaller) count goes back with that count; the newest entry of every pair has count >= actual.
        while heap:
            neg, _, _, a, b = heap[0]
            c = pair_counts.get((a, b), 0)
            if c == -neg:
                break
            if 0 < c < -neg:
                heapq.heapreplace(heap, (-c, keys[a], keys[b], a, b))
            else:
                heapq.heappop(heap)
        if not heap:
            break
        heapq.heappop(heap)
        new = len(vocab)
        vocab[new] = vocab[a] + vocab[b]
        keys[new] = _reversed_order_key(vocab[new])
        merges.append((vocab[a], vocab[b]))
        touched = _apply_merge(a, b, new, words, freqs, pair_counts, where)
        for p in touched:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, keys[p[0]], keys[p[1]], p[0], p[1]))
        if len(heap) > 2 * len(pair_counts) + COMPACT_SLACK:  # compaction when stale entries pile up
            heap = [(-c, keys[a], keys[b], a, b) for (a, b), c in pair_counts.items()]
            heapq.heapify(heap)
        bar.update(1)
    bar.close()
    return vocab, merges


def _apply_merge(a: int, b: int, new: int, words: list[list[int]], freqs: list[int],
                 pair_counts: dict[tuple[int, int], int], where: dict[tuple[int, int], set[int]]) -> set:
    """Replace (a, b) by `new` in every word containing it (left to right, non-overlapping), updating
    pair counts and the index around each occurrence only.

    Returns the pairs that contain `new`: the only ones whose counts can have grown.
    """
    touched: set[tuple[int, int]] = set()
    pair_counts.pop((a, b), None)
    get = pair_counts.get
    for w in where.pop((a, b), ()):
        sym = words[w]
        n = len(sym)
        f = freqs[w]
        out: list[int] = []
        gained: list[tuple[int, int]] = []
        lost: list[tuple[int, int]] = []
        i = 0  # sym[:i] is done (in `out`)
        start = 0
        for _ in range(sym.count(a)):  # visit each `a` (no search past the last one)
            j = sym.index(a, start)
            start = j + 1
            if j < i or j + 1 == n or sym[j + 1] != b:
                continue
            if j > i:
                if out and out[-1] == new:  # right pair of the previous merge, now that it is known
                    gained.append((new, sym[i]))
                out += sym[i:j]
            if out:
                x = out[-1]
                if x == new:  # "a b a b": (b, a) went as the previous occurrence's right pair
                    gained.append((new, new))
                else:
                    lost.append((x, a))
                    gained.append((x, new))
            if j + 2 < n:
                lost.append((b, sym[j + 2]))
            out.append(new)
            i = j + 2
        if i == 0:
            continue  # stale index entry: the pair is no longer in this word
        if i < n:
            if out[-1] == new:
                gained.append((new, sym[i]))
            out += sym[i:]
        words[w] = out
        for p in gained:
            pair_counts[p] = get(p, 0) + f
            touched.add(p)
            s = where.get(p)
            if s is None:
                where[p] = {w}
            else:
                s.add(w)
        for p in lost:
            if p != (a, b):
                c = pair_counts[p] - f
                if c:
                    pair_counts[p] = c
                else:  # the pair is gone: pair_counts holds live pairs only (see compaction)
                    del pair_counts[p]
                    del where[p]
    return touched


# ---- the whole thing -------------------------------------------------------------------------------

def train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: Sequence[str] = (), *,
              num_workers: int | None = None,
              progress: bool = False) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file.

    Returns (vocab, merges): vocab maps ids to bytes (the special tokens first, in order, then the 256
    bytes, then one token per merge, `vocab_size` in all unless no pair is left); merges are in creation
    order. Each merge takes the most frequent adjacent pair within pre-tokens (GPT-2 regex; special tokens
    split the text and never merge), ties going to the lexicographically greater pair of byte strings.
    `num_workers` processes pre-tokenize (default: all CPUs; small files use one). `progress` shows bars
    on stderr when it is a terminal.
    """
    special_tokens = list(special_tokens)
    validate_special_tokens(vocab_size, special_tokens)
    counts = count_pretokens(input_path, special_tokens, num_workers=num_workers, progress=progress)
    return train_from_counts(counts, vocab_size, special_tokens, progress=progress)


def _bar(progress: bool, **kwargs):
    """A tqdm bar on stderr when asked for and stderr is a terminal; a no-op otherwise."""
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(disable=None, leave=False, **kwargs)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass
