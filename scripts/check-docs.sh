#!/usr/bin/env bash
# Runs every shell example of README.md, web/README.md and protocol/PROTOCOL.md against a fresh
# jimd, three times (fresh daemon, again, next to accounts a reader registered by hand), and
# checks the paths the documents name. scripts/check-docs.py says what is checked, how the
# documents' ports (7777, 7780) and paths (build-release/bin/, build-test/bin/) are rewritten, and
# how a block that cannot run is marked (<!-- docs-check: skip (reason) -->).
#
#   scripts/check-docs.sh [--build DIR] [-v|-vv] [FILE.md ...]
#
# DIR holds bin/jimd and bin/jim (default: $JIM_BUILD, else build-test). Needs python3 and socat
# (scripts/install-deps.sh installs both). Exit status 0 when all passed, 1 naming FILE:LINE of
# each failure, 2 when it could not run.
set -euo pipefail
exec python3 "$(dirname "$0")/check-docs.py" "$@"
