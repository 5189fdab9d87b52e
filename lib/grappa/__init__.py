"""grappa: gradient-only distributed GNN training."""
__version__ = "0.1.0"
