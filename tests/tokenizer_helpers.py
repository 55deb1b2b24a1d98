"""Shared by the tokenizer tests: generated text, a small trained tokenizer, and the slow reference encoder."""
from __future__ import annotations

import functools
import random
from pathlib import Path

import regex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EOT = "<|endoftext|>"
# Written out again (not imported) so the oracle shares no code with the encoder under test.
GPT2_RE = regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

_WORDS = ("the a little big dog cat girl boy tree house sun moon ran jumped saw said happy sad played "
          "with in on and then was were very friend mom dad ball park sky blue red green Lily Tom "
          "Zoë José Ana Chloé Mia Ben naïve café they'll we've I'm don't it's she'd you're").split()
_PUNCT = [".", ",", "!", "?", ";", ":", " -", '"', "'", "...", " 42", " 7", " 1999", " 😀", " ✨", "  ", "\n", "\n\n", "\t"]


def story_text(n_docs: int, seed: int = 0, separator: str = EOT) -> str:
    """Deterministic children's-story-like text: words, punctuation, digits, non-ASCII, emoji, whitespace runs."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        parts = []
        for _ in range(rng.randint(5, 60)):
            parts.append(rng.choice(_WORDS) if not parts else " " + rng.choice(_WORDS))
            if rng.random() < 0.25:
                parts.append(rng.choice(_PUNCT))
        docs.append("".join(parts))
    return separator.join(docs)


@functools.lru_cache(maxsize=None)
def trained_vocab_merges(vocab_size: int = 600, specials: tuple[str, ...] = (EOT,)):
    """(vocab, merges) trained by the project's train_bpe on story_text, cached per process."""
    import tempfile

    from tokenizer import train_bpe
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.txt"
        path.write_text(story_text(400, seed=1), encoding="utf-8")
        return train_bpe(path, vocab_size, list(specials), num_workers=1)


def split_specials_slow(text: str, specials) -> list[tuple[bool, str]]:
    """[(is_special, piece)] scanning left to right, trying the longest special first at each position."""
    by_length = sorted(specials, key=len, reverse=True)
    out, plain, i = [], [], 0
    while i < len(text):
        hit = next((s for s in by_length if text.startswith(s, i)), None)
        if hit is None:
            plain.append(text[i])
            i += 1
            continue
        if plain:
            out.append((False, "".join(plain)))
            plain = []
        out.append((True, hit))
        i += len(hit)
    if plain:
        out.append((False, "".join(plain)))
    return out


def slow_encode(text: str, vocab: dict[int, bytes], merges, specials=()) -> list[int]:
    """The textbook encoder: each pre-token's bytes, then every merge in creation order, left to right."""
    ids_of = {}
    for i in sorted(vocab):
        ids_of.setdefault(vocab[i], i)
    out = []
    for is_special, piece in split_specials_slow(text, specials):
        if is_special:
            out.append(ids_of[piece.encode("utf-8")])
            continue
        for pretoken in GPT2_RE.findall(piece):
            parts = [bytes([b]) for b in pretoken.encode("utf-8")]
            for a, b in merges:
                i, merged = 0, []
                while i < len(parts):
                    if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                        merged.append(a + b)
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            out.extend(ids_of[p] for p in parts)
    return out
