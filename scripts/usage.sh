# Sourced by the bash scripts of this folder before anything else:
#   source "$(dirname "$0")/usage.sh" "$@"
# With --help or -h as the first argument it prints the calling script's header comment (its
# usage, what passes through to train.py, the code lengths it runs) and exits 0.
if [[ ${1-} == -h || ${1-} == --help ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/{s/^# \{0,1\}//;p}}' "$0"
  exit 0
fi
