"""grappa.analysis.comm_model: the bytes, time and boundary-row formulas the
network benchmark checks against measurement and extrapolates with."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from grappa.analysis.comm_model import allreduce_bytes, comm_time, random_boundary_rows


def test_comm_time_is_rounds_of_round_trips_plus_off_node_bytes_over_the_rate():
    # 4 ranks on 2 nodes: 2/3 of a rank's bytes leave its node, and its node's 2 ranks share the link
    assert comm_time(3e6, 6, 1e9, 1e-4, 4, ranks_per_node=2) == pytest.approx(6e-4 + 8 * 2 * 3e6 * 2 / 3 / 1e9)
    assert comm_time(1e6, 2, 1e8, 1e-3, 2) == pytest.approx(2e-3 + 8e6 / 1e8)  # one rank a node
    assert comm_time(1e9, 10, 1e6, 1.0, 4, ranks_per_node=4) == 0.0  # one node: no link crossed
    assert allreduce_bytes(1000, 4) == pytest.approx(2 * 3 / 4 * 4000)


@pytest.mark.parametrize("p,degree", [(4, 3), (16, 8)])
def test_random_boundary_rows_matches_a_random_partition(p, degree):
    """Rows a rank sends = distinct (node, other rank) pairs over its out-edges, / P."""
    rng = np.random.default_rng(0)
    n = 200_000
    src = np.repeat(np.arange(n), degree)
    dst = rng.integers(0, n, n * degree)
    rank = rng.integers(0, p, n)
    cut = rank[src] != rank[dst]
    pairs = np.unique(src[cut] * p + rank[dst][cut])
    assert len(pairs) / p == pytest.approx(random_boundary_rows(n, degree, p), rel=0.01)


def test_extrapolation_table_runs_and_grappa_sends_less_than_halo(tmp_path):
    out = tmp_path / "x.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench/comm_extrapolation.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 2 * 4 and "| 1024 |" in r.stdout
    for row in rows:
        assert row["grappa_bytes"] < row["halo_bytes"] / 100
        assert row["grappa_minibatch_tree_s"] < row["grappa_minibatch_s"]  # ring rounds grow with P
