#!/usr/bin/env bash
# Builds native/anydisk_fuse.node, anydisk's libfuse3 low-level frontend (native/anydisk_fuse.c).
# Plain cc against node-api-headers (an npm package: no download of Node's headers) and fuse3.
# Rebuilt only when the source is newer than the module.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/anydisk_fuse.c
out=native/build/anydisk_fuse.node
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
mkdir -p native/build
inc=node_modules/node-api-headers/include
cc -O2 -g -Wall -Wextra -Wno-unused-parameter -std=gnu11 -fPIC -shared -fvisibility=hidden \
  -I"$inc" $(pkg-config --cflags fuse3) "$src" -o "$out.tmp" $(pkg-config --libs fuse3) -lpthread
mv "$out.tmp" "$out"
