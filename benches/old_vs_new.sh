#!/bin/bash
# Interleaved runs of the hot and warm benches of two builds (a refactor's "old" and "new"),
# so that both see the same machine and the same load; records criterion's median estimate
# of each benchmark per run in /tmp/bench-results.txt. Before running, copy the bench
# executables of each build (`cargo bench --no-run` prints their paths) to
# /work/bench-{old,new}-{hot,warm}. Compare same-run ratios (answercache / its peer), never
# absolute times across runs. See BENCHMARKS.md, "Refactors: old against new".
set -u
mkdir -p /tmp/bench-old /tmp/bench-new
collect() { # version round
  python3 - "$1" "$2" <<'PY'
import json,glob,sys,os
v,r=sys.argv[1],sys.argv[2]
for f in sorted(glob.glob(f'/tmp/bench-{v}/target/criterion/*/*/*/new/estimates.json')):
    parts=f.split('/')
    name='/'.join(parts[-5:-2])
    med=json.load(open(f))['median']['point_estimate']
    print(f"R{r} {v} {name} {med:.1f}")
PY
}
for round in 1 2 3; do
  for v in old new; do
    cd /tmp/bench-$v && rm -rf target/criterion
    /work/bench-$v-hot --bench 'hot_get_bytes/.*/(4|64)KiB$' --measurement-time 3 --warm-up-time 1 > /dev/null 2>&1
    /work/bench-$v-warm --bench 'warm_hit/(answercache|floor_read_blake3_inflate|cacache_read)/(4|64)KiB$' --measurement-time 3 --warm-up-time 1 > /dev/null 2>&1
    collect $v $round >> /tmp/bench-results.txt
  done
done
echo done >> /tmp/bench-results.txt
