#!/usr/bin/env bash
# Run one named stage of `make test` and record its wall time against its budget.
#   scripts/stage.sh NAME BUDGET_SECONDS COMMAND...   run and record
#   scripts/stage.sh --summary                         print the table (and the test count)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMINGS=${FORTRESS_TIMINGS:-$ROOT/.cache/timings.tsv}
mkdir -p "$(dirname "$TIMINGS")"

if [ "${1:-}" = "--summary" ]; then
  total=0
  printf '\n%-22s %8s %8s  %s\n' STAGE SECONDS BUDGET RESULT
  while IFS=$'\t' read -r name secs budget rc; do
    flag=ok; [ "$rc" -ne 0 ] && flag=FAILED; [ "$rc" -eq 0 ] && [ "$secs" -gt "$budget" ] && flag="ok (over budget)"
    printf '%-22s %8s %8s  %s\n' "$name" "$secs" "$budget" "$flag"
    total=$((total + secs))
  done < "$TIMINGS"
  printf '%-22s %8s %8s\n' total "$total" 2700
  exit 0
fi

name=$1 budget=$2; shift 2
printf '\n==> stage %s (budget %ss)\n' "$name" "$budget"
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$budget" "$rc" >> "$TIMINGS"
printf '<== stage %s: %ss (budget %ss), exit %s\n' "$name" "$secs" "$budget" "$rc"
exit $rc
