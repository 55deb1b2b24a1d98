"""`python -m jaxlm.generate` (main(argv) in process) and the callable `jaxlm.generate` module.

The checkpoint here holds random weights (training is covered by test_e2e.py); what is checked is the
plumbing: config and tokenizer from the metadata, agreement with jaxlm.decode.generate, stopping at
<|endoftext|>, and one-line errors with exit code 2.
"""
import json
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

import jaxlm
import jaxlm.generate as generate_cli
from jaxlm import decode
from jaxlm.checkpoint import save_checkpoint
from jaxlm.config import ModelConfig
from jaxlm.corpus import EOT, write_corpus
from jaxlm.model import init_params
from jaxlm.optim import adamw
from tokenizer import Tokenizer, train_bpe

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_cli")
    write_corpus(root / "corpus.txt", 60_000)
    tok = Tokenizer(*train_bpe(root / "corpus.txt", 300, [EOT]), [EOT])
    tok.save(root / "tok")
    config = ModelConfig(vocab_size=tok.vocab_size, context_length=64, d_model=32, num_layers=2,
                         num_heads=4, d_ff=64)
    params = init_params(config, jax.random.key(0))
    extra = {"model_config": config.to_dict(), "tokenizer": str(root / "tok")}
    save_checkpoint(params, adamw(1e-3).init(params), 7, root / "ckpts" / "ckpt_00000007.ckpt", extra=extra)
    return root, tok, config, params


def run_cli(capsys, *argv):
    code = generate_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_sample_and_a_speed_line(setup, capsys):
    root, tok, config, params = setup
    code, out, err = run_cli(capsys, "--checkpoint", str(root / "ckpts"), "--prompt", PROMPT,
                             "--max-new-tokens", "20", "--temperature", "0")
    assert code == 0, err
    text, speed = out.rstrip("\n").rsplit("\n", 1)
    assert speed.startswith("[") and "tokens/s" in speed and "ckpt_00000007.ckpt" in speed
    # greedy: the CLI's text is the decoded jaxlm.generate output up to <|endoftext|>
    eos = tok.special_ids[EOT]
    new = np.asarray(decode.generate(params, config, tok.encode(PROMPT), max_new_tokens=20, temperature=0.0,
                                     eos_id=eos)).tolist()
    expected = tok.decode(new[:new.index(eos)] if eos in new else new)
    assert text == PROMPT + expected


def test_cli_num_samples_and_seed(setup, capsys):
    root, *_ = setup
    args = ["--checkpoint", str(root / "ckpts" / "ckpt_00000007.ckpt"), "--tokenizer", str(root / "tok"),
            "--prompt", PROMPT, "--max-new-tokens", "12", "--num-samples", "3", "--seed", "1"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("---- sample")] == [
        "---- sample 1/3 ----", "---- sample 2/3 ----", "---- sample 3/3 ----"]
    again = run_cli(capsys, *args)[1]
    assert again.rsplit("[", 1)[0] == out.rsplit("[", 1)[0]  # same seed, same samples
    other = run_cli(capsys, *args[:-1], "2")[1]
    assert other.rsplit("[", 1)[0] != out.rsplit("[", 1)[0]


def test_cli_stops_at_endoftext(setup, capsys, tmp_path):
    """A model whose logits are all zero picks id 0 greedily, which is <|endoftext|> here: the sample
    ends at once and the text is the prompt alone."""
    root, tok, config, params = setup
    assert tok.special_ids[EOT] == 0
    zero = jax.tree.map(np.zeros_like, params)
    path = tmp_path / "ckpt_00000001.ckpt"
    save_checkpoint(zero, adamw(1e-3).init(zero), 1, path,
                    extra={"model_config": config.to_dict(), "tokenizer": str(root / "tok")})
    code, out, _ = run_cli(capsys, "--checkpoint", str(path), "--prompt", PROMPT, "--temperature", "0",
                           "--max-new-tokens", "20")
    assert code == 0
    assert out.splitlines()[0] == PROMPT and "[0 tokens in" in out
    assert generate_cli.split_samples(np.array([[5, 6, 0, 0], [7, 8, 9, 1]]), 0) == [[5, 6], [7, 8, 9, 1]]


def test_model_config_flag_and_missing_metadata(setup, capsys, tmp_path):
    root, tok, config, params = setup
    bare = tmp_path / "ckpt_00000002.ckpt"
    save_checkpoint(params, adamw(1e-3).init(params), 2, bare)  # no extra at all
    code, _, err = run_cli(capsys, "--checkpoint", str(bare), "--prompt", PROMPT)
    assert code == 2 and "no model_config in its metadata: pass --model-config" in err
    (tmp_path / "model.json").write_text(json.dumps(config.to_dict()))
    code, out, err = run_cli(capsys, "--checkpoint", str(bare), "--prompt", PROMPT, "--model-config",
                             str(tmp_path / "model.json"), "--tokenizer", str(root / "tok"),
                             "--max-new-tokens", "20", "--temperature", "0")
    assert code == 0, err
    assert out.startswith(PROMPT)


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{root}/nope.ckpt"], "does not exist"),
    (["--checkpoint", "{root}/tok"], "no valid checkpoint"),
    (["--checkpoint", "{root}/corpus.txt"], "not a jaxlm checkpoint"),
    (["--checkpoint", "{root}/ckpts", "--tokenizer", "{root}/missing"], "tokenizer directory"),
    (["--checkpoint", "{root}/ckpts", "--top-p", "1.5"], "--top-p must be in [0, 1]"),
    (["--checkpoint", "{root}/ckpts", "--temperature", "-1"], "--temperature must be >= 0"),
    (["--checkpoint", "{root}/ckpts", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--checkpoint", "{root}/ckpts", "--prompt", "Once upon a time" * 20], "the model's context length is 64"),
    (["--checkpoint", "{root}/ckpts", "--max-new-tokens", "ten"], "invalid int value"),
    (["--checkpoint", "{root}/ckpts", "--model-config", "{root}/corpus.txt"], "is not valid JSON"),
])
def test_cli_errors_are_one_line_with_exit_2(setup, capsys, argv, message):
    root, *_ = setup
    argv = [a.format(root=root) for a in argv]
    code, out, err = run_cli(capsys, *argv, *([] if "--prompt" in argv else ["--prompt", PROMPT]))
    assert code == 2
    assert err.startswith("jaxlm-generate: error: ") and err.count("\n") == 1, err
    assert message in err


def test_max_new_tokens_is_clamped_to_the_context(setup, capsys):
    root, tok, config, params = setup
    code, out, err = run_cli(capsys, "--checkpoint", str(root / "ckpts"), "--prompt", PROMPT,
                             "--max-new-tokens", "500", "--temperature", "0")
    n_prompt = len(tok.encode(PROMPT))
    assert code == 0 and f"note: generating {64 - n_prompt} tokens" in err


def test_truncated_checkpoint_is_reported(setup, capsys, tmp_path):
    root, *_ = setup
    data = (root / "ckpts" / "ckpt_00000007.ckpt").read_bytes()
    (tmp_path / "ckpt_00000009.ckpt").write_bytes(data[:len(data) // 2])
    code, _, err = run_cli(capsys, "--checkpoint", str(tmp_path / "ckpt_00000009.ckpt"), "--prompt", PROMPT)
    assert code == 2 and "truncated" in err


def test_jaxlm_generate_is_the_function_even_after_importing_the_cli_module(setup):
    root, tok, config, params = setup
    assert isinstance(jaxlm.generate, types.ModuleType) and jaxlm.generate is generate_cli
    assert callable(jaxlm.generate.main)
    prompt = tok.encode(PROMPT)
    via_package = jaxlm.generate(params, config, prompt, max_new_tokens=6, temperature=0.0)
    direct = decode.generate(params, config, prompt, max_new_tokens=6, temperature=0.0)
    np.testing.assert_array_equal(np.asarray(via_package), np.asarray(direct))
    from jaxlm import generate as imported  # `from jaxlm import generate` gives the same callable
    np.testing.assert_array_equal(np.asarray(imported(params, config, prompt, max_new_tokens=6,
                                                      temperature=0.0)), np.asarray(direct))


def test_package_attribute_before_and_after_importing_the_cli_module():
    code = ("import jaxlm; before = jaxlm.generate; import jaxlm.generate; "
            "print(before.__module__, type(jaxlm.generate).__name__, callable(jaxlm.generate))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["jaxlm.decode", "_CallableModule", "True"]
