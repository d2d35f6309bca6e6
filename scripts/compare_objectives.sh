#!/usr/bin/env bash
# The reference's triplet objective (its triplet set, --triplets reference) and DCMH's objective
# (--objective dcmh, the public schedule --recipe dcmh) at 16 / 32 / 64 bits on the same prepared
# data, backbones, split, validation-based selection and metric, written as one table:
#
#   bash scripts/compare_objectives.sh OUT --data DIR [train.py flags]
#   bash scripts/compare_objectives.sh OUT --demo [train.py flags]
#   bash scripts/compare_objectives.sh OUT --data DIR [flags] --triplet "FLAGS" --dcmh "FLAGS"
#
# Flags after OUT go to both objectives' train.py calls (e.g. --modalities text --freeze-backbones
# --epochs 20); --triplet "..." and --dcmh "..." replace each objective's own flags (defaults
# "--triplets reference" and "--objective dcmh --recipe dcmh"; explicit flags win over the
# recipe, and with --demo its CPU sizes do too, but never its Adam learning rate under SGD).
# Runs scripts/run_all_bits.sh OUT/triplet and OUT/dcmh (run folders bits16, bits32, bits64;
# finished runs are skipped, interrupted ones resumed), then scripts/objective_results.py OUT,
# which writes OUT/results.md and OUT/results.json (printed too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage='usage: bash scripts/compare_objectives.sh OUT (--data DIR | --demo) [train.py flags] [--triplet "FLAGS"] [--dcmh "FLAGS"]'
if (($# < 2)); then
  echo "$usage" >&2
  exit 2
fi
out=$1
shift
triplet_flags="--triplets reference"
dcmh_flags="--objective dcmh --recipe dcmh"
common=()
while (($#)); do
  case $1 in
    --triplet | --dcmh)
      if (($# < 2)); then
        echo "error: $1 needs a quoted list of train.py flags ($usage)" >&2
        exit 2
      fi
      if [[ $1 == --triplet ]]; then triplet_flags=$2; else dcmh_flags=$2; fi
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
read -r -a triplet <<<"$triplet_flags"
read -r -a dcmh <<<"$dcmh_flags"
bash "$here/run_all_bits.sh" "$out/triplet" ${common[@]+"${common[@]}"} ${triplet[@]+"${triplet[@]}"}
bash "$here/run_all_bits.sh" "$out/dcmh" ${common[@]+"${common[@]}"} ${dcmh[@]+"${dcmh[@]}"}
python "$here/objective_results.py" "$out"
