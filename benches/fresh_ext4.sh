#!/usr/bin/env bash
# A fresh, journaled ext4 for the write benches (benches/set.rs), loop-mounted from an image
# file: the disk's state then does not depend on what ran before. Needs root.
#
#   eval "$(bash benches/fresh_ext4.sh)"      # mounts, prints the export
#   cargo bench --bench set --no-run && ANSWERCACHE_BENCH_PAIRS=1500 ANSWERCACHE_BENCH_ROUNDS=4 \
#       target/release/deps/set-* nomatch --bench
#   bash benches/fresh_ext4.sh --unmount
#
# Why: on an ext4 without a journal (this project's CI and dev machines mount / so), creating a
# file skips every inode of its block group deleted in the last minute (`recently_deleted` in
# the kernel's inode allocator; up to 55% of the CPU of a write-through bench run went there,
# measured with `perf record -g`), so each contender's write cost grows with the churn of the
# last minutes in its directory's block group: the paired ratio then measures where the
# directories landed. BENCHMARKS.md, "Session 24".
set -euo pipefail
MNT=${ANSWERCACHE_FRESH_EXT4:-/mnt/answercache-bench}
IMG=${ANSWERCACHE_FRESH_EXT4_IMG:-/var/tmp/answercache-bench.img}
SIZE=${ANSWERCACHE_FRESH_EXT4_SIZE:-8G}
if mountpoint -q "$MNT"; then
    umount "$MNT"
fi
if [ "${1:-}" = "--unmount" ]; then
    rm -f "$IMG"
    exit 0
fi
mkdir -p "$MNT"
rm -f "$IMG"
truncate -s "$SIZE" "$IMG"
mkfs.ext4 -q -F "$IMG" >&2
mount -o loop "$IMG" "$MNT"
echo "export ANSWERCACHE_BENCH_DIR=$MNT"
