"""Communication layer: one interface, three backends, every byte counted.

    comm = make_comm("auto")   # horovod under MPI if installed, else gloo, else single
    g = comm.allreduce(grad, category="train_grad")
    comm.counter.bytes["train_grad"]
"""
from __future__ import annotations

from grappa.comm.base import AVERAGE, MAX, MIN, SUM, ByteCounter, Comm, SingleComm, env_rank_size

BACKENDS = ("auto", "horovod", "gloo", "single")


def make_comm(backend: str = "auto", timeout_s: float = 600.0, expected_wait_s: float = 0.0) -> Comm:
    """``timeout_s``: how long a collective may wait for a live but silent peer
    (a rank that died is the launcher's to catch: mpirun and srun end the job);
    ``expected_wait_s``: the longest wait that is legitimate (a time-based
    averaging round), which Horovod must not warn about as a stall."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown comm backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        _, size, _ = env_rank_size()
        if size == 1:
            return SingleComm()
        try:
            import horovod.torch  # noqa: F401

            backend = "horovod"
        except ImportError:
            backend = "gloo"
    if backend == "single":
        return SingleComm()
    if backend == "horovod":
        from grappa.comm.horovod_backend import HorovodComm

        return HorovodComm(timeout_s, expected_wait_s)
    from grappa.comm.gloo_backend import GlooComm

    return GlooComm(timeout_s)


__all__ = ["make_comm", "Comm", "SingleComm", "ByteCounter", "env_rank_size", "SUM", "AVERAGE", "MAX", "MIN"]
