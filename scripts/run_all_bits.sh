#!/usr/bin/env bash
# Train and evaluate at 16, 32 and 64 bits (margin 6 / 12 / 24: scaled with the code length),
# then write OUT/results.md, a table of I2T / T2I mAP under both tie policies.
#
#   bash scripts/run_all_bits.sh OUT --data DIR [train.py flags]
#   bash scripts/run_all_bits.sh runs/demo-bits --demo            # quick CPU run
#
# Flags after OUT go to every train.py call; a --margin among them overrides the scaled margin
# (argparse keeps the last occurrence).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: bash scripts/run_all_bits.sh OUT (--data DIR | --demo) [train.py flags]}
shift
for bits in 16 32 64; do
  margin=$((bits * 12 / 32))
  python "$here/../train.py" --bits "$bits" --margin "$margin" --out "$out/bits$bits" "$@"
done
python "$here/results_table.py" "$out"/bits16 "$out"/bits32 "$out"/bits64 | tee "$out/results.md"
