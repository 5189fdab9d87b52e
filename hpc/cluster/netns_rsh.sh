#!/bin/bash
# OpenMPI's remote launcher for an emulated cluster (python -m grappa.emulated_cluster):
# called as "netns_rsh.sh HOST COMMAND...", it runs COMMAND, as ssh would, in
# HOST's network namespace under HOST's hostname. HOST: a node address
# (10.77.0.I+1) or name (nodeI); $GRAPPA_CLUSTER names the cluster.
host="$1"; shift
case "$host" in
    10.77.0.*) i=$(( ${host##*.} - 1 )) ;;
    node*) i="${host#node}" ;;
    *) echo "error: netns_rsh.sh: $host is not a node of an emulated cluster (fix: give node addresses)" >&2; exit 2 ;;
esac
exec ip netns exec "${GRAPPA_CLUSTER:?set by python -m grappa.emulated_cluster}-node$i" \
    unshare --uts sh -c 'hostname "$1"; shift; eval "$*"' sh "node$i" "$@"
