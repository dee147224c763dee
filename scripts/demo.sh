#!/usr/bin/env bash
# The demo: grows with the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
./bin/sparsify version
