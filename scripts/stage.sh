#!/usr/bin/env bash
# Run one named stage of `make test` and record its wall time against its budget.
#   scripts/stage.sh NAME BUDGET_SECONDS COMMAND...   run and record
#   scripts/stage.sh --summary                         print the table; exit 1 if a stage failed,
#                                                      passed its budget, or the run's wall time
#                                                      passed FORTRESS_TEST_LIMIT seconds (3600)
# Stages may run side by side (make test runs the VM scenario beside the container stages):
# the table shows when each started, and the total is the wall time from the first start to
# the last end, not the sum.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMINGS=${FORTRESS_TIMINGS:-$ROOT/.cache/timings.tsv}
mkdir -p "$(dirname "$TIMINGS")"

# The whole run's ceiling: CI is killed at 90 minutes, the suite must never pass 60. The
# target is 30: a run past it says so (and by how much) without failing.
LIMIT=${FORTRESS_TEST_LIMIT:-3600}
TARGET=${FORTRESS_TEST_TARGET:-1800}

if [ "${1:-}" = "--summary" ]; then
  first='' last=0 bad=0 sum=0
  while IFS=$'\t' read -r _ start secs _ _; do
    if [ -z "$first" ] || [ "$start" -lt "$first" ]; then first=$start; fi
    if [ $((start + secs)) -gt "$last" ]; then last=$((start + secs)); fi
  done < "$TIMINGS"
  printf '\n%-22s %8s %8s %8s  %s\n' STAGE STARTED SECONDS BUDGET RESULT
  while IFS=$'\t' read -r name start secs budget rc; do
    flag=ok
    if [ "$rc" -ne 0 ]; then
      flag=FAILED bad=1
    elif [ "$secs" -gt "$budget" ]; then
      flag="FAILED (over its budget)" bad=1
    fi
    printf '%-22s %7ss %8s %8s  %s\n' "$name" "+$((start - first))" "$secs" "$budget" "$flag"
    sum=$((sum + secs))
  done < "$TIMINGS"
  total=$((last - ${first:-0}))
  printf '%-22s %8s %8s %8s  (%d min of wall time, at most %d; the stages add up to %d min)\n' \
    total '' "$total" '' $((total / 60)) $((LIMIT / 60)) $((sum / 60))
  if [ "$total" -gt "$TARGET" ]; then
    printf 'the run took %d s, %d s over the %d-minute target.\n' "$total" $((total - TARGET)) $((TARGET / 60))
  fi
  if [ "$total" -gt "$LIMIT" ]; then
    printf 'the run took %d s, over the %d s limit: make the suite faster before adding to it.\n' "$total" "$LIMIT"
    bad=1
  fi
  exit "$bad"
fi

name=$1 budget=$2; shift 2
printf '\n==> stage %s (budget %ss)\n' "$name" "$budget"
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$start" "$secs" "$budget" "$rc" >> "$TIMINGS"
printf '<== stage %s: %ss (budget %ss), exit %s\n' "$name" "$secs" "$budget" "$rc"
exit $rc
