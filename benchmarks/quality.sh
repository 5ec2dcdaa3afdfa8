#!/usr/bin/env bash
# The quality tables in README.md and the model cards: the papers' drop-slice protocol
#   1. ACDC: the six 5 mm patients (never trained on), every other slice dropped (10 mm gaps), factor 2;
#   2. Colin27 brain (1 mm isotropic truth): every 5th slice kept (5 mm), factor 5.
# Usage: bash benchmarks/quality.sh [METHODS] [OUT]     (default: every method, out/quality)
# AE weights: ACDC_AE_WEIGHTS (default: the bundled default, ae-acdc) and BRAIN_AE_WEIGHTS (default:
# ae-colin27, the bundled model adapted self-supervised to the thick-slice brain; ae.md, "Brain");
# CONTRASTIVE_WEIGHTS (default: the bundled default, contrastive-acdc) and BRAIN_CONTRASTIVE_WEIGHTS
# (default: contrastive-colin27, the same network with its correction calibrated on the thick-slice brain).
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=${1:-linear,bspline,lanczos,ae,contrastive}
OUT=${2:-out/quality}
DATA=${LATENTSR_DATA:-../shared/data}
LATENTSR=${LATENTSR:-.venv/bin/latentsr}
ACDC=()
for p in 035 075 081 082 084 085; do ACDC+=("$DATA/acdc_fullfov/patient$p"); done
CO=(); [ -n "${CONTRASTIVE_WEIGHTS:-}" ] && CO=(--contrastive-weights "$CONTRASTIVE_WEIGHTS")
AE=(); [ -n "${ACDC_AE_WEIGHTS:-}" ] && AE=(--ae-weights "$ACDC_AE_WEIGHTS")
$LATENTSR evaluate "${ACDC[@]}" --methods "$METHODS" --out "$OUT/acdc_5mm" --quiet "${AE[@]}" "${CO[@]}"
AE=(--ae-weights "${BRAIN_AE_WEIGHTS:-ae-colin27}")
CO=(--contrastive-weights "${BRAIN_CONTRASTIVE_WEIGHTS:-contrastive-colin27}")
$LATENTSR evaluate "$DATA/brain/colin27_t1_1mm.nii.gz" --methods "$METHODS" --keep-every 5 --out "$OUT/brain_5mm" \
    --quiet "${AE[@]}" "${CO[@]}"
