#!/usr/bin/env bash
# Builds anydisk's native modules (native/*.c -> native/build/*.node): anydisk_fuse (the libfuse3
# low-level frontend) and anydisk_codec (zlib chunk decoding on the thread pool); both include
# native/decode.h (the decoding of one stored unit) and native/io.h (reads of an exact length).
# Plain cc against node-api-headers (an npm package: no download of Node's headers). Each module
# is rebuilt only when its source, a shared header or this script is newer.
set -euo pipefail
cd "$(dirname "$0")/.."
inc=node_modules/node-api-headers/include
mkdir -p native/build
build() {
  local name=$1; shift
  local src=native/$name.c out=native/build/$name.node
  if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ] && [ "$out" -nt native/decode.h ] && [ "$out" -nt native/io.h ]; then return 0; fi
  cc -O2 -g -Wall -Wextra -Wno-unused-parameter -std=gnu11 -fPIC -shared -fvisibility=hidden \
    -I"$inc" "$@" "$src" -o "$out.tmp" "${LIBS[@]}"
  mv "$out.tmp" "$out"
}
LIBS=($(pkg-config --libs fuse3) -lpthread -ldeflate -lz)
build anydisk_fuse $(pkg-config --cflags fuse3)
LIBS=(-ldeflate -lz)
build anydisk_codec
