#!/usr/bin/env bash
# Bundle Debian 12's redis-server (7.0.15) with the libraries it needs that a plain Ubuntu 24.04
# image lacks, for the lmcache-cpu medium (the study's dis-cpu) on a machine that cannot install
# packages (the lent GPU). Writes DIR/bin/redis-server (a wrapper) and DIR/lib/; carry DIR there
# and put DIR/bin on PATH.
#
#   bash scripts/stage_redis.sh [DIR]      (default .stage/redis; needs apt-get and dpkg-deb)
set -euo pipefail
out=${1:-.stage/redis}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download redis-tools libjemalloc2 liblzf1 >/dev/null)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
mkdir -p "$out/bin" "$out/lib"
# Debian's redis-server is a link to redis-check-rdb (one binary, named by argv[0]).
cp "$work/x/usr/bin/redis-check-rdb" "$out/lib/redis-server.real"
cp -L "$work"/x/usr/lib/x86_64-linux-gnu/{libjemalloc.so.2,liblzf.so.1} "$out/lib/"
cp -L "$(ldconfig -p | awk '/libatomic.so.1 /{print $NF; exit}')" "$out/lib/"
cat > "$out/bin/redis-server" <<'WRAP'
#!/bin/sh
here=$(cd "$(dirname "$0")/../lib" && pwd)
LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/redis-server.real" "$@"
WRAP
chmod +x "$out/bin/redis-server"
"$out/bin/redis-server" --version
