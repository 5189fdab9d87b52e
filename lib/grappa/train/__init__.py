"""Training: the epoch loop, the methods and the grappa-train command."""
