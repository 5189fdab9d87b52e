#!/usr/bin/env python
"""Partition a raw graph into HDF5 chunk shards (the offline MPI job).

    mpirun -np 4 python data_prep/partition.py --data work_data/cora --out work_data/cora-k8 --num-chunks 8
    python data_prep/partition.py --help
"""
from grappa.partition.cli import main

if __name__ == "__main__":
    main()
