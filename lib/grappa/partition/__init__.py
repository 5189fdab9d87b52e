"""Partitioning: node-to-chunk assignment and the offline MPI shard writer."""
