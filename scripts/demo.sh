#!/usr/bin/env bash
# `npm start`: installs what is missing, builds, makes a small sample qcow2 image (a backing
# chain, with known content), mounts it as a VDI file and shows that qemu reads the view exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
demo=.tmp/demo
mkdir -p "$demo"
if mountpoint -q "$demo/mnt" 2>/dev/null; then bin/anydisk umount "$demo/mnt"; fi
rm -rf "$demo"/*
mkdir -p "$demo/mnt"
echo "== making a sample: base.raw (16 MiB) and top.qcow2 on top of it"
qemu-img create -q -f raw "$demo/base.raw" 16M
qemu-io -f raw -c 'write -P 0x41 0 1M' -c 'write -P 0x42 5M 3M' "$demo/base.raw" >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw "$demo/top.qcow2"
qemu-io -f qcow2 -c 'write -P 0x43 512k 1M' -c 'write -z 6M 512k' "$demo/top.qcow2" >/dev/null
echo "== anydisk info"
bin/anydisk info "$demo/top.qcow2"
echo "== anydisk mount --out vdi top.qcow2 mnt"
bin/anydisk mount --out vdi "$demo/top.qcow2" "$demo/mnt"
ls -l "$demo/mnt"
echo "== qemu-img reads the virtual VDI:"
qemu-img info "$demo/mnt/top.vdi" | head -3
qemu-img compare -f qcow2 -F vdi "$demo/top.qcow2" "$demo/mnt/top.vdi"
echo "== unmounting"
bin/anydisk umount "$demo/mnt"
echo "done: the demo files are in $demo"
