"""One file per extension (issue 27): a toy method, model, partition scheme
and importer, each defined in a module of its own outside grappa and
registered there with one decorator line, run through grappa-import,
grappa-partition, grappa-train and bench/compare.py without an edit to any
file of grappa (GRAPPA_PLUGINS names the module)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, mpi_env, run_cli, run_mpi

TOY = textwrap.dedent('''
    """Toy extensions: one of each kind."""
    import numpy as np

    from grappa.graph.importers import import_edgelist, register_importer
    from grappa.models import MLP, register_model
    from grappa.partition.assignment import register_scheme
    from grappa.train.methods.grappa_method import GrappaMethod
    from grappa.train.registry import register_method


    @register_method
    class ToyGrappa(GrappaMethod):
        name, label = "toy-grappa", "toy Grappa"


    @register_model("toy-mlp")
    class ToyMLP(MLP):
        """An MLP under another name."""


    @register_scheme("toy-halves")
    def halves(src, dst, n, k, seed, super_nodes=None):
        return (np.arange(n) * k // n).astype(np.int32)  # consecutive ids, K equal runs


    @register_importer("toy-dir", lambda a: {"name": a.name or "toy"})
    def import_toy_dir(path, out, name):
        """A directory of edges.csv, features.npy and labels.npy."""
        return import_edgelist(f"{path}/edges.csv", out, features=f"{path}/features.npy",
                               labels=f"{path}/labels.npy", undirected=False, name=name)
''')


@pytest.fixture(scope="module")
def toy(tmp_path_factory, cora_dir):
    """The toy module on PYTHONPATH and GRAPPA_PLUGINS, and a toy-format copy of Cora."""
    d = tmp_path_factory.mktemp("toy")
    (d / "toy_ext.py").write_text(TOY)
    src = d / "cora-toy"
    src.mkdir()
    edges = np.stack([np.load(cora_dir / "edges_src.npy"), np.load(cora_dir / "edges_dst.npy")], 1)
    np.savetxt(src / "edges.csv", edges, fmt="%d", delimiter=",")
    np.save(src / "features.npy", np.load(cora_dir / "x.npy").astype(np.float32))
    np.save(src / "labels.npy", np.load(cora_dir / "y.npy"))
    saved = {k: os.environ.get(k) for k in ("GRAPPA_PLUGINS", "PYTHONPATH")}
    os.environ["GRAPPA_PLUGINS"] = "toy_ext"  # every command the tests start (mpi_env copies os.environ)
    os.environ["PYTHONPATH"] = f"{d}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    try:
        yield d, src
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_toy_importer_scheme_method_and_model_run_through_the_commands(toy, tmp_path):
    d, src = toy
    raw = tmp_path / "raw"
    r = run_cli("grappa.graph.importers_cli", "toy-dir", src, "--out", raw)
    assert r.returncode == 0, r.stderr
    assert json.loads((raw / "graph.json").read_text())["num_nodes"] == 2708
    parts = tmp_path / "parts"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", raw, "--out", parts, "--num-chunks", 4,
                "--method", "toy-halves", "--no-progress")
    assert r.returncode == 0, r.stderr
    node_chunk = np.load(parts / "node_chunk.npy")
    assert (node_chunk == np.arange(2708) * 4 // 2708).all()  # the toy scheme's table
    out = tmp_path / "run"
    r = run_mpi(2, "-m", "grappa.train", "--method", "toy-grappa", "--model", "toy-mlp", "--data", parts,
                "--out", out, "--epochs", 3, "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    assert (res["method"], res["model"], res["world_size"]) == ("toy-grappa", "toy-mlp", 2)
    assert res["train_bytes_per_rank_per_epoch_by_category"]["train_grad"] > 0  # Grappa's gradient allreduce
    help_text = run_cli("grappa.train", "--help").stdout
    assert "toy-grappa" in help_text and "toy-mlp" in help_text


def test_a_toy_method_runs_in_the_comparison_benchmark(toy, tmp_path):
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, str(ROOT / "bench/compare.py"), "--preset", "cora", "--ranks", "2",
                        "--seeds", "0", "--methods", "centralized", "toy-grappa", "--work", str(tmp_path / "work"),
                        "--out", str(out), "--", "--epochs", "3"], env=mpi_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "bench.json").read_text())["summary"]
    assert set(summary) == {"centralized", "toy Grappa"}
    assert summary["toy Grappa"]["train_bytes_per_rank_per_epoch"] > 0


def test_a_plugin_module_that_does_not_import_is_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "grappa.train", "--help"], capture_output=True, text=True,
                       env={**mpi_env(), "GRAPPA_PLUGINS": "no_such_module_here"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "GRAPPA_PLUGINS" in r.stderr and "no_such_module_here" in r.stderr
