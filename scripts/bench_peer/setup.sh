#!/usr/bin/env bash
# Installs the peers of `ivory-bench peer` (the Singer SDK and the Airbyte CDK, from PyPI) into
# a virtualenv under target/ (never committed). Prints the interpreter to pass as --python.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${IVORY_BENCH_VENV:-$root/target/bench-peer-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "singer-sdk==0.54.9" "airbyte-cdk==7.39.1"
echo "$venv/bin/python"
