#!/usr/bin/env python
"""grappa-train with Grappa's evaluation replaced by a constant: times and
measures the training path alone (for example old code against new, where
the old evaluation would not fit in memory). Takes grappa-train's arguments.

    [mpirun -np P] python bench/train_only.py --method grappa --data DIR --out DIR ...
"""
from __future__ import annotations

import sys

from grappa.train.cli import main
from grappa.train.methods import grappa_method

if __name__ == "__main__":
    grappa_method.GrappaMethod.evaluate = lambda self: (0.0, 0.0)  # no evaluation: metrics read 0
    main(sys.argv[1:])
