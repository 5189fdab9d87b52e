#!/usr/bin/env bash
# Install everything grappa needs, idempotently:
#   Debian packages (OpenMPI, cmake, HDF5 tools; with --slurm also Slurm + munge),
#   a virtualenv with the Python dependencies from setup.cfg,
#   Horovod 0.28.1 built from source with the C++17 fix (wheel cached and reused).
# A second run with nothing changed takes about a second.
#
#   bash hpc/setup_env.sh [--slurm] [--force]
#
# Environment: GRAPPA_VENV (default .venv; an existing conda env works too),
# GRAPPA_WHEEL_CACHE (default ~/.cache/grappa/wheels), PYTHON (default python3),
# GRAPPA_SKIP_APT=1 (no Debian packages: clusters with modules or conda).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GRAPPA_VENV:-$ROOT/.venv}"
WHEELS="${GRAPPA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/grappa/wheels}"
PYTHON="${PYTHON:-python3}"
HOROVOD_VERSION=0.28.1
WITH_SLURM=0
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --slurm) WITH_SLURM=1 ;;
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "setup_env.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
log() { echo "[setup] $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "setup_env.sh: need root (or sudo) to install Debian packages: $*" >&2; exit 1; fi
}

ensure_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    }
}

# iptables + libnetfilter-queue-dev: added delay in the emulated cluster (hpc/cluster/delay_queue.c)
DEBS=(openmpi-bin libopenmpi-dev cmake make g++ hdf5-tools iptables libnetfilter-queue-dev)
[ "$WITH_SLURM" = 1 ] && DEBS+=(slurmctld slurmd slurm-client munge)
# GRAPPA_SKIP_APT=1: the system packages come from elsewhere (conda, modules).
[ "${GRAPPA_SKIP_APT:-0}" = 1 ] || ensure_debs "${DEBS[@]}"

# The stamp covers everything that decides the Python environment.
STAMP_VALUE="$(cat "$ROOT/setup.cfg" "$ROOT/hpc/setup_env.sh" | sha256sum | cut -c1-16)"
STAMP="$VENV/.grappa-setup"
if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_VALUE" ]; then
    log "python environment up to date ($VENV)"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
# torch first, pinned, so nothing below can pull the CUDA build.
"${PIP[@]}" install "torch==2.13.0" setuptools wheel packaging
"${PIP[@]}" install -e "$ROOT[dev,plot]"

horovod_ok() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null
import horovod.torch as hvd
assert hvd.mpi_built() and hvd.gloo_built()
PY
}
if ! horovod_ok; then
    mkdir -p "$WHEELS"
    whl=$(ls "$WHEELS"/horovod-"$HOROVOD_VERSION"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$whl" ]; then
        log "building Horovod $HOROVOD_VERSION from source (about 5 minutes on 2 cores)"
        build=$(mktemp -d)
        trap 'rm -rf "$build"' EXIT
        "${PIP[@]}" download --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$build"
        tar -xzf "$build"/horovod-"$HOROVOD_VERSION".tar.gz -C "$build"
        src="$build/horovod-$HOROVOD_VERSION"
        # Horovod 0.28.1 compiles with C++14; torch >= 2.1 headers need C++17.
        sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' \
            "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
        grep -q "CMAKE_CXX_STANDARD 17" "$src/horovod/torch/CMakeLists.txt" || {
            echo "setup_env.sh: the C++17 patch did not apply to $src/horovod/torch/CMakeLists.txt" >&2; exit 1; }
        # Debian's cmake: pip's cmake 4 breaks the bundled gloo.
        "${PIP[@]}" uninstall -y cmake >/dev/null 2>&1 || true
        (
            cd "$src"
            export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
                   HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
                   HOROVOD_CMAKE=/usr/bin/cmake MAKEFLAGS="-j$(nproc)"
            "$VENV/bin/python" -m pip -q wheel --no-build-isolation --no-deps -w "$WHEELS.tmp" .
        )
        mv "$WHEELS".tmp/horovod-*.whl "$WHEELS"/
        rmdir "$WHEELS.tmp" 2>/dev/null || true
        whl=$(ls "$WHEELS"/horovod-"$HOROVOD_VERSION"-*.whl | head -n1)
    fi
    log "installing $whl"
    "${PIP[@]}" install --force-reinstall --no-deps "$whl"
    "${PIP[@]}" install cloudpickle psutil pyyaml cffi
    horovod_ok || { echo "setup_env.sh: Horovod installed but lacks MPI or Gloo support" >&2; exit 1; }
fi
echo "$STAMP_VALUE" > "$STAMP"
log "done: $VENV"
