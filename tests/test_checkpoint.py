"""Checkpoints: bit-exact round trips, detected truncation/corruption, template mismatches, atomicity."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm import checkpoint as ckpt
from jaxlm import optim


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(0)
    params = {"emb": jnp.asarray(rng.normal(size=(7, 4)), jnp.float32),
              "layers": {"w": jnp.asarray(rng.normal(size=(2, 4, 4)), jnp.float32),
                         "ln": jnp.asarray(rng.normal(size=(2, 4)), jnp.bfloat16)},
              "scalar": jnp.float32(np.pi)}
    opt = optim.adamw(1e-2)
    opt_state = opt.init(params)
    @jax.jit
    def step(params, opt_state):
        updates, opt_state = opt.update(jax.tree.map(jnp.sin, params), opt_state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), opt_state

    for _ in range(2):  # non-trivial moments and count
        params, opt_state = step(params, opt_state)
    return params, opt_state


def _assert_bit_exact(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x).reshape(-1).view(np.uint8), np.asarray(y).reshape(-1).view(np.uint8))


def _zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def test_round_trip_path_and_bytesio(state, tmp_path):
    params, opt_state = state
    extra = {"model_config": {"d_model": 4}, "rng": {"seed": 3, "step": 2 ** 70}, "tokenizer": "tok.json"}
    path = tmp_path / "a.ckpt"
    ckpt.save_checkpoint(params, opt_state, 12, path, extra=extra)
    buf = io.BytesIO()
    ckpt.save_checkpoint(params, opt_state, 12, buf, extra=extra)
    assert buf.getvalue() == path.read_bytes()
    buf.seek(0)
    for src in (path, str(path), buf):
        p, o, it = ckpt.load_checkpoint(src, _zeros_like(params), _zeros_like(opt_state))
        assert it == 12 and isinstance(o, optim.AdamWState)
        _assert_bit_exact((p, o), (params, opt_state))
    assert ckpt.read_extra(path) == extra and ckpt.read_iteration(path) == 12
    # Abstract templates work too.
    p, _, _ = ckpt.load_checkpoint(path, jax.eval_shape(lambda: params), jax.eval_shape(lambda: opt_state))
    _assert_bit_exact(p, params)
    assert not list(tmp_path.glob(".*tmp*"))


def test_truncated_and_foreign_files_are_refused(state, tmp_path):
    params, opt_state = state
    buf = io.BytesIO()
    ckpt.save_checkpoint(params, opt_state, 1, buf)
    blob = buf.getvalue()
    for cut in (3, 20, len(blob) // 2, len(blob) - 1):
        (tmp_path / "cut.ckpt").write_bytes(blob[:cut])
        with pytest.raises(ckpt.CheckpointError, match=r"cut\.ckpt.* is truncated"):
            ckpt.load_checkpoint(tmp_path / "cut.ckpt", params, opt_state)
        with pytest.raises(ckpt.CheckpointError, match="truncated"):
            ckpt.load_checkpoint(io.BytesIO(blob[:cut]), params, opt_state)
    flipped = bytearray(blob)
    flipped[-100] ^= 1
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(ckpt.CheckpointError, match="flip.ckpt.*checksum mismatch"):
        ckpt.load_checkpoint(tmp_path / "flip.ckpt", params, opt_state)
    np.save(tmp_path / "foreign.npy", np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="foreign.npy.* is not a jaxlm checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.npy", params, opt_state)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        ckpt.load_checkpoint(tmp_path / "missing.ckpt", params, opt_state)


def test_template_mismatch_lists_the_keys(state):
    params, opt_state = state
    buf = io.BytesIO()
    ckpt.save_checkpoint(params, opt_state, 1, buf)
    other = {**params, "extra_w": jnp.zeros(3), "emb": jnp.zeros((8, 4))}
    del other["scalar"]
    buf.seek(0)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(buf, other, opt_state)
    msg = str(err.value)
    assert "missing from checkpoint (1): params/extra_w" in msg
    assert "unexpected in checkpoint (1): params/scalar" in msg
    assert "params/emb: checkpoint float32(7, 4) vs template float32(8, 4)" in msg


def test_load_params_skips_the_optimizer_state(state, tmp_path):
    params, opt_state = state
    path = tmp_path / "p.ckpt"
    ckpt.save_checkpoint(params, opt_state, 5, path)
    _assert_bit_exact(ckpt.load_params(path, jax.eval_shape(lambda: params)), params)
    # a params-only file (another optimizer's state, or none) loads the same way
    ckpt.save_checkpoint(params, {"sgd": jnp.zeros(2)}, 5, path)
    _assert_bit_exact(ckpt.load_params(path, _zeros_like(params)), params)
    with pytest.raises(ckpt.CheckpointError, match="missing from checkpoint .*params/extra"):
        ckpt.load_params(path, {**params, "extra": jnp.zeros(1)})


def test_failed_save_leaves_previous_checkpoint_intact(state, tmp_path, monkeypatch):
    params, opt_state = state
    path = tmp_path / "c.ckpt"
    ckpt.save_checkpoint(params, opt_state, 5, path)
    before = path.read_bytes()
    calls = []

    def failing(arr):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return memoryview(arr.reshape(-1).view(np.uint8))

    monkeypatch.setattr(ckpt, "_array_bytes", failing)
    bumped = jax.tree.map(lambda p: p + 1, params)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(bumped, opt_state, 6, path)
    assert len(calls) == 3  # the failure struck mid-write, after some arrays were written
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temp file left behind
    with pytest.raises(TypeError, match="JSON"):
        ckpt.save_checkpoint(params, opt_state, 7, path, extra={"bad": object()})
    assert path.read_bytes() == before


def test_latest_and_prune(state, tmp_path):
    params, opt_state = state
    assert ckpt.latest_checkpoint(tmp_path / "absent") is None
    for it in (100, 200, 300, 1000):
        ckpt.save_checkpoint(params, opt_state, it, ckpt.checkpoint_path(tmp_path, it))
    assert ckpt.checkpoint_path(tmp_path, 200).name == "ckpt_00000200.ckpt"
    newest = ckpt.checkpoint_path(tmp_path, 1000)
    assert ckpt.latest_checkpoint(tmp_path) == newest  # numeric, not lexicographic, order
    newest.write_bytes(newest.read_bytes()[:-10])  # a partial newest file is skipped
    with pytest.warns(UserWarning, match="ckpt_00001000.ckpt.*truncated"):
        assert ckpt.latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 300)
    (tmp_path / ".ckpt_00000400.ckpt.x1y2z3.tmp").write_bytes(b"partial")  # a crashed save's temp file
    removed = ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000200.ckpt", "ckpt_00000300.ckpt",
                                                          "ckpt_00001000.ckpt"]
    assert len(removed) == 2
