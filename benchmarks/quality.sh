#!/usr/bin/env bash
# The quality tables in README.md and the model cards: the papers' drop-slice protocol on the test sets
#   1. ACDC: the six 5 mm patients (never trained or tuned on), every other slice dropped (10 mm gaps), factor 2;
#   2. CMRxMotion: all 36 volumes (another centre and scanner; 16 mm gaps), factor 2;
#   3. the ACDC 4D cine of test patient 081 (5 mm slices, every frame), every other slice dropped, factor 2;
#   4. Colin27 brain (1 mm isotropic truth): every 5th slice kept (5 mm), factor 5.
# Usage: bash benchmarks/quality.sh [METHODS] [OUT]     (default: every method, /tmp/latentsr-quality)
# Weights: the bundled defaults, except on the brain, where the AE uses ae-colin27 (BRAIN_AE_WEIGHTS; the
# bundled model adapted self-supervised to the thick-slice brain; ae.md, "Brain") and the contrastive model
# contrastive-colin27 (BRAIN_CONTRASTIVE_WEIGHTS). ACDC_AE_WEIGHTS, CONTRASTIVE_WEIGHTS, MOTION_WEIGHTS
# override the others.
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=${1:-linear,bspline,lanczos,flow,ae,contrastive,motion}
OUT=${2:-/tmp/latentsr-quality}
DATA=${LATENTSR_DATA:-../shared/data}
LATENTSR=${LATENTSR:-.venv/bin/latentsr}
ACDC=()
for p in 035 075 081 082 084 085; do ACDC+=("$DATA/acdc_fullfov/patient$p"); done
W=()
[ -n "${ACDC_AE_WEIGHTS:-}" ] && W+=(--ae-weights "$ACDC_AE_WEIGHTS")
[ -n "${CONTRASTIVE_WEIGHTS:-}" ] && W+=(--contrastive-weights "$CONTRASTIVE_WEIGHTS")
[ -n "${MOTION_WEIGHTS:-}" ] && W+=(--motion-weights "$MOTION_WEIGHTS")
$LATENTSR evaluate "${ACDC[@]}" --methods "$METHODS" --out "$OUT/acdc_5mm" --quiet "${W[@]}"
$LATENTSR evaluate "$DATA/cmrxmotion" --methods "$METHODS" --out "$OUT/cmrxmotion" --quiet "${W[@]}"
$LATENTSR evaluate "$DATA/acdc_cine/patient081_4d.nii.gz" --methods "$METHODS" --out "$OUT/acdc_cine_081" --quiet "${W[@]}"
B=(--ae-weights "${BRAIN_AE_WEIGHTS:-ae-colin27}" --contrastive-weights "${BRAIN_CONTRASTIVE_WEIGHTS:-contrastive-colin27}")
[ -n "${MOTION_WEIGHTS:-}" ] && B+=(--motion-weights "$MOTION_WEIGHTS")
# --no-resampling-check: the cross-fade detector is trained on cardiac cines and calls the brain's acquired
# slices cross-fades (Resources/Models/crossfade.md); on this anatomy flow and motion run without it.
$LATENTSR evaluate "$DATA/brain/colin27_t1_1mm.nii.gz" --methods "$METHODS" --keep-every 5 --out "$OUT/brain_5mm" \
    --quiet --no-resampling-check "${B[@]}"
