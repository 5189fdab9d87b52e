"""Per-epoch metrics to metrics.jsonl and metrics.csv (and TensorBoard if installed)."""
from __future__ import annotations

import csv
import json
from pathlib import Path


def read_metrics(run_dir) -> list[dict]:
    """The rows of ``run_dir``/metrics.jsonl, one dict per line (blank lines skipped)."""
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]


class MetricsLog:
    def __init__(self, out_dir, enabled: bool = True):
        self.enabled = enabled
        self.rows: list[dict] = []
        self.out = Path(out_dir)
        self._tb = None
        if enabled:
            try:  # optional
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            except Exception:  # tensorboard not installed
                self._tb = None

    def keep_before(self, epoch: int) -> None:
        """On resume: drop the rows of epochs >= ``epoch`` (written after the
        checkpoint being resumed), so every epoch appears once; keep the
        earlier ones for metrics.csv."""
        path = self.out / "metrics.jsonl"
        if not self.enabled or not path.exists():
            return
        self.rows = [r for r in read_metrics(self.out) if r.get("epoch", -1) < epoch]
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        tmp.replace(path)

    def log(self, row: dict) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._tb.add_scalar(k, v, row["epoch"])

    def close(self) -> None:
        if not self.enabled or not self.rows:
            return
        keys = sorted({k for r in self.rows for k in r if not isinstance(r[k], dict)})
        with open(self.out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        if self._tb:
            self._tb.close()
