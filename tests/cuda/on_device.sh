#!/bin/sh
# Builds paro, its CUDA test suite and the benchmark helpers on a bare GPU
# machine without network access, then runs what is asked:
#
#   tests/cuda/on_device.sh [DEBS_DIR] -- COMMAND...
#
# Build dependencies (cJSON, Check, zlib headers) that the machine lacks are
# taken from Debian packages in DEBS_DIR (fetched beforehand with
# `apt-get download libcjson-dev libcjson1 check libsubunit-dev libsubunit0
# zlib1g-dev`), unpacked into a private prefix, never into /.  COMMAND runs
# with that prefix on the search paths, from the repository root.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
debs=""
if [ "${1:-}" != "--" ] && [ $# -gt 0 ]; then
    debs=$1
    shift
fi
[ "${1:-}" = "--" ] && shift
prefix=${TMPDIR:-/tmp}/paro-deps
if [ -n "$debs" ] && { [ ! -e /usr/include/cjson/cJSON.h ] || [ ! -e /usr/include/check.h ] ||
                       [ ! -e /usr/include/zlib.h ]; }; then
    mkdir -p "$prefix"
    for f in "$debs"/*.deb; do
        if command -v dpkg >/dev/null 2>&1; then
            dpkg -x "$f" "$prefix"
        else
            (cd "$prefix" && ar p "$f" data.tar.xz | tar xJ)
        fi
    done
    # A -dev link that points at a system file this machine lacks goes, so
    # the linker takes the static library beside it.
    find "$prefix" -xtype l -delete
    lib=$prefix/usr/lib/x86_64-linux-gnu
    export CPATH="$prefix/usr/include${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "on_device: build dependencies from $debs in $prefix"
fi
jobs=$(nproc 2>/dev/null || echo 8)
make -s -j"$jobs" all bench build/tests/check_cuda build/tests/check_cuda_eval build/tests/check_pair PKG_CONFIG=false
echo "on_device: built ($(./paro version | head -1))"
[ $# -gt 0 ] && exec "$@"
exit 0
