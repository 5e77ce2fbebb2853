#!/usr/bin/env bash
# Set up dsinfra in .venv and show what the dev stack would create and cost. Offline: no AWS
# account, no Pulumi CLI. Extra arguments replace `plan dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
if [ $# -eq 0 ]; then set -- plan dev; fi
exec .venv/bin/dsinfra "$@"
