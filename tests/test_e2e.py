"""End to end through the Python API on a tiny generated corpus: BPE tokenizer -> token files ->
50 training steps (the loss falls) -> checkpoint -> jaxlm.generate and the CLI produce decodable text."""
import json
import math

import numpy as np
import pytest

import jaxlm
import jaxlm.generate as generate_cli
from jaxlm.corpus import EOT, write_corpus
from jaxlm.train import TrainConfig, run
from tokenizer import Tokenizer, train_bpe
from tokenizer.encode import encode_file

VOCAB = 320
STEPS = 50


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_corpus(root / "train.txt", 150_000, seed=0)
    write_corpus(root / "valid.txt", 20_000, seed=1)
    tok = Tokenizer(*train_bpe(root / "train.txt", VOCAB, [EOT]), [EOT])
    tok.save(root / "tok")
    for split in ("train", "valid"):
        stats = encode_file(tok, root / f"{split}.txt", root / f"{split}.npy")
        assert stats.n_tokens > 1000
    cfg = TrainConfig(train_data=str(root / "train.npy"), val_data=str(root / "valid.npy"),
                      tokenizer=str(root / "tok"), vocab_size=tok.vocab_size, context_length=64, d_model=64,
                      num_layers=2, num_heads=4, d_ff=128, batch_size=16, max_steps=STEPS, lr=1e-2,
                      min_lr=1e-3, warmup_steps=5, eval_every=STEPS, eval_batches=4, log_every=1,
                      log_file=str(root / "log.jsonl"), checkpoint_dir=str(root / "ckpt"), checkpoint_every=0)
    summary = run(cfg, quiet=True)
    return root, tok, cfg, summary


def test_token_files_round_trip(trained):
    root, tok, _, _ = trained
    ids = np.load(root / "valid.npy", mmap_mode="r")
    assert ids.dtype == np.uint16
    assert tok.decode(ids.tolist()) == (root / "valid.txt").read_text(encoding="utf-8")


def test_training_loss_falls(trained):
    root, tok, cfg, summary = trained
    records = [json.loads(line) for line in (root / "log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == STEPS
    assert abs(losses[0] - math.log(tok.vocab_size)) < 1.0  # starts near uniform
    assert np.mean(losses[-5:]) < losses[0] - 2.0
    assert summary["final_val_loss"] < losses[0] - 2.0
    assert summary["steps"] == STEPS and summary["checkpoint"].endswith(f"ckpt_{STEPS:08d}.ckpt")


def test_generate_from_the_checkpoint_gives_decodable_story_words(trained):
    root, tok, cfg, summary = trained
    params, config, extra, _ = generate_cli.load_model(summary["checkpoint"])
    assert config == cfg.model_config() and extra["tokenizer"] == cfg.tokenizer
    prompt = tok.encode("Once upon a time, there was")
    new = jaxlm.generate(params, config, prompt, max_new_tokens=40, temperature=0.0)
    text = tok.decode(np.asarray(new).tolist())
    assert "\ufffd" not in text
    corpus_words = set((root / "train.txt").read_text(encoding="utf-8").split())
    words = text.split()
    assert len(words) >= 5
    # after 50 steps of a tiny model many of its words are words of the corpus (untrained: almost none)
    assert sum(w in corpus_words for w in words) >= len(words) / 3, text


def test_cli_on_the_trained_checkpoint(trained, capsys):
    root, *_ = trained
    code = generate_cli.main(["--checkpoint", str(root / "ckpt"), "--prompt", "Once upon a time",
                              "--max-new-tokens", "40", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("Once upon a time") and "tokens/s" in out.splitlines()[-1]
    assert "\ufffd" not in out
