#!/bin/sh
# Builds bench_cuda with several kernel tunings (kernels/mma.cuh's -D
# knobs) and times each on one capture: tests/bench/variants.sh MANIFEST
# [BLOCK].  Each variant builds in its own folder build-v<N>.
set -eu
manifest=$1
block=${2:-64}
i=0
for knobs in "" "-DPARO_TILE_MIN_BLOCKS=5 -DPARO_Q_IN_REGS=0" \
             "-DPARO_KEY_CHUNK=64 -DPARO_Q_IN_REGS=0" "-DPARO_KEY_CHUNK=64 -DPARO_TILE_MIN_BLOCKS=3"; do
    make -s -j16 BUILD=build-v$i NVCCFLAGS="-O3 -lineinfo $knobs" ${MAKE_ARGS:-} \
        build-v$i/tests/bench_cuda >/dev/null
    printf '%-60s ' "v$i ${knobs:-default}"
    build-v$i/tests/bench_cuda "$manifest" 0 10 "$block" | sed 's/.*"kernel_ms_median": \([0-9.]*\).*/\1 ms/'
    i=$((i + 1))
done
