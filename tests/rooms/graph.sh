#!/bin/sh
# graph.sh [OUT.dot]: the rooms' CMake target graph (cmake --graphviz, static libraries only),
# as shown in docs/design.md. `make rooms-graph` writes docs/rooms.dot.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/docs/rooms.dot}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/CMakeGraphVizOptions.cmake" <<'OPT'
set(GRAPHVIZ_EXECUTABLES FALSE)
set(GRAPHVIZ_EXTERNAL_LIBS FALSE)
set(GRAPHVIZ_INTERFACE_LIBS FALSE)
set(GRAPHVIZ_GENERATE_PER_TARGET FALSE)
set(GRAPHVIZ_GENERATE_DEPENDERS FALSE)
OPT
cmake -S "$top" -B "$tmp" -DBUILD_TESTING=OFF --graphviz="$tmp/rooms.dot" >/dev/null
# keep the rooms and their arrows (no legend)
grep -E '^ *"node[0-9]+"' "$tmp/rooms.dot" | sed 's/^ *//' | {
    echo 'digraph "qshard rooms" {'
    echo '  node [shape = box, fontsize = 12];'
    sed 's/^/  /'
    echo '}'
} > "$out"
echo "wrote $out"
