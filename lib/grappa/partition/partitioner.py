"""The offline MPI partitioner: raw layout -> HDF5 chunk shards + manifest.

Every rank streams its slice of the edge arrays and node arrays in blocks,
routes each item to the owner of its destination chunk (chunk c is owned by
rank c mod P) with MPI_Alltoallv, and the owner spills what it receives to
per-chunk temporary files (memory stays under --memory-budget). Owners then
sort each chunk canonically and write its shard. All output goes to a hidden
temporary directory that rank 0 renames once every rank has finished, so a
failed job never leaves a directory that looks complete.

Memory per rank: the exchange is bounded by the budget; writing one shard
holds that chunk's edges (about E / K of them) in memory.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grappa import __version__
from grappa.cli_util import checked_everywhere
from grappa.errors import InputError, environment_error
from grappa.faults import FaultPoints
from grappa.graph.node_checks import NodeFiles, check_has_training_nodes, check_node_rows
from grappa.graph.raw import RawGraph
from grappa.partition.assignment import SCHEMES, RandomAssignment, TableAssignment
from grappa.shards.format import MANIFEST_SCHEMA, ShardWriter, sha256_file, shard_name, write_manifest


@dataclass
class PartitionConfig:
    data: str
    out: str
    num_chunks: int
    method: str = "random"
    seed: int = 0
    super_nodes: int | None = None
    memory_budget_mb: int = 1024
    compression: str | None = None
    feature_dtype: str = "float32"  # the shards' features: float32 or float16 (half the disk and rank memory)
    overwrite: bool = False
    fail_after_shards: int = -1  # fault injection: rank 0 of the owners kills itself after N shards
    progress: bool = True


def read_rows(mm: np.memmap, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of a memory-mapped .npy read with plain file I/O: mapped
    pages would count toward (and grow) the rank's resident memory."""
    width = int(np.prod(mm.shape[1:], dtype=np.int64))
    count = max(hi - lo, 0) * width
    with open(mm.filename, "rb") as f:
        f.seek(mm.offset + lo * width * mm.dtype.itemsize)
        return np.fromfile(f, dtype=mm.dtype, count=count).reshape((max(hi - lo, 0),) + mm.shape[1:])


def sort_by_dst_src(pairs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) sorted by (dst, src): one sort of a packed int64 key when N < 2^31.5."""
    if n <= 3_037_000_499:  # dst * n + src < 2^63
        key = np.sort(pairs[:, 1] * n + pairs[:, 0])
        return key % n, key // n
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    return pairs[order, 0], pairs[order, 1]


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class PeerFailed(Exception):
    """Another rank reported bad input; this rank stops without a message of its own."""


class _Job:
    def __init__(self, cfg: PartitionConfig, comm):
        from mpi4py import MPI

        self.MPI = MPI
        self.cfg, self.comm = cfg, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.faults = FaultPoints.from_env(self.rank)  # tests: GRAPPA_FAULT=R:shard:N::enospc
        self.g = RawGraph(cfg.data).validate(check_values=False)
        self.n, self.e = self.g.info.num_nodes, self.g.info.num_edges
        self.k = cfg.num_chunks
        self.budget = budget = max(cfg.memory_budget_mb, 16) << 20
        # ~ 400 bytes per edge in flight: block copy, the Feistel permutation's
        # uint64 temporaries, sort order, send and receive buffers.
        self.block_edges = max(1 << 14, budget // 400)
        # Per node row in flight: id, chunk, label, split, sort order, each held
        # about three times (block, send buffer, receive buffer) plus features.
        row_bytes = 12 * self.g.info.num_features + 192
        self.block_nodes = max(1 << 10, budget // 2 // row_bytes)
        self.spill_limit = budget // 4

    # ------------------------------------------------------------ helpers
    def check_args(self) -> None:
        cfg = self.cfg
        if cfg.method not in SCHEMES:
            raise InputError("--method", f"unknown partition scheme {cfg.method!r}",
                             f"choose one of {', '.join(SCHEMES)}")
        if not 1 <= self.k <= self.n:
            raise InputError("--num-chunks", f"K={self.k} must be between 1 and the number of nodes ({self.n})")
        out = Path(cfg.out)
        if out.exists() and not cfg.overwrite:
            raise InputError(out, "output directory already exists", "pass --overwrite or choose another --out")

    def agree(self, local_error: InputError | None) -> None:
        """Collective: if any rank hit bad input, every rank stops; the lowest
        such rank raises its error (one message), the others ``PeerFailed``."""
        first = self.comm.allreduce(self.rank if local_error else self.size, op=self.MPI.MIN)
        if first == self.rank:
            raise local_error
        if first < self.size:
            raise PeerFailed()

    @staticmethod
    def disk(fn, *args, where: Path | None = None):
        """``(fn(*args), None)``, or ``(None, InputError)`` when a full, read-only or
        failing disk stopped it: the error every rank then agrees on, naming the
        file (or ``where``, for a write to an open file, whose error names none)."""
        try:
            return fn(*args), None
        except OSError as e:
            e.filename = e.filename or (str(where) if where else None)
            if (err := environment_error(e)) is None:
                raise
            return None, err

    def slice_of(self, total: int) -> tuple[int, int]:
        per = -(-total // self.size)
        lo = min(self.rank * per, total)
        return lo, min(lo + per, total)

    def exchange(self, arrays: list[np.ndarray], owner: np.ndarray, order_key=None) -> list[np.ndarray]:
        """Alltoallv each array's rows to ``owner`` ranks (same routing for all).
        With ``order_key`` (< K), rows for one owner are sent sorted by it."""
        key = owner if order_key is None else owner.astype(np.int64) * self.k + order_key
        # Small integer keys sort by radix in NumPy's stable sort.
        key = key.astype(np.int16) if self.size * self.k < 2**15 else key
        order = np.argsort(key, kind="stable")
        send_counts = np.bincount(owner, minlength=self.size).astype(np.int64)
        recv_counts = np.empty(self.size, np.int64)
        self.comm.Alltoall(send_counts, recv_counts)
        out = []
        for a in arrays:
            a = np.ascontiguousarray(a[order])
            width = int(np.prod(a.shape[1:], dtype=np.int64))
            flat = a.reshape(len(a), width) if a.ndim > 1 else a
            recv = np.empty((int(recv_counts.sum()),) + a.shape[1:], a.dtype)
            sc, rc = send_counts * width, recv_counts * width
            sd = np.concatenate([[0], np.cumsum(sc)[:-1]])
            rd = np.concatenate([[0], np.cumsum(rc)[:-1]])
            if a.dtype == np.float16:  # MPI has no portable half type: move the bits
                flat, recv = flat.view(np.uint16), recv.view(np.uint16)
            mpi_t = self.MPI._typedict[flat.dtype.char]
            self.comm.Alltoallv([flat, (sc, sd), mpi_t], [recv, (rc, rd), mpi_t])
            out.append(recv)
        return out

    # ------------------------------------------------------------ phases
    def assignment(self, tmp: Path):
        cfg = self.cfg
        table_of = SCHEMES[cfg.method]
        if table_of is None:  # streamed: any rank computes any node's chunk
            return RandomAssignment(self.n, self.k, cfg.seed)
        err = None
        if self.rank == 0:
            try:
                src, dst = self.g.load_edges()
                if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= self.n):
                    raise InputError(self.g.dir / "edges_src.npy", f"node ids out of range [0, {self.n})")
                table = np.asarray(table_of(src, dst, self.n, self.k, cfg.seed, cfg.super_nodes))
                if table.shape != (self.n,) or (len(table) and (table.min() < 0 or table.max() >= self.k)):
                    raise ValueError(f"partition scheme {cfg.method!r} returned no chunk in [0, {self.k}) "
                                     f"for each of the {self.n} nodes")
                err = self.disk(np.save, tmp / "node_chunk.npy", table.astype(np.int32))[1]
            except MemoryError:
                err = InputError(self.g.dir, f"graph too large for --method {cfg.method} in one process "
                                 f"({self.e} edges)", "use --method random, which streams")
            except InputError as e:
                err = e
        self.agree(err)
        return TableAssignment(np.load(tmp / "node_chunk.npy", mmap_mode="r"))

    def route_edges(self, assign, spill: Path, bar) -> None:
        lo, hi = self.slice_of(self.e)
        rounds = self.comm.allreduce(-(-(hi - lo) // self.block_edges), op=self.MPI.MAX)
        buf, buffered, err = [], 0, None
        for i in range(rounds):
            a, b = min(lo + i * self.block_edges, hi), min(lo + (i + 1) * self.block_edges, hi)
            pairs = np.empty((b - a, 2), np.int64)
            pairs[:, 0] = read_rows(self.g.src, a, b)
            pairs[:, 1] = read_rows(self.g.dst, a, b)
            for col, name in ((0, "edges_src.npy"), (1, "edges_dst.npy")):
                v = pairs[:, col]
                if len(v) and (v.min() < 0 or v.max() >= self.n):
                    bad = int(v[(v < 0) | (v >= self.n)][0])
                    err = err or InputError(self.g.dir / name, f"node id {bad} out of range [0, {self.n})",
                                            "node ids must be 0..N-1")
            self.agree(err)
            chunk = assign(pairs[:, 1])
            # Sorted by (owner, chunk): each sender's run arrives chunk-sorted,
            # so the owner writes segments without sorting again.
            rpairs, rchunk = self.exchange([pairs, chunk], chunk % self.size, order_key=chunk)
            buf.append((rchunk, rpairs))
            buffered += rpairs.nbytes + rchunk.nbytes
            if buffered > self.spill_limit:
                err = self.disk(self._flush_edges, buf, spill, where=spill)[1]  # agreed on with the next round's checks
                buf, buffered = [], 0
            bar.update((b - a) * self.size)  # approximate: slices are equal up to one block
        self.agree(err or self.disk(self._flush_edges, buf, spill, where=spill)[1])

    def _flush_edges(self, buf, spill: Path) -> None:
        """Append buffered edges to per-chunk spill files; each buffer holds P chunk-sorted runs."""
        files = {}
        try:
            for chunk, pairs in buf:
                starts = np.flatnonzero(np.diff(chunk, prepend=-1))
                ends = np.append(starts[1:], len(chunk))
                for s, e in zip(starts.tolist(), ends.tolist()):
                    c = int(chunk[s])
                    f = files.get(c) or files.setdefault(c, open(spill / f"edges-{c}.bin", "ab"))
                    f.write(pairs[s:e].tobytes())
        finally:
            for f in files.values():
                f.close()

    def route_nodes(self, assign, spill: Path, node_chunk_path: Path) -> None:
        """Route each node row to its chunk's owner, checking every block as
        import and validate do (``grappa.graph.node_checks``)."""
        lo, hi = self.slice_of(self.n)
        rounds = self.comm.allreduce(-(-(hi - lo) // self.block_nodes), op=self.MPI.MAX)
        table = np.load(node_chunk_path, mmap_mode="r+") if SCHEMES[self.cfg.method] is None else None
        info, where = self.g.info, NodeFiles.raw(self.g.dir)
        train, err = 0, None
        for i in range(rounds):
            a, b = min(lo + i * self.block_nodes, hi), min(lo + (i + 1) * self.block_nodes, hi)
            ids = np.arange(a, b, dtype=np.int64)
            x, y = read_rows(self.g.x, a, b).astype(np.float32, copy=False), read_rows(self.g.y, a, b)
            split = read_rows(self.g.split, a, b)
            try:
                train += check_node_rows(where, x, y, split, info.task, info.num_classes, a)
                x = self._stored_features(x)
            except InputError as e:
                err = err or e
            self.agree(err)  # this block's values, or the last block's spill write
            y = y.astype(np.float32 if info.task == "multilabel" else np.int64, copy=False)  # as the shards store it
            chunk = assign(ids)
            if table is not None:
                table[a:b] = chunk
            routed = self.exchange([ids, x, y, split.astype(np.uint8, copy=False), chunk], chunk % self.size)
            err = self.disk(self._spill_nodes, spill, *routed, where=spill)[1]
        self.agree(err)
        if table is not None:
            table.flush()
        checked_everywhere(check_has_training_nodes, where, self.n, self.comm.allreduce(train, op=self.MPI.SUM))

    def _stored_features(self, x: np.ndarray) -> np.ndarray:
        """``x`` at the shards' feature dtype; values beyond its range are refused."""
        if self.cfg.feature_dtype == "float32":
            return x
        x = x.astype(self.cfg.feature_dtype)
        if not np.isfinite(x).all():
            raise InputError(self.g.dir / "x.npy", f"features exceed {self.cfg.feature_dtype}'s range "
                             f"(|x| > {float(np.finfo(x.dtype).max):g})",
                             "partition with --feature-dtype float32, or rescale the features")
        return x

    @staticmethod
    def _spill_nodes(spill: Path, rids, rx, ry, rsplit, rchunk) -> None:
        """Append the received rows to their chunks' spill files."""
        order = np.argsort(rchunk, kind="stable")
        rchunk = rchunk[order]
        arrays = {name: arr[order] for name, arr in (("ids", rids), ("x", rx), ("y", ry), ("split", rsplit))}
        starts = np.flatnonzero(np.diff(rchunk, prepend=-1))
        for s, e in zip(starts.tolist(), np.append(starts[1:], len(rchunk)).tolist()):
            c = int(rchunk[s])
            for name, arr in arrays.items():
                with open(spill / f"nodes-{c}.{name}.bin", "ab") as f:
                    f.write(arr[s:e].tobytes())

    def write_shards(self, assign, spill: Path, tmp: Path) -> list[dict]:
        info = self.g.info
        f = info.num_features
        ydtype = np.float32 if info.task == "multilabel" else np.int64
        yshape = (info.num_classes,) if info.task == "multilabel" else ()
        entries = []
        for written, c in enumerate(range(self.rank, self.k, self.size)):
            if self.cfg.fail_after_shards >= 0 and self.rank == self.size - 1 \
                    and written == self.cfg.fail_after_shards:
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection: a rank dies mid-write

            def load(name, dtype, shape=(), rows=-1, c=c):
                p = spill / f"nodes-{c}.{name}.bin"
                a = np.fromfile(p, dtype=dtype) if p.exists() else np.zeros(0, dtype)
                return a.reshape((rows,) + shape)  # explicit rows: F may be 0

            ids = load("ids", np.int64)
            rows = len(ids)
            order = np.argsort(ids)
            ids, x = ids[order], load("x", np.dtype(self.cfg.feature_dtype), (f,), rows)[order]
            y, split = load("y", ydtype, yshape, rows)[order], load("split", np.uint8, (), rows)[order]
            ep = spill / f"edges-{c}.bin"
            m = ep.stat().st_size // 16 if ep.exists() else 0
            attrs = {"chunk": c, "num_chunks": self.k, "num_nodes": self.n, "num_features": f,
                     "num_classes": info.num_classes, "task": info.task, "method": self.cfg.method,
                     "seed": self.cfg.seed}
            path = tmp / shard_name(c)
            self.faults.hit("shard", path)
            w = ShardWriter(path, attrs, {"global_id": ids, "x": x, "y": y, "split": split}, m,
                            compression=self.cfg.compression)
            cut = 0
            for src_all, dst_all in self.sorted_edge_batches(ep, ids, m, spill):
                for lo in range(0, len(src_all), self.block_edges):  # bound the temporaries
                    src, dst = src_all[lo:lo + self.block_edges], dst_all[lo:lo + self.block_edges]
                    src_chunk = assign(src)
                    cut += int((src_chunk != c).sum())
                    w.append_edges(np.searchsorted(ids, dst), src, src_chunk)  # sorted queries: a merge
            w.close()
            for name in ("ids", "x", "y", "split"):
                (spill / f"nodes-{c}.{name}.bin").unlink(missing_ok=True)
            ep.unlink(missing_ok=True)
            entries.append({"chunk": c, "file": path.name, "num_nodes": len(ids), "num_edges": m,
                            "cut_edges": cut, "size": path.stat().st_size,
                            "sha256": sha256_file(path)})
        return entries

    def sorted_edge_batches(self, ep: Path, ids: np.ndarray, m: int, spill: Path):
        """Yield (src, dst) batches that together are the chunk's edges sorted by
        (dst, src). In memory when the sort's copies fit half the budget;
        otherwise one pass buckets them by destination range into files and
        each bucket is sorted alone (an external sort)."""
        if m == 0:
            return
        # The packed-key sort holds ~5 int64 copies of each edge (pairs, key,
        # sorted key, src, dst): 80 bytes; keep that under half the budget.
        sort_budget = self.budget // 2
        if m * 80 <= sort_budget:
            yield sort_by_dst_src(np.fromfile(ep, dtype=np.int64).reshape(-1, 2), self.n)
            return
        buckets = -(-m * 80 // sort_budget) * 2  # x2: slack for degree skew between buckets
        bounds = ids[np.linspace(0, len(ids), buckets + 1).astype(np.int64)[1:-1]]
        files = [open(spill / f"bucket-{ep.stem}-{r}.bin", "wb") for r in range(buckets)]
        try:
            with open(ep, "rb") as f:
                while len(block := np.fromfile(f, dtype=np.int64, count=2 * self.block_edges)):
                    block = block.reshape(-1, 2)
                    b = np.searchsorted(bounds, block[:, 1], side="right").astype(np.int32)
                    order = np.argsort(b, kind="stable")
                    block, b = block[order], b[order]
                    starts = np.flatnonzero(np.diff(b, prepend=-1))
                    for s0, s1 in zip(starts.tolist(), np.append(starts[1:], len(b)).tolist()):
                        files[int(b[s0])].write(block[s0:s1].tobytes())
        finally:
            for fh in files:
                fh.close()
        ep.unlink()
        for r in range(buckets):
            p = spill / f"bucket-{ep.stem}-{r}.bin"
            part = np.fromfile(p, dtype=np.int64).reshape(-1, 2)
            p.unlink()
            if len(part):
                yield sort_by_dst_src(part, self.n)

    # ------------------------------------------------------------ driver
    def manifest(self, chunks: list[dict], node_chunk: Path, phases_all: list, rss_all: list, t0: float) -> dict:
        """The dataset's manifest (rank 0): the chunks' entries, the files
        with their checksums, and how the partition was made."""
        cfg, info = self.cfg, self.g.info
        files = [{"name": e["file"], "size": e["size"], "sha256": e["sha256"]} for e in chunks]
        files.append({"name": node_chunk.name, "size": node_chunk.stat().st_size, "sha256": sha256_file(node_chunk)})
        return {
            "schema": MANIFEST_SCHEMA, "shard_schema": "grappa-shard/1",
            "num_chunks": self.k, "num_nodes": self.n, "num_edges": sum(e["num_edges"] for e in chunks),
            "num_features": info.num_features, "feature_dtype": cfg.feature_dtype,
            "num_classes": info.num_classes, "task": info.task,
            "method": cfg.method, "seed": cfg.seed, "super_nodes": cfg.super_nodes,
            "edge_cut_fraction": sum(e["cut_edges"] for e in chunks) / max(self.e, 1),
            "graph": {"name": info.name, "source": str(Path(cfg.data).resolve()), "provenance": info.provenance},
            "chunks": [{k: e[k] for k in ("chunk", "file", "num_nodes", "num_edges", "cut_edges")} for e in chunks],
            "files": files,
            "created_by": {"grappa": __version__, "ranks": self.size, "memory_budget_mb": cfg.memory_budget_mb,
                           "peak_rss_mb_per_rank": [round(r, 1) for r in rss_all],
                           "peak_rss_mb_after_phase": phases_all, "wall_s": time.perf_counter() - t0},
        }

    def run(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        t0 = time.perf_counter()
        out = Path(cfg.out)
        tmp = out.parent / f".{out.name}.tmp-partition"
        spill = tmp / "spill"
        ok = False
        try:  # a full, read-only or failing disk anywhere: one line from one rank, nothing left
            self.agree(self.disk(self._start, tmp)[1] if self.rank == 0 else None)
            assign = self.assignment(tmp)
            bar = tqdm(total=self.e, unit="edge", unit_scale=True, desc="route edges",
                       disable=not cfg.progress or self.rank != 0)
            phases = {"assignment": _peak_rss_mb()}
            self.route_edges(assign, spill, bar)
            bar.close()
            phases["route_edges"] = _peak_rss_mb()
            self.route_nodes(assign, spill, tmp / "node_chunk.npy")
            phases["route_nodes"] = _peak_rss_mb()
            self.comm.Barrier()  # all spills complete
            entries, err = self.disk(self.write_shards, assign, spill, tmp, where=tmp)
            self.agree(err)
            phases["write_shards"] = rss_mb = _peak_rss_mb()
            phases_all = self.comm.gather(phases, root=0)
            gathered = self.comm.gather(entries, root=0)
            rss_all = self.comm.gather(rss_mb, root=0)
            manifest = err = None
            if self.rank == 0:
                chunks = sorted((e for part in gathered for e in part), key=lambda e: e["chunk"])
                manifest = self.manifest(chunks, tmp / "node_chunk.npy", phases_all, rss_all, t0)
                err = self.disk(self._finish, tmp, out, manifest)[1]
            self.agree(err)
            ok = True
            return self.comm.bcast(manifest, root=0)
        finally:
            if not ok and self.rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)

    def _start(self, tmp: Path) -> None:
        """Rank 0: the temporary output directory, its spill folder and an empty node map."""
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "spill").mkdir(parents=True)
        np.lib.format.open_memmap(tmp / "node_chunk.npy", "w+", np.int32, (self.n,)).flush()

    def _finish(self, tmp: Path, out: Path, manifest: dict) -> None:
        """Rank 0: the manifest written, then the whole directory renamed into place."""
        if manifest["num_edges"] != self.e:
            raise RuntimeError(f"internal error: wrote {manifest['num_edges']} of {self.e} edges")
        shutil.rmtree(tmp / "spill")
        write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)


def partition(cfg: PartitionConfig, comm=None) -> dict:
    """Run the partitioner on ``comm`` (default MPI.COMM_WORLD); returns the manifest."""
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    job = checked_everywhere(_Job, cfg, comm)  # the raw graph's shapes and the flags: every rank alike
    checked_everywhere(job.check_args)
    return job.run()
