#!/usr/bin/env bash
# The objectives side by side on the same prepared data, backbones, split, validation-based
# selection and metric: the reference's triplet set (--triplets reference), all valid triplets
# (--triplets all), DCMH (--objective dcmh, the public schedule --recipe dcmh) and hash proxies
# (--objective proxy), at 16 / 32 / 64 bits (or --bits), written as one table:
#
#   bash scripts/compare_objectives.sh OUT --data DIR [train.py flags]
#   bash scripts/compare_objectives.sh OUT --demo --bits 32 --seeds 0 1 2 [train.py flags]
#   bash scripts/compare_objectives.sh OUT --data DIR [flags] --dcmh "--objective dcmh"
#
# Flags after OUT go to every objective's scripts/run_all_bits.sh call (so --bits, --seeds and
# --parallel are its, the rest train.py's: e.g. --modalities text --freeze-backbones --epochs 20).
# Each objective's own flags can be replaced: --triplet-reference "FLAGS" (default "--triplets
# reference"), --triplet-all "FLAGS" ("--triplets all"), --dcmh "FLAGS" ("--objective dcmh
# --recipe dcmh"; explicit flags win over the recipe, and with --demo its CPU sizes do too, but
# never its Adam learning rate under SGD) and --proxy "FLAGS" ("--objective proxy");
# --objectives "NAMES" runs some of them: any of triplet-reference triplet-all dcmh proxy
# (default all four, in that order).
# Runs scripts/run_all_bits.sh OUT/NAME for each (run folders bits{B}, or bits{B}/seed{S} with
# --seeds; finished runs are skipped, interrupted ones resumed), then
# scripts/objective_results.py OUT, which writes OUT/results.md and OUT/results.json (printed).
set -euo pipefail
source "$(dirname "$0")/usage.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
usage='usage: bash scripts/compare_objectives.sh OUT (--data DIR | --demo) [--bits B ...] [--seeds S ...] [train.py flags] [--objectives "NAMES"] [--triplet-reference|--triplet-all|--dcmh|--proxy "FLAGS"]'
if (($# < 2)); then
  echo "$usage" >&2
  exit 2
fi
out=$1
shift
declare -A own=(
  [triplet-reference]="--triplets reference"
  [triplet-all]="--triplets all"
  [dcmh]="--objective dcmh --recipe dcmh"
  [proxy]="--objective proxy"
)
names="triplet-reference triplet-all dcmh proxy"
common=()
while (($#)); do
  case $1 in
    --triplet-reference | --triplet-all | --dcmh | --proxy | --objectives)
      if (($# < 2)); then
        echo "error: $1 needs a quoted list ($usage)" >&2
        exit 2
      fi
      if [[ $1 == --objectives ]]; then names=$2; else own[${1#--}]=$2; fi
      shift 2
      ;;
    *)
      common+=("$1")
      shift
      ;;
  esac
done
if [[ " ${common[*]-} " != *" --data "* && " ${common[*]-} " != *" --demo "* ]]; then
  echo "error: give --data DIR or --demo ($usage)" >&2
  exit 2
fi
for name in $names; do
  if [[ -z ${own[$name]+set} ]]; then
    echo "error: --objectives: unknown name '$name'; known: triplet-reference triplet-all dcmh proxy" >&2
    exit 2
  fi
done
for name in $names; do
  read -r -a flags <<<"${own[$name]}"
  bash "$here/run_all_bits.sh" "$out/$name" ${common[@]+"${common[@]}"} ${flags[@]+"${flags[@]}"}
done
python "$here/objective_results.py" "$out"
