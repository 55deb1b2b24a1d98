"""jaxlm.parallel: peak-FLOPs table, cluster detection, argument checks, batch sharding on 1 and 4 devices."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from jaxlm import parallel

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("platform, kind, peak", [
    ("gpu", "NVIDIA H100 80GB HBM3", 989e12),
    ("gpu", "NVIDIA H100 PCIe", 756e12),
    ("gpu", "NVIDIA H200", 989e12),
    ("gpu", "NVIDIA A100-SXM4-80GB", 312e12),
    ("tpu", "TPU v5 lite", 197e12),
    ("tpu", "TPU v4", 275e12),
    ("gpu", "Some Future GPU", None),
    ("cpu", "cpu", None),
])
def test_peak_flops_table(platform, kind, peak):
    assert parallel.peak_flops_per_device(SimpleNamespace(platform=platform, device_kind=kind)) == peak


def test_cluster_detection(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    assert not parallel.cluster_launched()
    assert parallel.init_distributed() is False  # nothing asked, nothing detected: single process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert not parallel.cluster_launched()  # one task is not a multi-process launch
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert parallel.cluster_launched()


@pytest.mark.parametrize("kwargs, message", [
    ({"coordinator": "127.0.0.1:1234"}, "--num-processes and --process-id"),
    ({"num_processes": 2, "process_id": 0}, "--coordinator"),
    ({"coordinator": "127.0.0.1:1234", "num_processes": 2, "process_id": 2}, "outside 0..1"),
])
def test_init_distributed_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        parallel.init_distributed(**kwargs)


def test_one_device_round_trip():
    mesh = parallel.data_mesh()
    x = np.arange(24, dtype=np.int32).reshape(6, 4)
    placed = parallel.shard_batch(x, mesh)
    assert placed.sharding == parallel.batch_sharded(mesh)
    np.testing.assert_array_equal(np.asarray(placed), x)
    tree = {"a": np.ones((2, 3), np.float32), "b": [np.int32(7)]}
    back = parallel.to_host(parallel.replicate(tree, mesh))
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["b"][0] == 7


def test_four_forced_devices_split_rows():
    """Each of 4 devices holds its contiguous quarter of the batch; replicated trees sit whole on all."""
    code = textwrap.dedent("""
        import numpy as np
        from jaxlm import parallel
        mesh = parallel.data_mesh()
        assert mesh.size == 4, mesh
        x = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
        placed = parallel.shard_batch(x, mesh)
        for shard in placed.addressable_shards:
            rows = 2 * mesh.devices.tolist().index(shard.device)
            np.testing.assert_array_equal(np.asarray(shard.data), x[rows:rows + 2])
        rep = parallel.replicate({"w": np.eye(3, dtype=np.float32)}, mesh)["w"]
        assert len(rep.addressable_shards) == 4
        assert all((np.asarray(s.data) == np.eye(3)).all() for s in rep.addressable_shards)
        try:
            parallel.check_batch_size(6, mesh)
        except ValueError as e:
            print(e)
        else:
            raise SystemExit("batch 6 over 4 devices accepted")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "batch size 6 is not divisible by the 4 devices" in proc.stdout
