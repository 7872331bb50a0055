#!/usr/bin/env bash
# Wire compatibility: the proto API of the working tree must not break any earlier version of it.
# Checks against each of the last 20 commits that changed proto/ (buf's FILE rules, see
# proto/buf.yaml), so a change that removes, renumbers or retypes a field fails CI even when
# several commits land at once.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF="${BUF:-.venv/bin/buf}"
if ! git rev-parse --verify -q HEAD >/dev/null; then
  echo "proto-breaking: no git history, nothing to compare against" >&2
  exit 0
fi
checked=0
for rev in $(git rev-list -n 20 HEAD -- proto/); do
  (cd proto && "../$BUF" breaking --against "../.git#ref=$rev,subdir=proto")
  checked=$((checked + 1))
done
echo "proto-breaking: compatible with the proto of $checked earlier commits"
