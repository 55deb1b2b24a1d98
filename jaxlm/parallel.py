"""Data parallelism with `jax.sharding`: one "data" mesh axis, batch sharded, state replicated.

The same code runs on one device, on N local devices, and on several processes (hosts) after
`init_distributed`. Every process computes the same global batch (a pure function of (seed, step))
and hands it to `shard_batch`, which keeps only the rows its own devices hold.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Dense bf16 peak FLOP/s per device, by a substring of `jax.Device.device_kind` (lower case).
# Longer keys are tried first, so "h100 pcie" wins over "h100". MFU against these peaks is the
# usual convention even for float32 runs.
PEAK_FLOPS = {
    "b200": 2250e12,
    "h200": 989e12,
    "h100 pcie": 756e12,
    "h100": 989e12,
    "a100": 312e12,
    "l40s": 362e12,
    "l4": 121e12,
    "a10g": 70e12,
    "v100": 125e12,
    "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
    "tpu v5p": 459e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v4": 275e12,
}

# Environment variables that mean "this process is one of several launched by a cluster manager".
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def peak_flops_per_device(device: jax.Device) -> float | None:
    """Known peak FLOP/s of one device, or None (CPUs and unknown accelerators)."""
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key in kind:
            return PEAK_FLOPS[key]
    return None


def cluster_launched() -> bool:
    """True when the environment says several processes were launched together."""
    for name in _CLUSTER_ENV:
        value = os.environ.get(name)
        if value and (name == "JAX_COORDINATOR_ADDRESS" or value.isdigit() and int(value) > 1):
            return True
    return False


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """Join a multi-process run when asked to (or when a cluster launched us); returns whether it did.

    Must run before anything touches a JAX backend. On CPU the cross-process collectives go over gloo.
    """
    explicit = (coordinator, num_processes, process_id)
    if all(v is None for v in explicit) and not cluster_launched():
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise ValueError("--coordinator needs --num-processes and --process-id as well")
    if coordinator is None and (num_processes is not None or process_id is not None):
        raise ValueError("--num-processes/--process-id need --coordinator ADDR:PORT as well")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id} is outside 0..{num_processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over every device of every process, axis "data"."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the "data" axis, the rest whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    n = mesh.size
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} is not divisible by the {n} devices of the data "
                         f"mesh: use a multiple of {n}")


def shard_batch(x_global: np.ndarray, mesh: Mesh) -> jax.Array:
    """Place a global (B, ...) host array with its rows split over the mesh.

    Every process passes the whole global batch; each keeps the rows of its own devices.
    """
    return jax.make_array_from_process_local_data(batch_sharded(mesh), x_global, x_global.shape)


def replicate(tree, mesh: Mesh):
    """Host arrays -> the same values on every device of the mesh (all processes pass equal trees)."""
    sharding = replicated(mesh)

    def put(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(put, tree)


def to_host(tree):
    """Replicated device arrays -> numpy, reading this process's own copy (works multi-process)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
