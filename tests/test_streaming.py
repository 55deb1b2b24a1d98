"""encode_iterable over >= 100 MB of text in odd-sized chunks: exact ids, and peak memory that does not grow
with the input (measured in a fresh process with ru_maxrss before and after)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from tokenizer_helpers import EOT, story_text, trained_vocab_merges

from tokenizer import Tokenizer

STREAM_MB = 100
MAX_RSS_GROWTH_MB = 64

CHILD = textwrap.dedent("""
    import itertools, json, resource, sys
    from tokenizer import Tokenizer

    tok_dir, unit, total = sys.argv[1], open(sys.argv[2], encoding="utf-8").read(), int(sys.argv[3])
    tok = Tokenizer.load(tok_dir)
    expected = tok.encode(unit)  # unit ends with a special token, so ids repeat unit by unit
    assert list(tok.encode_iterable([unit, unit])) == expected * 2  # warm the cache and the code paths
    doubled, lengths = unit + unit, itertools.cycle([1, 3, 17, 1000, 8191, 65_537, 5, 12_345])

    def chunks():  # `total` characters of unit * k, cut anywhere (inside words, whitespace, specials)
        pos = sent = 0
        while sent < total:
            n = min(next(lengths), len(unit), total - sent)
            yield doubled[pos:pos + n]
            pos, sent = (pos + n) % len(unit), sent + n

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids, units = tok.encode_iterable(chunks()), 0
    while True:
        got = list(itertools.islice(ids, len(expected)))
        if not got:
            break
        assert got == expected, f"unit {units} differs"
        units += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"units": units, "rss_growth_kb": after - before, "rss_kb": after}))
""")


@pytest.mark.slow
def test_stream_100mb_in_bounded_memory(tmp_path):
    tok_dir = tmp_path / "tok"
    Tokenizer(*trained_vocab_merges(), special_tokens=[EOT]).save(tok_dir)
    unit = story_text(300, seed=4) + "\n\n  \t" + EOT  # ends in a special token, after a whitespace run
    unit_path = tmp_path / "unit.txt"
    unit_path.write_text(unit, encoding="utf-8", newline="")
    k = -(-STREAM_MB * 1_000_000 // len(unit.encode("utf-8")))  # whole units, >= STREAM_MB megabytes
    run = subprocess.run([sys.executable, "-c", CHILD, str(tok_dir), str(unit_path), str(k * len(unit))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["units"] == k
    assert result["rss_growth_kb"] < MAX_RSS_GROWTH_MB * 1024, result
