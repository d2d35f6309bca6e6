#!/usr/bin/env bash
# The reference implementation's table (16 / 32 / 64 bits, margins 6 / 12 / 24, seeds 0 1 2,
# --recipe seed) and this project's default recipe beside it (same code lengths and seeds), then
# a comparison with the published numbers:
#
#   bash scripts/reproduce_seed.sh DATA OUT [train.py flags]          # a prepared IAPR TC-12
#   bash scripts/reproduce_seed.sh --demo OUT [train.py flags]        # the generated demo data
#   bash scripts/reproduce_seed.sh --demo OUT --epochs 2              # a quick look
#
# Writes OUT/seed-recipe/ and OUT/default-recipe/ (scripts/run_all_bits.sh --seeds sweeps: run
# folders bits{B}/seed{S}, results.md, results.json, seed_curves.png each) and OUT/comparison.md
# (printed too). Every run also measures the queries every --query-every epochs (10; 2 with
# --demo): the reference's protocol, reported beside ours as "queries-selected (optimistic)" and
# never used to choose the epoch; a --query-every among the flags overrides it. Extra flags go
# to every train.py call (e.g. --device, --amp, --num-workers), except --parallel N (N trainings
# at once) and --bits B1 B2 ... (some of the code lengths), which scripts/run_all_bits.sh takes
# itself; nothing CPU-specific is set here. Running the same command again skips finished runs
# and resumes interrupted ones.
set -euo pipefail
source "$(dirname "$0")/usage.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: bash scripts/reproduce_seed.sh (DATA | --demo) OUT [train.py flags]"
if (($# < 2)); then
  echo "$usage" >&2
  exit 2
fi
if [[ $1 == --demo ]]; then
  source=(--demo)
  query_every=2
else
  source=(--data "$1")
  query_every=10
fi
out=$2
shift 2
seeds=(0 1 2)

bash "$here/run_all_bits.sh" "$out/seed-recipe" --seeds "${seeds[@]}" "${source[@]}" \
  --recipe seed --query-every "$query_every" "$@"
bash "$here/run_all_bits.sh" "$out/default-recipe" --seeds "${seeds[@]}" "${source[@]}" \
  --query-every "$query_every" "$@"
python "$here/compare_recipes.py" "$out"
