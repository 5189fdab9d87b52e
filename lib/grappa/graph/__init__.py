"""Graphs: the raw on-disk layout, CSR structure, importers and generators."""
from grappa.graph.csr import CSR
from grappa.graph.raw import GraphInfo, RawGraph

__all__ = ["CSR", "GraphInfo", "RawGraph"]
