"""Peak resident memory (RSS) of this process, overall and per phase.

``PhasePeaks`` attributes the peak to what the process was doing: the loop
wraps its phases (``setup``, ``repartition``, ``train``, ``eval``,
``checkpoint``) and each phase's value is the highest RSS reached while it
ran, nested phases excluded (a super-epoch's repartition inside the first
training epoch counts as ``repartition``, not ``train``). It works by
resetting the kernel's high-water mark (``VmHWM``) at every phase edge,
Linux >= 4.0; elsewhere the phases all read the process's lifetime peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
from contextlib import contextmanager
from functools import cache


def peak_rss_mb() -> float:
    """High-water mark of this process's RSS since it started or the last reset."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_high_water_mark() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


TRIM_AT_PHASE_EDGE = 64 << 20  # free heap bytes worth a trim at a phase edge


@cache
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # glibc only
    except OSError:
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def trim_heap(min_free_bytes: int = 0) -> None:
    """Give the heap's free pages back to the kernel. glibc keeps what a
    phase freed (the many medium-sized blocks of a repartition or an
    evaluation), so without this the next phase starts, and peaks, from the
    previous phase's high level. Only when the heap holds at least
    ``min_free_bytes`` free (glibc >= 2.33 reports it): trimming a small
    heap every epoch costs more in page faults than it returns. A no-op
    outside glibc."""
    libc = _libc()
    if libc is None:
        return
    if min_free_bytes and hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        if libc.mallinfo2().fordblks < min_free_bytes:
            return
    libc.malloc_trim(0)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@contextmanager
def freed_pages_kept():
    """Within: glibc keeps the pages of freed tensors for the next allocation
    instead of unmapping them. A block over 32 MB (an N x hidden activation)
    is otherwise mmap'ed fresh on every allocation, and faulting its pages in
    again was over half of a full-graph epoch (docs/BENCHMARKS.md). Set-up's
    freed memory is handed back on entry, a repartition's after it
    (``PhasePeaks.TRIM_AFTER``), and peaks count what is live plus what the
    heap keeps free. On exit glibc's defaults come back and the heap is
    trimmed: a caller's process (``grappa.train.run`` in a notebook or a
    test) keeps its own allocator behaviour. A no-op outside glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        yield
        return
    trim_heap(TRIM_AT_PHASE_EDGE)  # set-up's temporaries (it runs outside any phase): not kept for training
    libc.mallopt(M_MMAP_MAX, 0)  # large blocks come from the heap, so free() keeps them
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # (an int: the most) free() leaves trimming to the phase edges
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, 65536)  # glibc's defaults (mallopt(3))
        libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
        trim_heap()


def reset_peak_rss() -> None:
    """Restart the peak at the current RSS, so several runs in one process
    each report their own peak. The heap is trimmed first: the phases trim
    at their edges, so a baseline that still held freed pages would sit above
    what the first phase starts from."""
    gc.collect()
    trim_heap()
    _reset_high_water_mark()


class PhasePeaks:
    """Peak RSS per named phase; ``overall()`` is the peak across all of them."""

    ORDER = ("setup", "repartition", "train", "eval", "checkpoint")
    # Phases whose temporaries the training does not reuse: the heap is trimmed
    # after them (set-up, only ``mark``ed, is trimmed where
    # ``freed_pages_kept`` starts). Epochs, evaluations and checkpoints reuse each other's freed
    # pages (``freed_pages_kept``): trimming between them made every epoch
    # fault its pages in again, and their peaks count what the heap keeps free.
    TRIM_AFTER = ("repartition",)

    def __init__(self):
        self.peaks: dict[str, float] = {}
        self._stack: list[str] = []
        self._outside = 0.0  # between phases

    def _flush(self) -> None:
        now = peak_rss_mb()
        if self._stack:
            top = self._stack[-1]
            self.peaks[top] = max(self.peaks.get(top, 0.0), now)
        else:
            self._outside = max(self._outside, now)

    @contextmanager
    def phase(self, name: str):
        self._flush()
        _reset_high_water_mark()
        self._stack.append(name)
        try:
            yield
        finally:
            self._flush()
            self._stack.pop()
            if name in self.TRIM_AFTER:
                trim_heap(TRIM_AT_PHASE_EDGE)
            _reset_high_water_mark()

    def mark(self, name: str) -> None:
        """Close an unwrapped span (start-up, since the last reset) as phase ``name``."""
        self.peaks[name] = max(self.peaks.get(name, 0.0), peak_rss_mb())
        _reset_high_water_mark()

    def overall(self) -> float:
        self._flush()
        return max([self._outside, *self.peaks.values()])

    def vector(self) -> list[float]:
        """Peaks in ``ORDER`` (0 for a phase that never ran), for a MAX allreduce."""
        self._flush()
        return [self.peaks.get(name, 0.0) for name in self.ORDER]
