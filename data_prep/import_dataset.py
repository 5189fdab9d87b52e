#!/usr/bin/env python
"""Import a dataset into grappa's raw layout (same as `grappa-import`).

    python data_prep/import_dataset.py planetoid datasets/cora --name cora --out work_data/cora
    python data_prep/import_dataset.py --help
"""
from grappa.graph.importers_cli import main

if __name__ == "__main__":
    main()
