#!/usr/bin/env bash
# Installs what anydisk and its tests need on a fresh Debian machine: system packages with
# apt-get (only those missing), then the npm packages, then the build. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

# command-or-file:package pairs; the package is installed when the command/file is missing.
NEEDS=(
  "/usr/include/fuse/fuse.h:libfuse-dev"
  "/usr/include/fuse3/fuse_lowlevel.h:libfuse3-dev"
  "cc:gcc"
  "/usr/include/zlib.h:zlib1g-dev"
  "/usr/include/libdeflate.h:libdeflate-dev"
  "pkg-config:pkg-config"
  "fusermount:fuse3"
  "qemu-img:qemu-utils"
)
LEAN=()
if [ "${1:-}" = "--test" ]; then
  NEEDS+=(
    "ewfacquire:ewf-tools"
    "affconvert:afflib-tools"
    "xmount:xmount"
    "nginx:nginx-light"
    "nbdinfo:libnbd-bin"
    "nbdkit:nbdkit"
    "fio:fio"
    "fincore:util-linux-extra"
    "sfdisk:fdisk"
    "/usr/lib/x86_64-linux-gnu/qemu/block-curl.so:qemu-block-extra"
  )
  # the end-to-end boot test (test/e2e): an emulator, and what test/harness/bootable.ts builds its
  # bootable disk with (the kernel itself is fetched with apt-get download, never installed)
  LEAN=(
    "qemu-system-x86_64:qemu-system-x86"
    "/usr/share/doc/busybox-static:busybox-static"
    "syslinux:syslinux"
    "/usr/lib/syslinux/mbr/mbr.bin:syslinux-common"
    "mcopy:mtools"
    "mkfs.vfat:dosfstools"
    "debugfs:e2fsprogs"
  )
fi

missing=()
for pair in "${NEEDS[@]}"; do
  what=${pair%%:*}
  pkg=${pair##*:}
  if [[ $what == /* ]]; then
    [ -e "$what" ] || missing+=("$pkg")
  else
    command -v "$what" >/dev/null 2>&1 || [ -x "/usr/sbin/$what" ] || missing+=("$pkg")
  fi
done
# installed without their recommendations (qemu-system-x86 would pull a whole desktop stack)
lean_missing=()
for pair in "${LEAN[@]}"; do
  what=${pair%%:*}
  pkg=${pair##*:}
  if [[ $what == /* ]]; then
    [ -e "$what" ] || lean_missing+=("$pkg")
  else
    command -v "$what" >/dev/null 2>&1 || [ -x "/usr/sbin/$what" ] || [ -x "/sbin/$what" ] || lean_missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ] || [ ${#lean_missing[@]} -gt 0 ]; then
  echo "anydisk: installing system packages: ${missing[*]-} ${lean_missing[*]-}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#lean_missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${lean_missing[@]}" >/dev/null
  fi
fi

# npm ci when node_modules is missing or was installed from another lock file (content hash, not
# mtime: a fresh checkout has new mtimes). A node_modules symlink is someone else's: left alone.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -L node_modules ]; then
  if [ ! -d node_modules ] || [ "$(cat node_modules/.anydisk-lock 2>/dev/null)" != "$lock_hash" ]; then
    npm ci --no-audit --no-fund
    echo "$lock_hash" > node_modules/.anydisk-lock
  fi
fi
npm run -s build
