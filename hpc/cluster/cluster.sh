#!/bin/bash
# An emulated cluster on this machine (network namespaces, a shaped bridge):
#   bash hpc/cluster/cluster.sh up --name demo --nodes 2 --profile 1gbit --hostfile /tmp/demo.hosts
#   bash hpc/cluster/cluster.sh run --name demo --node 0 -- mpirun --host 10.77.0.1,10.77.0.2 -np 2 ...
#   bash hpc/cluster/cluster.sh down --name demo
#   bash hpc/cluster/cluster.sh exec --nodes 2 --profile 1gbit -- CMD     # up, CMD in node 0, down
# Needs root. --help lists the options; docs/ARCHITECTURE.md, "Emulated cluster".
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/hpc/env.sh"
exec python -m grappa.emulated_cluster "$@"
