#!/usr/bin/env python
"""Generate a synthetic graph (RMAT or SBM) in the raw layout (same as `grappa-generate`).

    python data_prep/generate_graph.py rmat --scale 20 --out work_data/rmat20
    python data_prep/generate_graph.py sbm --num-nodes 200000 --avg-degree 20 --out work_data/sbm200k
"""
from grappa.graph.generators_cli import main

if __name__ == "__main__":
    main()
