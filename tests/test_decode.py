"""jaxlm.decode.generate: the KV-cached loop against a full forward, sampling statistics, errors.

The oracle for greedy decoding is `jaxlm.model.forward` over the prompt plus the generated tokens: the
model is causal, so the logits at position t are those of a forward over the first t + 1 tokens, and the
token generated there must be their argmax. Sampling is checked against float64 numpy softmax and a
sort-based nucleus written here.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxlm import decode, model
from jaxlm.config import ModelConfig

ABLATIONS = {
    "base": {},
    "remove_rmsnorm": dict(remove_rmsnorm=True),
    "use_post_norm": dict(use_post_norm=True),
    "remove_rope": dict(remove_rope=True),
    "ffn_silu": dict(ffn_type="silu"),
}
TINY = dict(vocab_size=53, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=48)
PROMPT_BT = np.array([[3, 5, 7, 11, 13], [1, 2, 3, 4, 50], [40, 40, 40, 40, 40]], np.int32)
N_NEW = 12


def _setup(**overrides):
    config = ModelConfig(**{**TINY, **overrides})
    return config, model.init_params(config, jax.random.key(7))


@pytest.fixture(scope="module")
def base():
    return _setup()


def softmax64(logits):
    x = np.asarray(logits, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def nucleus_reference(probs, top_p):
    """Boolean mask of the nucleus by sorting: most probable first, until the mass reaches top_p."""
    order = np.argsort(-probs, kind="stable")
    mass_before = np.cumsum(probs[order]) - probs[order]
    keep = np.zeros(probs.shape, bool)
    keep[order[(mass_before < top_p) | (np.arange(len(probs)) == 0)]] = True
    return keep


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_greedy_with_cache_equals_argmax_of_full_forward(name):
    config, params = _setup(**ABLATIONS[name])
    new_BN = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0))
    assert new_BN.shape == (3, N_NEW) and new_BN.dtype == np.int32
    seq_BS = np.concatenate([PROMPT_BT, new_BN], axis=1)
    logits_BSV = np.asarray(model.forward(params, seq_BS, config))
    T = PROMPT_BT.shape[1]
    for i in range(N_NEW):  # token i was generated from the prefix seq[:, :T + i]
        np.testing.assert_array_equal(new_BN[:, i], logits_BSV[:, T + i - 1].argmax(-1), err_msg=f"token {i}")
    assert len(set(new_BN[0].tolist())) > 1  # not a degenerate constant sequence


def test_greedy_matches_forward_over_the_growing_sequence_literally(base):
    """The same property step by step: forward on the growing sequence, one token at a time."""
    config, params = base
    prompt = PROMPT_BT[0]
    new = decode.generate(params, config, prompt, max_new_tokens=N_NEW, temperature=0.0)
    assert new.shape == (N_NEW,)
    seq = list(prompt)
    for _ in range(3):  # (each length compiles a forward: kept short)
        seq.append(int(np.argmax(np.asarray(model.forward(params, np.array(seq), config))[-1])))
    assert np.asarray(new)[:3].tolist() == seq[len(prompt):]


def test_batch_and_single_agree(base):
    config, params = base
    batch = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0))
    for b in range(len(PROMPT_BT)):
        single = decode.generate(params, config, PROMPT_BT[b], max_new_tokens=N_NEW, temperature=0.0)
        np.testing.assert_array_equal(np.asarray(single), batch[b])


def test_tiny_top_p_and_tiny_temperature_equal_greedy(base):
    config, params = base
    greedy = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0))
    for seed in range(2):
        key = jax.random.key(seed)
        low_p = decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, top_p=1e-6, key=key)
        cold = decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=1e-4, key=key)
        np.testing.assert_array_equal(np.asarray(low_p), greedy)
        np.testing.assert_array_equal(np.asarray(cold), greedy)


def test_sampling_is_reproducible_and_key_dependent(base):
    config, params = base
    run = lambda seed: np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW,
                                                  temperature=1.0, key=jax.random.key(seed)))
    np.testing.assert_array_equal(run(0), run(0))
    assert (run(0) != run(1)).any()


def _first_token_counts(params, config, top_p, rows=6000):
    prompt_BT = np.tile(PROMPT_BT[1:2, :4], (rows, 1))
    first_B = np.asarray(decode.generate(params, config, prompt_BT, max_new_tokens=1, temperature=1.0,
                                         top_p=top_p, key=jax.random.key(123)))[:, 0]
    return np.bincount(first_B, minlength=config.vocab_size)


def _chi_square_pvalue(counts, probs):
    support = probs > 0
    assert counts[~support].sum() == 0, "sampled a token outside the support"
    expected = probs[support] * counts.sum()
    return stats.chisquare(counts[support], expected).pvalue


@pytest.mark.parametrize("top_p", [1.0, 0.6])
def test_sampling_follows_softmax_and_nucleus(top_p):
    """6000 rows sample their first token: the counts must fit softmax(logits) (restricted to the nucleus
    and renormalised for top_p < 1). lm_head is scaled so the distribution is far from uniform."""
    config, params = _setup(vocab_size=11)
    params = {**params, "lm_head": params["lm_head"] * 3.0}
    probs = softmax64(model.forward(params, PROMPT_BT[1, :4], config)[-1])
    if top_p < 1:
        probs = np.where(nucleus_reference(probs, top_p), probs, 0.0)
        probs /= probs.sum()
        assert 1 < (probs > 0).sum() < config.vocab_size  # a real restriction
    assert probs.max() > 2.5 / config.vocab_size
    counts = _first_token_counts(params, config, top_p)
    assert _chi_square_pvalue(counts, probs) > 1e-4
    # and the test has power: the same counts do not fit the uniform distribution
    assert _chi_square_pvalue(counts, np.where(probs > 0, 1.0, 0.0) / (probs > 0).sum()) < 1e-6


@pytest.mark.parametrize("top_p", [0.0, 1e-6, 0.3, 0.5, 0.9, 0.999])
def test_nucleus_threshold_selects_the_sorted_nucleus(top_p):
    rng = np.random.default_rng(0)
    probs_BV = softmax64(rng.normal(size=(8, 300)) * rng.uniform(0.2, 4.0, size=(8, 1)))
    tau_B = np.asarray(jax.jit(decode.nucleus_threshold)(jnp.asarray(probs_BV, jnp.float32), top_p))
    probs32 = probs_BV.astype(np.float32)
    for b in range(len(probs_BV)):
        np.testing.assert_array_equal(probs32[b] >= tau_B[b], nucleus_reference(probs32[b], top_p))


def test_sample_from_weights_never_picks_zero_weight_and_is_unbiased():
    weights = np.array([0.0, 1.0, 0.0, 3.0, 0.0, 0.0, 4.0, 0.0], np.float32)
    u = jax.random.uniform(jax.random.key(0), (20000,))
    idx = np.asarray(decode.sample_from_weights(jnp.tile(weights, (20000, 1)), u))
    counts = np.bincount(idx, minlength=len(weights))
    assert _chi_square_pvalue(counts, weights / weights.sum()) > 1e-4
    edge = decode.sample_from_weights(jnp.asarray(weights)[None], jnp.asarray([np.nextafter(1, 0)]))
    assert int(edge[0]) == 6  # u just below 1 picks the last token of positive weight


def test_argmax_first_matches_jnp_argmax_with_ties():
    x = jnp.asarray([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [-1.0, -2.0, -3.0, -0.5]])
    np.testing.assert_array_equal(np.asarray(decode.argmax_first(x)), np.asarray(jnp.argmax(x, -1)))


def test_eos_is_kept_then_repeated(base):
    config, params = base
    free = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0))
    eos = int(free[0, 2])  # row 0 emits this token at step 2
    out = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0,
                                     eos_id=eos))
    for row_free, row in zip(free, out):
        hits = np.flatnonzero(row_free == eos)
        stop = hits[0] + 1 if len(hits) else N_NEW
        np.testing.assert_array_equal(row[:stop], row_free[:stop])
        assert (row[stop:] == eos).all()
    assert (out[0, 3:] == eos).all()


def test_compiled_once_per_shape(base):
    config, params = base
    gen = lambda prompt, **kw: decode.generate(params, config, prompt, max_new_tokens=N_NEW, **kw)
    gen(PROMPT_BT, temperature=0.7, top_p=0.8, key=jax.random.key(0))
    before = decode.trace_count
    gen(PROMPT_BT[::-1], temperature=0.3, top_p=0.5, key=jax.random.key(1))  # same shapes, other values
    gen(PROMPT_BT + 1, temperature=1.5, top_p=0.95, key=jax.random.key(2))
    assert decode.trace_count == before


def test_truncate_keeps_the_last_prompt_tokens(base):
    config, params = base
    long_prompt = np.arange(1, 21, dtype=np.int32)  # 20 + 10 > context 24
    with pytest.raises(ValueError, match=r"prompt length 20 \+ max_new_tokens 10 exceeds context_length 24"):
        decode.generate(params, config, long_prompt, max_new_tokens=10, temperature=0.0)
    kept = decode.generate(params, config, long_prompt, max_new_tokens=10, temperature=0.0, truncate=True)
    tail = decode.generate(params, config, long_prompt[-14:], max_new_tokens=10, temperature=0.0)
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(tail))
    with pytest.raises(ValueError, match="exceeds context_length"):
        decode.generate(params, config, long_prompt, max_new_tokens=24, temperature=0.0, truncate=True)


@pytest.mark.parametrize("prompt, kwargs, message", [
    ([], {}, "empty prompt"),
    (np.zeros((2, 0), np.int32), {}, "empty prompt"),
    (np.zeros((1, 1, 3), np.int32), {}, r"1-D \(T,\) or 2-D \(B, T\)"),
    (np.array([1.0, 2.0]), {}, "integer token ids"),
    (np.array([True, False]), {}, "integer token ids"),
    ([[1, 2], [3]], {}, "same length"),
    ([1, 53], {}, r"token id 53 at index \(1,\) is outside the vocabulary \[0, 53\)"),
    ([1, -1], {}, "token id -1"),
    ([1, 2], dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    ([1, 2], dict(max_new_tokens=2.5), "max_new_tokens must be an int"),
    ([1, 2], dict(temperature=-1.0), "temperature must be in"),
    ([1, 2], dict(temperature=float("nan")), "temperature must be in"),
    ([1, 2], dict(top_p=1.5), "top_p must be in"),
    ([1, 2], dict(eos_id=53), "eos_id 53 is outside"),
    ([1, 2], dict(temperature=1.0), "needs a PRNG key"),
    ([1, 2], dict(temperature=1.0, key=0), "key must be a single jax PRNG key"),
    ([1, 2], dict(temperature=1.0, key=jax.random.split(jax.random.key(0), 2)), "single jax PRNG key"),
])
def test_bad_inputs_raise_clear_value_errors(base, prompt, kwargs, message):
    config, params = base
    kwargs = {"max_new_tokens": 3, "temperature": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        decode.generate(params, config, prompt, **kwargs)


def test_params_that_do_not_fit_the_config_are_named(base):
    config, params = base
    bad = {**params, "lm_head": params["lm_head"][:, :16]}
    with pytest.raises(ValueError, match=r"\['lm_head'\] has shape \(53, 16\), expected \(53, 32\)"):
        decode.generate(bad, config, [1, 2], max_new_tokens=2, temperature=0.0)
    missing = {k: v for k, v in params.items() if k != "ln_final"}
    with pytest.raises(ValueError, match=r"missing \['ln_final'\]"):
        decode.generate(missing, config, [1, 2], max_new_tokens=2, temperature=0.0)
    with pytest.raises(ValueError, match="jaxlm.ModelConfig"):
        decode.generate(params, config.to_dict(), [1, 2], max_new_tokens=2, temperature=0.0)


def test_bfloat16_compute_follows_the_bfloat16_forward(base):
    """In bfloat16 the cached and uncached paths round differently, so ask for near (not exact) agreement."""
    config, params = _setup(dtype="bfloat16")
    new_BN = np.asarray(decode.generate(params, config, PROMPT_BT, max_new_tokens=N_NEW, temperature=0.0))
    logits_BSV = np.asarray(model.forward(params, np.concatenate([PROMPT_BT, new_BN], 1), config))
    T = PROMPT_BT.shape[1]
    assert (logits_BSV[:, T - 1:-1].argmax(-1) == new_BN).mean() >= 0.9
