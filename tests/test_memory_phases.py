"""Peak RSS per phase (grappa.memory.PhasePeaks): a phase reports the highest
RSS reached while it ran, a nested phase takes its own peak out of its
parent's, and result.json carries the peaks of every phase."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from grappa.memory import PhasePeaks, reset_peak_rss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/self/clear_refs")
MB = 1 << 20


@pytest.fixture(autouse=True)
def fresh_high_water_mark():
    # The pytest process's own peak (earlier tests) is not this phase's.
    reset_peak_rss()


def touch(mb: int) -> None:
    a = np.ones(mb * MB // 8)  # written, so resident; freed (unmapped) on return
    assert a[-1] == 1.0


def test_each_phase_reports_its_own_peak():
    ph = PhasePeaks()
    with ph.phase("setup"):
        pass
    with ph.phase("train"):
        touch(200)
    with ph.phase("eval"):
        pass
    assert ph.peaks["train"] >= ph.peaks["setup"] + 180
    assert ph.peaks["eval"] <= ph.peaks["train"] - 180  # the train peak does not leak into eval
    assert ph.overall() == pytest.approx(ph.peaks["train"], abs=1)


def test_a_nested_phase_takes_its_peak_out_of_the_parent():
    ph = PhasePeaks()
    with ph.phase("train"):
        with ph.phase("repartition"):
            touch(200)
        touch(20)
    assert ph.peaks["repartition"] >= ph.peaks["train"] + 150
    assert ph.vector()[PhasePeaks.ORDER.index("repartition")] == ph.peaks["repartition"]
    assert ph.vector()[PhasePeaks.ORDER.index("setup")] == 0.0


def test_mark_closes_the_span_since_the_last_reset():
    ph = PhasePeaks()
    touch(200)
    ph.mark("setup")
    with ph.phase("train"):
        pass
    assert ph.peaks["setup"] >= ph.peaks["train"] + 180


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_a_phase_gives_its_freed_heap_back():
    """Many medium blocks (heap, not mmap) freed between survivors stay
    resident in glibc until trimmed: the next phase must not start from them."""
    ph = PhasePeaks()
    with ph.phase("repartition"):  # one of PhasePeaks.TRIM_AFTER
        blocks = [np.ones(8000) for _ in range(3000)]  # 64 KB each, 190 MB in all
        keep = blocks[::10]
        del blocks
        held = rss_mb()
    assert rss_mb() < held - 100, "the freed blocks are still resident after the phase"
    assert len(keep) == 300


def test_freed_pages_are_kept_within_and_given_back_after():
    """Training keeps its freed pages for the next epoch; the caller's process
    gets glibc's defaults back (a large freed block is unmapped again)."""
    from grappa.memory import freed_pages_kept

    base = rss_mb()
    with freed_pages_kept():
        touch(200)
        inside = rss_mb()
    after = rss_mb()
    touch(200)
    assert inside >= base + 150, "the freed block was handed back inside"
    assert after <= inside - 150, "the kept pages were not trimmed on exit"
    assert rss_mb() <= base + 50, "a large block is still kept after the context"
