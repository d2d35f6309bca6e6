#!/usr/bin/env bash
# Train and evaluate at 16, 32 and 64 bits (margin 6 / 12 / 24: scaled with the code length;
# --bits B1 B2 ... for some of them), then write OUT/results.md, a table of I2T / T2I mAP under
# both tie policies. Every flag it does not take itself passes through to train.py.
#
#   bash scripts/run_all_bits.sh OUT --data DIR [train.py flags]
#   bash scripts/run_all_bits.sh runs/demo-bits --demo            # quick CPU run
#   bash scripts/run_all_bits.sh OUT --seeds 0 1 2 --data DIR [train.py flags]
#   bash scripts/run_all_bits.sh OUT --bits 32 --seeds 0 1 2 --demo      # one code length
#
# --bits B1 B2 ...: the code lengths (default 16 32 64).
# Without --seeds: one run per code length in OUT/bits16, OUT/bits32, OUT/bits64 (train.py's
# --seed, default 0), then scripts/results_table.py -> OUT/results.md.
# With --seeds S1 S2 ...: one run per code length and seed in OUT/bits{B}/seed{S} (--seed S),
# then scripts/seed_results.py OUT -> OUT/results.md (mean ± std over the seeds, then per seed),
# OUT/results.json and OUT/seed_curves.png. With --seeds every run also measures the queries every
# 10 epochs (2 with --demo; a --query-every among the flags overrides it): the reference's
# protocol, in its own column labelled optimistic, never used to choose the epoch.
#
# --parallel N: up to N trainings at once, each its own process (on a GPU whose steps are bound by
# kernel launches this multiplies throughput); each run's console output goes to DIR.console.log
# beside its run folder (train.log inside it as always), and the script waits for all, names every
# run that failed and exits 1 if any did. Default 1: one after the other, output on the terminal.
# Each of the N gets nproc / N CPU threads (OMP_NUM_THREADS, MKL_NUM_THREADS) unless
# OMP_NUM_THREADS is set.
#
# Flags after OUT go to every train.py call; a --margin among them overrides the scaled margin
# (argparse keeps the last occurrence). A run folder that holds results.json has finished and is
# skipped; one that holds last.pt but no results.json was interrupted and is continued with
# --resume (same flags); so running the same command again continues an interrupted sweep.
set -euo pipefail
source "$(dirname "$0")/usage.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: bash scripts/run_all_bits.sh OUT [--bits B1 B2 ...] [--seeds S1 S2 ...] [--parallel N] (--data DIR | --demo) [train.py flags]"
out=${1:?$usage}
shift

seeds=()
with_seeds=0
lengths=()
parallel=1
flags=()
while (($#)); do
  if [[ $1 == --parallel ]]; then
    if (($# < 2)) || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
      echo "error: --parallel needs a number of runs >= 1, e.g. --parallel 3 ($usage)" >&2
      exit 2
    fi
    parallel=$2
    shift 2
  elif [[ $1 == --bits ]]; then
    shift
    while (($#)) && [[ $1 =~ ^[0-9]+$ ]]; do
      lengths+=("$1")
      shift
    done
    if ((${#lengths[@]} == 0)); then
      echo "error: --bits needs one or more code lengths, e.g. --bits 16 32 ($usage)" >&2
      exit 2
    fi
  elif [[ $1 == --seeds ]]; then
    with_seeds=1
    shift
    while (($#)) && [[ $1 =~ ^[0-9]+$ ]]; do
      seeds+=("$1")
      shift
    done
  else
    flags+=("$1")
    shift
  fi
done
if ((${#lengths[@]} == 0)); then lengths=(16 32 64); fi
if ((with_seeds)) && ((${#seeds[@]} == 0)); then
  echo "error: --seeds needs one or more integer seeds, e.g. --seeds 0 1 2 ($usage)" >&2
  exit 2
fi
for f in ${flags[@]+"${flags[@]}"}; do
  if ((with_seeds)) && [[ $f == --seed || $f == --seed=* ]]; then
    echo "error: --seed with --seeds: each run gets its seed from --seeds; drop --seed" >&2
    exit 2
  fi
done

# train_one DIR BITS [flags]: skip a finished run, resume an interrupted one, else start it.
train_one() {
  local dir=$1 bits=$2
  shift 2
  if [[ -f $dir/results.json ]]; then
    echo "skipping $dir: already finished (results.json present)" >&2
    return 0
  fi
  local resume=()
  if [[ -f $dir/last.pt ]]; then
    echo "resuming $dir: interrupted (last.pt present, no results.json)" >&2
    resume=(--resume)
  fi
  python "$here/../train.py" --bits "$bits" --margin $((bits * 12 / 32)) --out "$dir" \
    "$@" ${resume[@]+"${resume[@]}"}
}

# --parallel N: each training gets its share of the cores (torch's intra-op threads, OpenMP, MKL:
# nproc / N, at least 1) unless OMP_NUM_THREADS is set already; N processes that each took every
# core would run slower together than one after the other.
if ((parallel > 1)) && [[ -z ${OMP_NUM_THREADS-} ]]; then
  share=$(($(nproc) / parallel))
  if ((share < 1)); then share=1; fi
  export OMP_NUM_THREADS=$share MKL_NUM_THREADS=$share
  echo "--parallel $parallel: $share CPU thread(s) per training (OMP_NUM_THREADS, MKL_NUM_THREADS)" >&2
fi

# launch DIR BITS [flags]: train_one now (--parallel 1), or in the background with its output in
# DIR.console.log and its exit status in DIR.rc, at most $parallel at once.
launched=()
launch() {
  if ((parallel == 1)); then
    train_one "$@"
    return
  fi
  while (($(jobs -rp | wc -l) >= parallel)); do
    wait -n || true
  done
  local dir=$1
  mkdir -p "$(dirname "$dir")"
  rm -f "$dir.rc"
  (
    set +e
    train_one "$@" >"$dir.console.log" 2>&1
    echo $? >"$dir.rc"
  ) &
  launched+=("$dir")
  echo "started $dir (output: $dir.console.log)" >&2
}

# finish: wait for the background runs; name every one that failed and stop with status 1.
finish() {
  wait
  local failed=()
  for dir in ${launched[@]+"${launched[@]}"}; do
    if [[ $(cat "$dir.rc" 2>/dev/null) != 0 ]]; then failed+=("$dir"); fi
  done
  if ((${#failed[@]})); then
    for dir in "${failed[@]}"; do
      echo "error: $dir failed (exit status $(cat "$dir.rc" 2>/dev/null || echo unknown)); see $dir.console.log" >&2
    done
    exit 1
  fi
}

if ((!with_seeds)); then
  for bits in "${lengths[@]}"; do
    launch "$out/bits$bits" "$bits" ${flags[@]+"${flags[@]}"}
  done
  finish
  python "$here/results_table.py" "${lengths[@]/#/$out/bits}" | tee "$out/results.md"
  exit 0
fi

# both protocols: the queries are also measured every K epochs (the reference's protocol, reported
# beside ours and never used for selection), K = 10 (2 with --demo) unless --query-every is given
protocol=(--query-every 10)
for f in ${flags[@]+"${flags[@]}"}; do
  if [[ $f == --demo ]]; then protocol=(--query-every 2); fi
done
for f in ${flags[@]+"${flags[@]}"}; do
  if [[ $f == --query-every || $f == --query-every=* ]]; then protocol=(); fi
done
for bits in "${lengths[@]}"; do
  for seed in "${seeds[@]}"; do
    launch "$out/bits$bits/seed$seed" "$bits" --seed "$seed" ${protocol[@]+"${protocol[@]}"} \
      ${flags[@]+"${flags[@]}"}
  done
done
finish
python "$here/seed_results.py" "$out"
