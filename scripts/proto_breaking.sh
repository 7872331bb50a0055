#!/usr/bin/env bash
# Wire compatibility: the proto API of the working tree must not break the last released version
# of it (the commit named in proto/COMPAT_BASELINE, i.e. the last landing of main) nor the
# previous commit's (buf's FILE rules, see proto/buf.yaml). Intermediate states between the two
# never shipped, so a field added and renumbered before landing is not a break.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF="${BUF:-.venv/bin/buf}"
baseline=$(grep -Eo '^[0-9a-f]{40}' proto/COMPAT_BASELINE | head -n 1)
checked=0
for rev in "$baseline" HEAD~1; do
  if ! git rev-parse --verify -q "$rev^{commit}" >/dev/null; then
    echo "proto-breaking: $rev is not in this clone's history; skipped" >&2
    continue
  fi
  (cd proto && "../$BUF" breaking --against "../.git#ref=$rev,subdir=proto")
  checked=$((checked + 1))
done
echo "proto-breaking: compatible with the baseline and the previous commit ($checked checked)"
