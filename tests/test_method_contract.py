"""The method interface's contract, for every registered method, with real
mpirun ranks on Cora: result.json's standard keys, training bytes only in the
categories the method declares, and a run stopped at a checkpoint and resumed
ends with the same parameters as an uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_mpi
from grappa.train.registry import METHODS

pytestmark = pytest.mark.mpi
EPOCHS = 4
STANDARD_KEYS = ("method", "model", "dataset", "world_size", "backend", "epochs", "epochs_run", "seed", "metric",
                 "test_metric", "val_metric", "best_epoch", "train_bytes_per_rank_per_epoch",
                 "train_bytes_per_rank_per_epoch_max", "train_bytes_per_rank_per_epoch_by_category",
                 "train_bytes_by_category", "eval_bytes_total", "epoch_time_s_median", "train_time_s_total",
                 "eval_time_s_median", "wall_s", "peak_rss_mb_max", "peak_rss_mb_by_phase", "mode", "config",
                 "method_label", "train_categories", "final_model_sha256")
# Flags that make each family deterministic and exercise its mini-batch path.
FLAGS = {"psgd-pa": ["--average-every-steps", 2, "--batch-size", 32],
         "random-tma": ["--average-every-steps", 2, "--batch-size", 32],
         "super-tma": ["--average-every-steps", 2, "--batch-size", 32],
         "grappa": ["--repartition-every", 2], "grappa-uw": ["--repartition-every", 2],
         "grappa-authors": ["--repartition-every", 2, "--batch-size", 32],
         "llcg": ["--batch-size", 32, "--local-steps", 3, "--server-batch-size", 256],
         "retexo": ["--rounds-per-stage", 1],  # stage 0 = epoch 0: the resume lands inside stage 1
         # a new assignment every epoch, from the deterministic cost model (a profile differs run to run)
         "adaqp": ["--assign-cycle", 1, "--no-profile"], "adaqp-no-overlap": ["--assign-cycle", 1, "--no-profile"]}


@pytest.fixture(scope="module")
def datasets(cora_dir, tmp_path_factory):
    made = {}

    def get(partition: str | None, k: int):
        if partition is None:
            return cora_dir
        if (partition, k) not in made:
            out = tmp_path_factory.mktemp("contract") / f"cora-{partition}-k{k}"
            r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", k,
                        "--method", partition, "--no-progress")
            assert r.returncode == 0, r.stderr
            made[partition, k] = out
        return made[partition, k]

    return get


def ranks_of(name) -> int:
    return 1 if METHODS[name].world_size == "one" else 2


def launch(plan: list[dict], ranks: int, tmp: Path) -> None:
    """Several runs in one launch per world size (bench/run_seeds.py): process
    start-up, not training, is what costs on Cora."""
    f = tmp / f"plan-{len(list(tmp.glob('plan-*')))}.json"
    f.write_text(json.dumps(plan))
    r = run_mpi(ranks, ROOT / "bench/run_seeds.py", "--plan", f, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.fixture(scope="module")
def contract_runs(datasets, tmp_path_factory):
    """For every method: an uninterrupted run of EPOCHS, and a run stopped at
    its checkpoint after EPOCHS / 2, then resumed to EPOCHS in a new launch."""
    tmp = tmp_path_factory.mktemp("contract-runs")
    runs = {}
    for name, cls in METHODS.items():
        data = datasets(cls.partition, 2 if cls.chunks_per_rank_exact or cls.partition == "metis" else 4)
        common = ["--method", name, "--data", str(data), "--no-progress", *map(str, FLAGS.get(name, []))]
        runs[name] = (tmp / name / "full", tmp / name / "part", common)
    for stage in ("first", "resume"):
        for ranks in (1, 2):
            plan = []
            for name, (full, part, common) in runs.items():
                if ranks_of(name) != ranks:
                    continue
                if stage == "first":
                    plan += [{"out": str(full), "args": [*common, "--epochs", str(EPOCHS)]},
                             {"out": str(part), "args": [*common, "--epochs", str(EPOCHS // 2)]}]
                else:
                    plan.append({"out": str(part), "args": [*common, "--epochs", str(EPOCHS), "--resume"]})
            launch(plan, ranks, tmp)
    return {n: (full, part) for n, (full, part, _) in runs.items()}


def final_params(out):
    from grappa.checkpoint import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]


@pytest.mark.parametrize("name", list(METHODS))
def test_method_contract(name, contract_runs):
    cls = METHODS[name]
    full, part = contract_runs[name]
    res = json.loads((full / "result.json").read_text())
    for key in STANDARD_KEYS:
        assert key in res, key
    assert res["method"] == name and res["epochs_run"] == EPOCHS and 0 < res["test_metric"] <= 1
    assert res["world_size"] == ranks_of(name)
    phases = res["peak_rss_mb_by_phase"]  # every phase the loop runs, none above the overall peak
    assert {"setup", "train", "eval", "checkpoint"} <= set(phases) and max(phases.values()) <= res["peak_rss_mb_max"]
    sent = {c for c, v in res["train_bytes_by_category"].items() if v}
    assert sent <= set(cls.categories), (sent, cls.categories)
    assert bool(sent) == (cls.world_size != "one")  # distributed methods do communicate
    assert res["train_categories"] == list(cls.categories)

    # Stopped at the checkpoint after EPOCHS / 2, resumed to EPOCHS: same parameters.
    resumed = json.loads((part / "result.json").read_text())
    assert resumed["epochs_run"] == EPOCHS
    a, b = final_params(full), final_params(part)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=f"{name}: {k} differs after resume")
    rows = [json.loads(x)["epoch"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(EPOCHS))


def test_wrong_partition_names_the_command(datasets, tmp_path):
    random4 = datasets("random", 4)
    r = run_mpi(2, "-m", "grappa.train", "--method", "psgd-pa", "--data", random4, "--out", tmp_path / "o",
                "--no-progress")
    assert r.returncode != 0 and not (tmp_path / "o").exists()
    assert "data_prep/partition.py" in r.stderr and "--num-chunks 2 --method metis" in r.stderr
    assert r.stderr.count("error:") == 1  # rank 0 reports, the others exit quietly


def test_option_of_another_method_is_refused(cora_dir, tmp_path):
    from conftest import run_cli

    r = run_cli("grappa.train", "--method", "centralized", "--data", cora_dir, "--out", tmp_path / "o",
                "--average-every-steps", 3)
    assert r.returncode == 2 and "--average-every-steps" in r.stderr and "random-tma" in r.stderr
