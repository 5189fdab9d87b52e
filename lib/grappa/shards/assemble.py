"""Build a rank's local subgraph from its chunk set.

Nodes: the chunks' nodes, concatenated in chunk order (local ids 0..n-1).
Edges: only those whose source chunk is also in the set (isolation: edges
from other chunks are dropped). Coverage of node v:

    a_v = (local in-degree + 1) / (global in-degree + 1)

(the +1 is the self-loop every GNN layer adds; in-degree counts it once),
so a_v is in (0, 1] and equals 1 when no in-edge was dropped.

``halo_hops=1`` also keeps the dropped edges and reads the missing sources'
features from their shards (file I/O at repartition time, no network): the
extra nodes are appended after the owned ones and never used as seeds.
``halo_hops=h > 1`` also reads, from the shards, the in-edges of every node
within h - 1 hops upstream of the owned *training* nodes, and the features
of their sources: an h-layer model's outputs at the training nodes are then
exact (every node it reads at hop k < h has all its in-edges). Local ids:
owned nodes, then the halo nodes with all their in-edges (``num_complete``
counts both), then the feature-only halo.

When that whole halo does not fit its budget, a *partial* one can
(``sampled_halo``): each hop reads only up to k in-edges of each node, drawn
from its whole in-edge list, along the training nodes' upstream reach. For a
neighbour-sampled model with caps at its fan-outs it is the whole halo as
the sampler sees it, at a fraction of the bytes (docs/BENCHMARKS.md).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from grappa.errors import InputError
from grappa.graph.csr import CSR, index_dtype
from grappa.graph.raw import SPLIT_TRAIN
from grappa.id_sets import setdiff, union, unique
from grappa.sampling import sample_ranges
from grappa.shards.format import feature_dtype, load_manifest, open_shard_file


@dataclass
class LocalGraph:
    chunks: list[int]
    global_id: np.ndarray  # [n_total] owned nodes first, then halo nodes
    num_owned: int
    x: torch.Tensor
    y: torch.Tensor
    split: np.ndarray  # [num_owned]
    global_in_degree: np.ndarray  # [n_total]
    csr: CSR  # local, by destination (destinations are owned nodes)
    coverage: np.ndarray  # [num_owned]
    # every in-edge of the owned nodes (for exact evaluation): sources global ids;
    # None once ``drop_in_edges`` ran (an evaluator holds what it needs of them)
    full_src_global: np.ndarray | None
    full_dst_local: np.ndarray | None
    full_src_chunk: np.ndarray | None
    num_complete: int = -1  # the first num_complete nodes have all their in-edges (-1: num_owned)
    halo_hops: int = 0  # the hops of halo read (within the budget)
    bytes_read: int = 0  # from the shards, the set's own and the halo's
    halo_caps: tuple[int, ...] | None = None  # per hop, the in-edges read of each node (None: all, -1: all)
    halo_read: list = field(default_factory=list)  # per hop read: (nodes added, edges added, bytes they hold)

    def __post_init__(self):
        if self.num_complete < 0:
            self.num_complete = self.num_owned

    @property
    def edge_index(self) -> torch.Tensor:
        return self.csr.edge_index()

    def drop_in_edges(self) -> None:
        """Free the per-in-edge arrays (14 B per edge) once nothing reads them."""
        self.full_src_global = self.full_dst_local = self.full_src_chunk = None


def chunk_mask(num_chunks: int, chunks) -> np.ndarray:
    """bool[num_chunks], True for ``chunks``: index it with a source-chunk array."""
    member = np.zeros(num_chunks, bool)
    member[chunks] = True
    return member


def _labels(y: np.ndarray) -> torch.Tensor:
    """Multilabel rows stay float32; class ids become int64."""
    return torch.from_numpy(y.astype(np.float32 if y.dtype == np.float32 else np.int64, copy=False))


def _position_map(gid: np.ndarray, num_nodes: int) -> np.ndarray:
    """Global id -> position in ``gid``, dense over the graph's ids (4 B per
    node of the graph, as the evaluator's plan holds): one lookup per edge, not
    a binary search over the set's sorted ids that misses the cache on random
    sources (a load 4x faster: docs/BENCHMARKS.md)."""
    pos = np.zeros(num_nodes, index_dtype(len(gid)))
    pos[gid] = np.arange(len(gid), dtype=pos.dtype)
    return pos


# What the halo holds, for its budget: a node's features, id and degree; an
# edge's two int64 ids while it is assembled, then its CSR entry.
HALO_EDGE_BYTES = 24


def halo_node_bytes(num_features: int, feature_bytes: int = 4) -> int:
    return feature_bytes * num_features + 24


def _node_bytes(m: dict) -> int:
    return halo_node_bytes(m["num_features"], feature_dtype(m).itemsize)


def load_chunk_set(dataset, chunks: list[int], halo_hops: int = 0, halo_budget_bytes: float = np.inf,
                   hold_in_edges: bool = True, sampled: tuple[tuple[int, ...], ...] = (),
                   rng: np.random.Generator | None = None, whole: bool = True) -> LocalGraph:
    """The local graph of ``chunks``; ``halo_hops`` as in the module docstring,
    each hop added only while the halo stays within ``halo_budget_bytes``
    (``LocalGraph.halo_hops`` says how many were). ``hold_in_edges=False``:
    when no halo hop is read, the set's in-edges are streamed from the shards
    and only the isolated CSR is kept (``full_*`` are None; an evaluator
    streams them again: ``HaloPlan.from_shards``).

    ``sampled``: when the whole halo's hops do not all fit, partial halos to
    try in order (``sampled_halo``), each a tuple of per-hop in-edge caps
    (-1: every in-edge) drawn with ``rng``: the first whose hops all fit is
    kept, else the last with the hops that fit. ``whole=False`` goes to them
    without trying the whole halo."""
    d = Path(dataset)
    m = load_manifest(d)
    if not chunks:
        return empty_local_graph(m)
    reader = ShardRows(d, m)
    lg = _load_whole(reader, chunks, halo_hops if whole or not sampled else 0, halo_budget_bytes, hold_in_edges)
    if not sampled or lg.halo_hops >= halo_hops or np.all(lg.coverage >= 1):  # all read, or nothing to read
        return lg
    if lg.halo_hops:  # a partial whole halo: start again from the isolated set
        del lg
        lg = _load_whole(reader, chunks, 0, halo_budget_bytes, hold_in_edges)
    rng = np.random.default_rng(0) if rng is None else rng
    for i, caps in enumerate(sampled):
        part = sampled_halo(reader, lg, caps[:halo_hops], halo_budget_bytes, rng)
        if part.halo_hops == halo_hops or i == len(sampled) - 1:
            return part if part.halo_hops else lg
    return lg


def _load_whole(reader: ShardRows, chunks: list[int], halo_hops: int, halo_budget_bytes: float,
                hold_in_edges: bool) -> LocalGraph:
    """``load_chunk_set`` with the whole halo (every in-edge of each hop), or none."""
    m = reader.m
    if not hold_in_edges:
        lean = _load_isolated(reader, chunks, halo_hops, halo_budget_bytes)
        if lean is not None:
            return lean
    gid, x, y, split, gdeg, src_g, src_c, dst = _read_set(reader, chunks)
    n = len(gid)
    inside = chunk_mask(len(m["chunks"]), chunks)[src_c]
    pos = _position_map(gid, m["num_nodes"])
    src_local, dst_in = pos[src_g[inside]].astype(np.int64), dst[inside]
    all_gid, all_x, all_deg, complete, hops = gid, x, gdeg, n, 0
    if halo_hops and not inside.all():
        complete_gid, e_src, e_dst, per_hop = _upstream_halo(reader, gid, src_g, dst, split, inside, halo_hops,
                                                             halo_budget_bytes)
        hops = len(per_hop)
    if hops:
        missing = setdiff(np.concatenate([src_g[~inside], e_src]), np.concatenate([gid, complete_gid]))
        halo_gid = np.concatenate([complete_gid, missing])  # each part sorted: complete first
        hx, hdeg = reader.features(halo_gid)
        all_gid, all_x, all_deg = np.concatenate([gid, halo_gid]), np.concatenate([x, hx]), np.concatenate([gdeg, hdeg])
        complete = n + len(complete_gid)
        del pos  # one map of the graph's ids at a time
        pos = _position_map(all_gid, m["num_nodes"])
        src_local = np.concatenate([src_local, pos[src_g[~inside]], pos[e_src]])
        dst_in = np.concatenate([dst_in, dst[~inside], pos[e_dst]])
    csr = CSR.from_edges(src_local, dst_in, len(all_gid))
    coverage = (csr.in_degree()[:n] + 1) / (gdeg + 1)
    return LocalGraph(chunks=list(chunks), global_id=all_gid, num_owned=n, x=torch.from_numpy(all_x),
                      y=_labels(y), split=split,
                      global_in_degree=all_deg, csr=csr, coverage=coverage,
                      full_src_global=src_g, full_dst_local=dst, full_src_chunk=src_c, num_complete=complete,
                      halo_hops=hops, bytes_read=reader.bytes_read, halo_read=per_hop if hops else [])


NODE_ARRAYS = ("global_id", "x", "y", "split", "in_degree")


def _read_nodes(reader: ShardRows, chunks: list[int], keys: tuple[str, ...] = NODE_ARRAYS
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """The set's node arrays named in ``keys``, concatenated in chunk order
    and read straight into place (no whole-shard copy); and the node and edge
    offsets of each chunk."""
    m, sizes = reader.m, []
    for c in chunks:
        with _open_shard(reader.path(c)) as f:
            y = f["nodes/y"]
            sizes.append((len(f["nodes/global_id"]), len(f["edges/src_global"]), y.dtype, y.shape[1:]))
    n_at, e_at = (np.cumsum([0] + [s[i] for s in sizes]) for i in (0, 1))
    n = int(n_at[-1])
    shapes = {"global_id": ((n,), np.int64), "x": ((n, m["num_features"]), feature_dtype(m)),
              "y": ((n, *sizes[0][3]), sizes[0][2]), "split": ((n,), np.uint8), "in_degree": ((n,), np.int64)}
    node = {k: np.empty(*shapes[k]) for k in keys}
    for i, c in enumerate(chunks):
        with _open_shard(reader.path(c)) as f:
            for k, a in node.items():
                reader.read_into(f[f"nodes/{k}"], a[n_at[i]:n_at[i + 1]])
    return node, n_at, e_at


def _read_set(reader: ShardRows, chunks: list[int]):
    """The set's node arrays and in-edges, each shard's datasets read
    straight into the held arrays (HDF5 converts the types). Per in-edge the
    narrowest types that fit, held for the whole ownership: 14 B, not the 20 B stored."""
    node, n_at, e_at = _read_nodes(reader, chunks)
    e, n = int(e_at[-1]), int(n_at[-1])
    chunk_t = index_dtype(len(reader.m["chunks"]), np.int16)
    edge = {"src_global": np.empty(e, np.int64), "src_chunk": np.empty(e, chunk_t),
            "dst_local": np.empty(e, index_dtype(n, np.int16))}
    for i, c in enumerate(chunks):
        with _open_shard(reader.path(c)) as f:
            for k, a in edge.items():
                reader.read_into(f[f"edges/{k}"], a[e_at[i]:e_at[i + 1]])
        edge["dst_local"][e_at[i]:e_at[i + 1]] += int(n_at[i])
    return (*(node[k] for k in ("global_id", "x", "y", "split", "in_degree")),
            *(edge[k] for k in ("src_global", "src_chunk", "dst_local")))


EDGE_BLOCK = 1 << 22  # in-edges read at once when they are streamed (80 MB of stored columns)


IN_EDGE_COLUMNS = ("dst_local", "src_global", "src_chunk")


def in_edge_blocks(reader: ShardRows, chunks: list[int], columns: tuple[str, ...] = IN_EDGE_COLUMNS):
    """The set's in-edges in order, ``reader.edge_block`` at a time: the
    arrays of ``columns`` (``dst_local`` in the set's local ids), only those
    read. Bounded memory: never more than a block of a shard."""
    offset, block = 0, reader.edge_block
    for c in chunks:
        with _open_shard(reader.path(c)) as f:
            e = f["edges/src_global"].shape[0]
            for lo in range(0, e, block):
                hi = min(e, lo + block)
                yield tuple(reader._read(f[f"edges/{k}"], lo, hi) + (offset if k == "dst_local" else 0)
                            for k in columns)
            offset += f["nodes/global_id"].shape[0]


def _load_isolated(reader: ShardRows, chunks: list[int], hops: int, budget: float) -> LocalGraph | None:
    """The isolated local graph without holding the set's in-edges: they are
    streamed, and only those whose source is in the set are kept, already in
    CSR order (the shards store them by destination). The same pass counts
    the halo's first hop as ``_upstream_halo`` does: None if ``hops`` asks
    for a halo and that hop fits ``budget`` (the caller then reads it)."""
    # the features last: a halo that fits reads the set again, and they are most of its node bytes
    node, _, _ = _read_nodes(reader, chunks, tuple(k for k in NODE_ARRAYS if k != "x"))
    gid, n = node["global_id"], len(node["global_id"])
    pos = _position_map(gid, reader.m["num_nodes"])  # int32 sources: 4 B per kept edge
    member = chunk_mask(len(reader.m["chunks"]), chunks)
    missing, cut = np.zeros(reader.m["num_nodes"] if hops else 0, bool), 0
    counts, sources = np.zeros(n, np.int64), []
    for dst, src_g, src_c in in_edge_blocks(reader, chunks):
        inside = member[src_c]
        sources.append(pos[src_g[inside]])
        counts += np.bincount(dst[inside], minlength=n)
        if hops:
            missing[src_g[~inside]] = True
            cut += len(inside) - int(inside.sum())
    if hops and int(missing.sum()) * _node_bytes(reader.m) + cut * HALO_EDGE_BYTES <= budget:
        return None
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    del missing, pos
    node.update(_read_nodes(reader, chunks, ("x",))[0])
    csr = CSR(indptr, np.concatenate(sources) if sources else np.zeros(0, index_dtype(n)))
    del sources
    return LocalGraph(chunks=list(chunks), global_id=gid, num_owned=n, x=torch.from_numpy(node["x"]),
                      y=_labels(node["y"]), split=node["split"], global_in_degree=node["in_degree"], csr=csr,
                      coverage=(counts + 1) / (node["in_degree"] + 1), full_src_global=None, full_dst_local=None,
                      full_src_chunk=None, bytes_read=reader.bytes_read)


@contextmanager
def _open_shard(path: Path):
    try:
        with open_shard_file(path) as f:
            yield f
    except (OSError, KeyError) as e:
        raise InputError(path, f"cannot read shard ({e})", "re-run the partitioner") from e


def _upstream_halo(reader: ShardRows, gid, src_g, dst, split, inside, hops: int, budget: float):
    """(complete, e_src, e_dst, per hop): the halo nodes within hops - 1 hops
    upstream of the owned training nodes (sorted global ids) and their
    in-edges read from the shards (global source, global destination), and
    per hop added (nodes, edges, bytes). A hop that would take the halo past
    ``budget`` bytes is not added."""
    owned, node_b = np.sort(gid), _node_bytes(reader.m)
    complete, e_src, e_dst = (np.zeros(0, np.int64) for _ in range(3))
    # hop 1's cost before any of it is read; a mask, not a copy of the cut edges (a large set has millions)
    missing = np.zeros(reader.m["num_nodes"], bool)
    missing[src_g] = True
    missing[gid] = False
    n_missing, n_cut = int(missing.sum()), int((~inside).sum())
    del missing
    cost = n_missing * node_b + n_cut * HALO_EDGE_BYTES
    if cost > budget:
        return complete, e_src, e_dst, []
    per_hop = [(n_missing, n_cut, cost)]
    frontier = gid[np.flatnonzero(split == SPLIT_TRAIN)]
    for _ in range(1, hops):
        # in-neighbours of the frontier: from the owned in-edges and from those read so far
        nbrs = union(src_g[np.isin(dst, np.flatnonzero(np.isin(gid, frontier)))], e_src[np.isin(e_dst, frontier)])
        new = np.setdiff1d(np.setdiff1d(nbrs, owned, assume_unique=True), complete, assume_unique=True)
        if not len(new):
            per_hop += [(0, 0, 0)] * (hops - len(per_hop))
            break
        deg = reader.degrees(new)
        if cost + int(deg.sum()) * HALO_EDGE_BYTES > budget:
            break
        s, t = reader.in_edges(new, deg=deg)
        sources = setdiff(s, np.concatenate([owned, complete, new]))
        added = len(s) * HALO_EDGE_BYTES + len(sources) * node_b  # an upper bound: some were already there
        if cost + added > budget:
            break
        cost += added
        per_hop.append((len(sources), len(s), added))
        e_src, e_dst = np.concatenate([e_src, s]), np.concatenate([e_dst, t])
        complete, frontier = union(complete, new), nbrs
    return complete, e_src, e_dst, per_hop


def sampled_halo(reader: ShardRows, lg: LocalGraph, caps: tuple[int, ...], budget: float,
                 rng: np.random.Generator, seeds: np.ndarray | None = None) -> LocalGraph:
    """``lg`` (an isolated set) with a partial halo, read hop by hop while it
    stays within ``budget`` bytes: hop h reads up to ``caps[h]`` in-edges
    (-1: all) of each node h hops upstream of the training nodes (or of
    ``seeds``, local ids of owned nodes) through the edges read so far,
    drawn without replacement from its *whole* in-edge list in the shards,
    and the features of their sources. A drawn row
    replaces the node's isolated one; a uniform draw of a node's in-edges is
    a uniform draw of its neighbourhood, so its coverage becomes 1. With
    caps of at least the fan-outs, a sampler's draw from the drawn rows is a
    draw from the whole graph's (fixed for as long as the set is held).
    Local ids: owned nodes, then halo nodes with drawn rows, then feature-only."""
    n, num_nodes, node_b = lg.num_owned, reader.m["num_nodes"], _node_bytes(reader.m)
    gid = lg.global_id[:n]
    # have: features held; reached: this hop's sources (a mask, not np.unique: a group's hop has millions)
    owned, have, drawn, reached = (np.zeros(num_nodes, bool) for _ in range(4))
    owned[gid] = have[gid] = True
    frontier = gid[lg.split == SPLIT_TRAIN] if seeds is None else unique(gid[seeds])
    cost, per_hop, e_src, e_dst = 0, [], [], []
    for k in caps:
        new = np.sort(frontier[~drawn[frontier]])
        if not len(new):
            per_hop += [(0, 0, 0)] * (len(caps) - len(per_hop))
            break
        deg = reader.degrees(new)
        if cost + int((deg if k < 0 else np.minimum(deg, k)).sum()) * HALO_EDGE_BYTES > budget:
            break
        s, t = reader.in_edges(new, k, rng, deg)
        reached[s] = True
        fresh = np.flatnonzero(reached & ~have)
        added = len(s) * HALO_EDGE_BYTES + len(fresh) * node_b
        if cost + added > budget:
            break
        cost += added
        per_hop.append((len(fresh), len(s), added))
        have[fresh], drawn[new] = True, True
        e_src.append(s)
        e_dst.append(t)
        frontier = np.flatnonzero(reached)
        reached[frontier] = False
    s = t = None  # the lists hold the hops kept; a hop over the budget goes now
    if not per_hop:
        return lg
    halo_gid = np.concatenate([np.flatnonzero(drawn & ~owned), np.flatnonzero(have & ~owned & ~drawn)])
    del owned, have, reached
    x = np.empty((n + len(halo_gid), lg.x.shape[1]), feature_dtype(reader.m))  # features read in place
    x[:n] = lg.x.numpy()[:n]
    hdeg = reader.features(halo_gid, out=x[n:])[1]
    all_gid = np.concatenate([gid, halo_gid])
    pos = _position_map(all_gid, num_nodes)
    csr = _drawn_rows_csr(lg.csr, drawn[gid], pos, e_src, e_dst, len(all_gid))
    coverage = np.where(drawn[gid], 1.0, lg.coverage)
    return replace(lg, global_id=all_gid, x=torch.from_numpy(x),
                   global_in_degree=np.concatenate([lg.global_in_degree[:n], hdeg]), csr=csr, coverage=coverage,
                   num_complete=n, halo_hops=len(per_hop), bytes_read=reader.bytes_read, halo_caps=tuple(caps),
                   halo_read=per_hop)


def _drawn_rows_csr(csr: CSR, drawn_owned: np.ndarray, pos: np.ndarray, e_src: list, e_dst: list,
                    num_nodes: int) -> CSR:
    """The isolated rows (``csr``) of the owned nodes not drawn, and the drawn rows (``e_src``/``e_dst``
    per hop, global ids, mapped to local ones by ``pos``; the lists are emptied as they are copied): each
    side one buffer filled in place, not concatenated copies (a group's halo holds millions of edges)."""
    dst_l = csr.dst_of_edges()
    keep = ~drawn_owned[dst_l]
    kept = int(keep.sum())
    src = np.empty(kept + sum(map(len, e_src)), np.int64)
    dst = np.empty_like(src)
    src[:kept], dst[:kept] = csr.indices[keep], dst_l[keep]
    del dst_l, keep
    at = kept
    while e_src:
        s, t = e_src.pop(0), e_dst.pop(0)
        src[at:at + len(s)], dst[at:at + len(s)] = pos[s], pos[t]
        at += len(s)
    return CSR.from_edges(src, dst, num_nodes)


def empty_local_graph(m: dict) -> LocalGraph:
    """No nodes (LLCG's dedicated server rank): every array empty, shapes kept."""
    none = np.zeros(0, np.int64)
    y = torch.zeros((0, m["num_classes"]), dtype=torch.float32) if m["task"] == "multilabel" else \
        torch.zeros(0, dtype=torch.int64)
    x = torch.from_numpy(np.zeros((0, m["num_features"]), feature_dtype(m)))
    return LocalGraph(chunks=[], global_id=none, num_owned=0, x=x, y=y,
                      split=np.zeros(0, np.uint8), global_in_degree=none, csr=CSR.from_edges(none, none, 0),
                      coverage=np.zeros(0), full_src_global=none, full_dst_local=none,
                      full_src_chunk=np.zeros(0, np.int32))


SLAB_BYTES = 8 << 20  # what ShardRows reads at a time of a dataset's wanted rows


def gather_rows(dataset, rows: np.ndarray, max_span: float = float("inf")) -> tuple[np.ndarray, int]:
    """(``dataset[rows]``, the bytes read), rows in any order, read a slab of at most ``SLAB_BYTES`` at a
    time, only slabs holding a wanted row, each from its first wanted row to its last: not the range from
    the first wanted row to the last (a group's hop wants rows all over a shard: 48 MB of sources a shard
    at 96M edges). A slab whose span is over ``max_span`` rows per wanted row is read row by row instead
    (h5py's selection: it reads only what is wanted, but costs as much a row as a span of about 17)."""
    out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    nbytes = 0
    if not len(rows):
        return out, nbytes
    per = max(1, SLAB_BYTES // max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:]))))
    slab = rows // per
    for j in np.flatnonzero(np.bincount(slab)):
        m = np.flatnonzero(slab == j)
        lo, hi = int(rows[m].min()), int(rows[m].max()) + 1
        if hi - lo > max_span * len(m):
            want = unique(rows[m])  # h5py reads increasing indices
            part, at = dataset[want], np.searchsorted(want, rows[m])
        else:
            part, at = dataset[lo:hi], rows[m] - lo
        nbytes += part.nbytes
        out[m] = part[at]
    return out, nbytes


class ShardRows:
    """Reads the rows of given nodes (sorted global ids within each chunk) from
    their shards: in-degrees, in-edges, features. One shard open at a time, and
    of each dataset only the slabs (``SLAB_BYTES``) that hold a wanted row,
    each from its first wanted row to its last; ``bytes_read`` counts what was read. ``cache=True`` (a reader used again
    and again: ``grappa.shards.halo_groups``) keeps each shard it opened open,
    with its ids and row offsets (16 B per node of the shard)."""

    def __init__(self, directory: Path, manifest: dict, edge_block: int = EDGE_BLOCK, cache: bool = False):
        self.dir, self.m, self.edge_block = Path(directory), manifest, edge_block
        self.bytes_read = 0
        self._cache: dict | None = {} if cache else None

    def path(self, chunk: int) -> Path:
        return self.dir / self.m["chunks"][int(chunk)]["file"]

    @cached_property
    def node_chunk(self) -> np.ndarray:
        return np.load(self.dir / "node_chunk.npy", mmap_mode="r")

    @contextmanager
    def _shard(self, c: int):
        """(the open shard or its datasets by name, its sorted global ids, its rows' in-edge offsets: n + 1)."""
        if self._cache is not None and c in self._cache:
            yield self._cache[c]
            return
        with _open_shard(self.path(c)) as f:
            ids, deg = self._read(f["nodes/global_id"], 0, None), self._read(f["nodes/in_degree"], 0, None)
            entry = (f, ids, np.concatenate([[0], np.cumsum(deg)]))
            if self._cache is None:
                yield entry
                return
        f = open_shard_file(self.path(c))
        # the datasets a reader used again reads, looked up once (h5py's lookup costs more than a small read)
        self._cache[c] = entry = ({k: f[k] for k in ("edges/src_global", "nodes/x")}, *entry[1:], f)
        yield entry

    def _by_chunk(self, nodes: np.ndarray):
        """(positions into ``nodes``, the open shard, rows within it, the shard's row offsets) per chunk."""
        chunk = np.asarray(self.node_chunk[nodes])
        for c in np.flatnonzero(np.bincount(chunk, minlength=len(self.m['chunks']))):
            sel = np.flatnonzero(chunk == c)
            with self._shard(int(c)) as (f, ids, starts, *_):
                yield sel, f, np.searchsorted(ids, nodes[sel]), starts

    def _read(self, dataset, lo: int, hi: int | None) -> np.ndarray:
        a = dataset[lo:hi]
        self.bytes_read += a.nbytes
        return a

    def read_into(self, dataset, out: np.ndarray) -> None:
        """All of ``dataset`` into ``out`` (converted to its dtype), counting the stored bytes."""
        if len(out):
            dataset.read_direct(out)
        self.bytes_read += dataset.size * dataset.dtype.itemsize

    def degrees(self, nodes: np.ndarray) -> np.ndarray:
        deg = np.zeros(len(nodes), np.int64)
        for sel, _, pos, starts in self._by_chunk(nodes):
            deg[sel] = starts[pos + 1] - starts[pos]
        return deg

    def in_edges(self, nodes: np.ndarray, k: int = -1, rng: np.random.Generator | None = None,
                 deg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every in-edge of ``nodes`` (k = -1), or up to ``k`` of each drawn
        with ``rng`` without replacement: (source global ids, destination global ids).
        ``deg``: the nodes' in-degrees, where the caller has them (else another pass over their shards)."""
        deg = self.degrees(nodes) if deg is None else deg
        total = int((deg if k < 0 else np.minimum(deg, k)).sum())
        src, dst, at = np.empty(total, np.int64), np.empty(total, np.int64), 0  # filled in place: no concatenation
        for sel, f, pos, starts in self._by_chunk(nodes):
            # the edges are sorted by destination: row v is starts[v] .. starts[v + 1]
            idx, seg = sample_ranges(starts[pos], starts[pos + 1] - starts[pos], k, rng)
            src[at:at + len(idx)] = self._gather(f["edges/src_global"], idx)
            dst[at:at + len(idx)] = nodes[sel][seg]
            at += len(idx)
        return src, dst

    def features(self, nodes: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features (into ``out`` when given) and global in-degrees of ``nodes``."""
        x = np.zeros((len(nodes), self.m["num_features"]), feature_dtype(self.m)) if out is None else out
        deg = np.zeros(len(nodes), np.int64)
        for sel, f, pos, starts in self._by_chunk(nodes):
            x[sel] = self._gather(f["nodes/x"], pos)
            deg[sel] = starts[pos + 1] - starts[pos]
        return x, deg

    def _gather(self, dataset, rows: np.ndarray) -> np.ndarray:
        out, nbytes = gather_rows(dataset, rows)
        self.bytes_read += nbytes
        return out
