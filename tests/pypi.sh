#!/bin/sh
# pypi.sh SCRIPT [ARGS...]: runs a test script with the test venv's python (.venv/, made by
# `sh .ci/setup test` from tests/requirements.txt). Without the venv the test skips (77),
# unless QS_REQUIRE_PYPI=1 (CI), which makes the missing venv a failure.
top=$(cd "$(dirname "$0")/.." && pwd)
py="$top/.venv/bin/python"
if [ ! -x "$py" ]; then
    if [ "${QS_REQUIRE_PYPI:-0}" = 1 ]; then
        echo "pypi.sh: $py missing (run: sh .ci/setup test)" >&2
        exit 1
    fi
    echo "skip: no test venv ($py); sh .ci/setup test makes it"
    exit 77
fi
exec "$py" "$@"
