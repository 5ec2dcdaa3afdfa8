#!/usr/bin/env bash
# Model selection without touching the test set: the papers' drop-slice protocol on a training run's
# HELD-OUT validation patients (10 mm ACDC scans, so every other slice dropped = 20 mm gaps, factor 2).
# The test patients (5 mm) are only scored once, by quality.sh, on the chosen weights.
# Usage: bash benchmarks/validation_protocol.sh METHODS OUT "PATIENT..." [extra latentsr evaluate args]
#   e.g. bash benchmarks/validation_protocol.sh linear,contrastive out/val "010 014 037 049 070" \
#            --contrastive-weights runs/co_long.pt
# A run's held-out patients are those LatentSRLib.training.data.split_by_patient picks with the run's
# seed; the model cards list the ones used for the bundled weights.
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=$1; OUT=$2; PATIENTS=$3; shift 3
DATA=${LATENTSR_DATA:-../shared/data}
LATENTSR=${LATENTSR:-.venv/bin/latentsr}
PATHS=()
for p in $PATIENTS; do PATHS+=("$DATA/acdc_fullfov/patient$p"); done
$LATENTSR evaluate "${PATHS[@]}" --methods "$METHODS" --out "$OUT" --quiet "$@"
