"""RETEXO's stages in one process, for quick settings sweeps on a raw graph.

The same ``RetexoNet`` and stage loop as ``--method retexo`` (fresh Adam per
stage, one full-batch step per round, loss over training nodes with an
in-edge, best-validation parameters kept per stage), without ranks: one
process holds the whole graph, which is what the distributed stages equal
(tests/test_retexo.py). Dropout draws differ from a grappa run's, so compare
settings within this script. Each setting is a JSON object of overrides;
prints the mean test accuracy over the seeds and writes JSON.

    python bench/retexo_sweep.py --data work_data/bench/cora --out sweep.json \\
        --set '{}' --set '{"dropout": 0.6}' --set '{"weight_decay": 5e-3}' --set '{"select": "loss"}'
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from grappa.train.data import load_graph  # noqa: E402
from grappa.train.methods.retexo import RetexoNet  # noqa: E402

BASE = {"model": "gcn", "hidden": 256, "dropout": 0.3, "weight_decay": 5e-4, "lr": 0.003, "rounds": 200,
        "layers": 2, "select": "acc", "self_loops": False}


def stage_wise(g, s: dict, seed: int) -> float:
    """Test accuracy of the final stage's best-validation parameters."""
    torch.manual_seed(seed)
    n, ei = g.x.shape[0], g.edge_index
    if s["self_loops"]:  # not RETEXO's GCN (no self term): how much the missing term costs
        ei = torch.cat([ei, torch.arange(n).repeat(2, 1)], 1)
    m = RetexoNet(s["model"], g.x.shape[1], s["hidden"], int(g.y.max()) + 1, s["layers"], s["dropout"])
    graph = m.adjacency(*m.prepare(ei, n), n)
    has_in = torch.bincount(ei[1], minlength=n) > 0
    tr = torch.from_numpy(g.train_idx)
    tr, va, te = tr[has_in[tr]], torch.from_numpy(g.val_idx), torch.from_numpy(g.test_idx)
    h = g.x
    for st in range(s["layers"]):
        mods = m.stage_modules(st)
        opt = torch.optim.Adam([q for mod in mods for q in mod.parameters()], lr=s["lr"],
                               weight_decay=s["weight_decay"])
        best, keep = -np.inf, None
        for _ in range(s["rounds"]):
            m.train()
            opt.zero_grad()
            F.cross_entropy(m.stage_logits(st, h, graph)[tr], g.y[tr]).backward()
            opt.step()
            score = _validation(m, st, h, graph, g.y, va, s["select"])
            if score > best:
                best, keep = score, [copy.deepcopy(mod.state_dict()) for mod in mods]
        for mod, state in zip(mods, keep):
            mod.load_state_dict(state)
        m.eval()
        with torch.no_grad():
            acc = float((m.stage_logits(st, h, graph)[te].argmax(1) == g.y[te]).float().mean())
            h = m.layer(st, h, *graph) if st < s["layers"] - 1 else h
    return acc


@torch.no_grad()
def _validation(m, st, h, graph, y, va, select: str) -> float:
    m.eval()
    out = m.stage_logits(st, h, graph)[va]
    return float((out.argmax(1) == y[va]).float().mean()) if select == "acc" else -float(F.cross_entropy(out, y[va]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph directory")
    p.add_argument("--out", required=True, help="JSON file of the results")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", dest="settings", metavar="JSON",
                   help=f"one setting: JSON overrides of {json.dumps(BASE)} (repeat; none: the base alone)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # like one rank
    g, rows = load_graph(a.data), []
    for text in a.settings or ["{}"]:
        s, t = {**BASE, **json.loads(text)}, time.time()
        accs = [100 * stage_wise(g, s, seed) for seed in a.seeds]
        rows.append({"setting": s, "test_mean": float(np.mean(accs)), "test_by_seed": accs})
        print(f"{text:40s} {np.mean(accs):6.2f}  {[round(x, 1) for x in accs]}  ({time.time() - t:.0f} s)", flush=True)
    Path(a.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
