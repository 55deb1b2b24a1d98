"""Token files, id checks, device lookup and batch sampling (shapes, offsets, uniform starts)."""
import jax
import numpy as np
import pytest
from scipy import stats

from jaxlm import data


def test_get_batch_shapes_offsets_and_device():
    dataset = np.arange(1000, dtype=np.uint16) * 3  # x -> y offset is visible as +3
    for key_or_rng in (jax.random.key(0), jax.random.PRNGKey(1), np.random.default_rng(2)):
        x, y = data.get_batch(dataset, 8, 16, key_or_rng=key_or_rng, device="cpu")
        assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int32
        assert isinstance(x, jax.Array) and x.devices() == {jax.devices("cpu")[0]}
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_array_equal(y, x + 3)  # targets are the next tokens
        np.testing.assert_array_equal(np.diff(x, axis=1), 3)  # each row is one contiguous window
    x, _ = data.get_batch(dataset, 2, 4, key_or_rng=np.random.default_rng(0))
    assert isinstance(x, jax.Array)


def test_starts_cover_every_valid_position_uniformly():
    n, T = 30, 5  # valid starts 0 .. n - T - 1 = 24
    dataset = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(123)
    starts = np.concatenate([data.sample_windows(dataset, 500, T, rng)[0][:, 0] for _ in range(40)])
    counts = np.bincount(starts, minlength=n)
    assert counts[n - T:].sum() == 0  # no window runs past the end
    assert (counts[:n - T] > 0).all()  # every valid start occurs, the last one included
    chi2, p = stats.chisquare(counts[:n - T])
    assert p > 1e-4, (chi2, p)


def test_dataset_too_short_and_bad_args():
    with pytest.raises(ValueError, match="needs at least 9"):
        data.get_batch(np.arange(8), 2, 8, key_or_rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="key_or_rng"):
        data.get_batch(np.arange(100), 2, 8, key_or_rng=3)


def test_batch_for_step_is_a_pure_function_of_seed_and_step():
    dataset = np.arange(10_000, dtype=np.uint16)
    a = data.batch_for_step(dataset, 4, 8, seed=7, step=3)
    b = data.batch_for_step(dataset, 4, 8, seed=7, step=3)
    c = data.batch_for_step(dataset, 4, 8, seed=7, step=4)
    assert isinstance(a[0], np.ndarray) and a[0].dtype == np.int32
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    val = data.validation_windows(dataset, 3, 4, 8, seed=7)
    assert len(val) == 3 and all(x.shape == (4, 8) for x, _ in val)
    np.testing.assert_array_equal(val[1][0], data.validation_windows(dataset, 3, 4, 8, seed=7)[1][0])
    assert not any(np.array_equal(x, a[0]) for x, _ in val)


def test_load_tokens_npy_and_bin(tmp_path):
    tokens = np.arange(500, dtype=np.uint16)
    np.save(tmp_path / "t.npy", tokens)
    tokens.tofile(tmp_path / "t.bin")
    for loaded in (data.load_tokens(tmp_path / "t.npy"), data.load_tokens(tmp_path / "t.bin", np.uint16)):
        assert isinstance(loaded, np.memmap)
        np.testing.assert_array_equal(loaded, tokens)
        x, y = data.get_batch(loaded, 3, 10, key_or_rng=np.random.default_rng(0))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x) + 1)


def test_load_tokens_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        data.load_tokens(tmp_path / "nope.npy")
    np.arange(5, dtype=np.uint16).tofile(tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="give its dtype"):
        data.load_tokens(tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="not a multiple"):
        data.load_tokens(tmp_path / "odd.bin", np.uint32)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        data.load_tokens(tmp_path / "bad.npy")
    np.save(tmp_path / "float.npy", np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="1-D integer"):
        data.load_tokens(tmp_path / "float.npy")


def test_check_token_ids_reports_first_offset_and_count(tmp_path):
    tokens = np.arange(100, dtype=np.uint16) % 50
    tokens[37] = 60
    tokens[90] = 99
    np.save(tmp_path / "ids.npy", tokens)
    mm = data.load_tokens(tmp_path / "ids.npy")
    data.check_token_ids(mm, 100, chunk=16)
    with pytest.raises(ValueError, match=r"ids\.npy.*2 token id\(s\).*first is 60 at token offset 37"):
        data.check_token_ids(mm, 60, chunk=16)
    with pytest.raises(ValueError, match="-1 at token offset 2"):
        data.check_token_ids(np.array([0, 1, -1, 2]), 10)


def test_resolve_device():
    cpu = jax.devices("cpu")[0]
    assert data.resolve_device("cpu") == cpu and data.resolve_device(cpu) is cpu
    assert data.resolve_device("CPU:0") == cpu
    for bad in ("cuda:99", "tpu:7", f"cpu:{len(jax.devices('cpu'))}"):
        with pytest.raises(RuntimeError, match=f"{bad!r} is not present.*devices present: cpu:0"):
            data.resolve_device(bad)
    with pytest.raises(ValueError, match="unknown device 'quantum'"):
        data.resolve_device("quantum")
