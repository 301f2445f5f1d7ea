#!/usr/bin/env bash
# The prepared device check for a session lent a GPU (about 7 minutes on an H100), the sections
# in microbench.py's order: the gemm section's decode batch edges (issue 22: does cuBLAS fall
# where one more row of tiles opens?), the moe and conv sections (grouped MoE GEMMs, VAE
# convolutions), the attention section's short prefill grid (~24 points of ~0.2 s: do
# FlashAttention-2's block edges cost what sim/cost/roofline._flash_edges charges?) and its
# decode-edge grid (14 points: does a memory-bound FA2 decode wave stall for the round trips
# sim/cost/roofline._FLASH_MEMORY_EDGE_ROUND_TRIPS charges, as the context shrinks?), the
# steady section (a sustained FlashAttention-2 run and matmul + host-gap power cycles): the
# kernel-level and energy gaps in benchmarks/research/moe-expert-gemm-sensitivity-2026-12-05.md,
# vae-conv-microbench-2026-12-05.md and fa2-rate-absorber-2026-12-06.md), then roofsim's checks
# of them against the pre-registered predictions. Everything lands in OUT; the checks need
# roofsim's dependencies (numpy, scipy) and are skipped, not fatal, where the machine lacks
# them: run them here then.
#
#   bash benchmarks/microbench/device_check.sh OUT [CHIP]       # CHIP: the preset, h100-sxm
#   PYTHON=... EXTRA="--quick --device cpu" bash ...            # a logic test without a GPU
set -euo pipefail
out=${1:?usage: bash benchmarks/microbench/device_check.sh OUT [CHIP]}
chip=${2:-h100-sxm}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC2086  # EXTRA is a list of flags
timeout 510 "$py" "$here/microbench.py" --out "$out" --sections env,gemm,attention,moe,conv,steady \
    --gemm-groups batch_edge --attention-grid short,decode-edges --budget-s 470 ${EXTRA:-} 2>&1 | tee "$out/run.log"
for check in check_edge check_flash_edges check_decode_edges check_moe check_conv check_steady; do
    "$py" "$here/$check.py" "$out" --chip "$chip" > "$out/$check.txt" 2>&1 \
        || echo "device_check: $check did not run here ($(tail -n 1 "$out/$check.txt"))"
    tail -n 12 "$out/$check.txt"
done
