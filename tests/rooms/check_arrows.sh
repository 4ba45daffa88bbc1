#!/bin/sh
# check_arrows.sh CC ROOM INCLUDE_DIRS ALLOWED_HEADER FORBIDDEN_HEADER...
# The build enforces the arrows of docs/design.md: a room compiles only against its own
# folder and its dependencies' folders. For one room this compiles a one-line file that
# includes ALLOWED_HEADER (must compile: the control) and, for each FORBIDDEN_HEADER (a header
# of a room above it), one that includes it (must fail with "No such file"). INCLUDE_DIRS is
# the room's full include path (';'-separated, from CMake). Exit 0 when every arrow holds.
set -u
cc=$1 room=$2 dirs=$3 allowed=$4
shift 4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=""
IFS=';'
for d in $dirs; do flags="$flags -I$d"; done
unset IFS
try() { # header -> 0 if it compiles
    printf '#include "%s"\nint qs_rooms_probe;\n' "$1" > "$tmp/p.c"
    # shellcheck disable=SC2086
    "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -fsyntax-only $flags "$tmp/p.c" 2> "$tmp/err"
}
fail=0
if ! try "$allowed"; then
    echo "FAIL: $room cannot include its own or a dependency's header $allowed:" >&2
    cat "$tmp/err" >&2
    fail=1
fi
for h in "$@"; do
    if try "$h"; then
        echo "FAIL: $room compiles against $h (an arrow against docs/design.md)" >&2
        fail=1
    elif ! grep -q "No such file" "$tmp/err"; then
        echo "FAIL: $room including $h failed for another reason:" >&2
        cat "$tmp/err" >&2
        fail=1
    fi
done
[ $fail = 0 ] && echo "$room: $# upward include(s) refused, control $allowed compiles"
exit $fail
