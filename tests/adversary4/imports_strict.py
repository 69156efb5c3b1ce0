#!/usr/bin/env python3
"""Stricter file-level import graph: full use-tree expansion (crate::{a, b::{c}}), super/self
groups, inline paths, re-exports followed through lib.rs and mod.rs, test modules removed by
brace matching (not by cutting the file), test-only files skipped."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'

def strip(src):
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith('//', i):
            j = src.find('\n', i); i = n if j < 0 else j
        elif src.startswith('/*', i):
            d, i = 1, i + 2
            while i < n and d:
                if src.startswith('/*', i): d += 1; i += 2
                elif src.startswith('*/', i): d -= 1; i += 2
                else: i += 1
        elif src[i] == '"' :
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            out.append('""'); i = j + 1
        elif src.startswith("r#\"", i):
            j = src.find('"#', i + 3); out.append('""'); i = j + 2
        elif src[i] == "'" and i + 2 < n and (src[i+2] == "'" or (src[i+1] == '\\')):
            j = src.find("'", i + 2 if src[i+1] != '\\' else i + 3); out.append("' '"); i = j + 1
        else:
            out.append(src[i]); i += 1
    return ''.join(out)

def drop_cfg_test(src):
    test_decl = set()
    while True:
        m = re.search(r'#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])', src)
        if not m: break
        if m.group(5) == ';':
            test_decl.add(m.group(4)); src = src[:m.start()] + src[m.end():]; continue
        j, d = m.end() - 1, 0
        for k in range(j, len(src)):
            if src[k] == '{': d += 1
            elif src[k] == '}':
                d -= 1
                if d == 0: break
        src = src[:m.start()] + src[k+1:]
    return src, test_decl

files, test_only = {}, set()
for d, _, fs in os.walk(root):
    if os.path.relpath(d, root).split('/')[0] == 'bin': continue
    for f in fs:
        if f.endswith('.rs'): files[os.path.join(d, f)] = open(os.path.join(d, f)).read()
def mod_path(p):
    rel = os.path.relpath(p, root)[:-3].split('/')
    if rel[-1] in ('mod', 'lib'): rel = rel[:-1]
    return tuple(rel)
bymod = {mod_path(p): p for p in files}
is_modfile = lambda p: os.path.basename(p) in ('mod.rs', 'lib.rs')
clean = {}
for p, s in files.items():
    s, decl = drop_cfg_test(re.sub(r"pub\(in [^)]*\)", "pub", strip(s)))
    clean[p] = s
    for name in decl:
        t = bymod.get(mod_path(p) + (name,)) if is_modfile(p) else bymod.get(mod_path(p) + (name,))
        if t: test_only.add(t)
# inline `mod x { ... }` blocks are ignored (none expected); `#[path]` too.

def expand(tree):
    """use-tree text -> list of segment lists."""
    tree = tree.strip()
    i = tree.find('{')
    if i < 0:
        t = tree.split(' as ')[0].strip()
        return [[x for x in t.split('::') if x]]
    prefix = tree[:i].rstrip(':').strip()
    body = tree[i+1:tree.rfind('}')]
    parts, d, cur = [], 0, ''
    for ch in body:
        if ch == ',' and d == 0: parts.append(cur); cur = ''; continue
        if ch == '{': d += 1
        if ch == '}': d -= 1
        cur += ch
    parts.append(cur)
    pre = [x for x in prefix.split('::') if x]
    res = []
    for q in parts:
        if not q.strip(): continue
        for e in expand(q):
            res.append(pre + ([] if e == ['self'] else e))
    return res

def absolute(p, segs):
    me = list(mod_path(p))
    base = me if is_modfile(p) else me  # module path of this file
    out = list(base)
    i = 0
    if segs and segs[0] == 'crate': out, i = [], 1
    elif segs and segs[0] in ('self', 'super'):
        while i < len(segs) and segs[i] in ('self', 'super'):
            if segs[i] == 'super': out = out[:-1]
            i += 1
    else:
        # a relative path: a child module of this one (2018 edition), else external
        if tuple(base + [segs[0]]) not in bymod: return None
    return out + segs[i:]

# re-exports: per module file, name -> absolute target path
reexp = {}
for p, s in clean.items():
    for m in re.finditer(r'\bpub(\([^)]*\))?\s+use\s+([^;]+);', s):
        for segs in expand(m.group(2)):
            a = absolute(p, segs)
            if a is None: continue
            alias = re.search(r'\bas\s+(\w+)', m.group(2))
            reexp.setdefault(mod_path(p), {})[segs[-1]] = a
    # glob re-exports
def resolve(a, depth=0):
    for n in range(len(a), -1, -1):
        t = tuple(a[:n])
        if t in bymod:
            rest = a[n:]
            if rest and depth < 20 and rest[0] in reexp.get(t, {}):
                return resolve(reexp[t][rest[0]] + rest[1:], depth + 1)
            return bymod[t]
    return None

edges = {p: set() for p in files if p not in test_only}
for p in edges:
    s = clean[p]
    paths = []
    for m in re.finditer(r'\buse\s+([^;]+);', s):
        paths += expand(m.group(1))
    for m in re.finditer(r'(?<![\w:])((?:crate|super|self)(?:::\w+)+)', s):
        paths.append(m.group(1).split('::'))
    for segs in paths:
        a = absolute(p, segs)
        if a is None: continue
        f = resolve(a)
        if f and f != p and f in edges and os.path.basename(f) != 'lib.rs':
            edges[p].add(f)
        # a use through a mod file also depends on that mod file's re-export target
sys.setrecursionlimit(10000)
idx, low, st, on, sccs, c = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in edges:
    if v not in idx: sc(v)
for comp in sccs:
    print('CYCLE:', ' '.join(sorted(comp)))
    for a in sorted(comp):
        print('   ', a, '->', ' '.join(sorted(b for b in edges[a] if b in comp)))
if '-v' in sys.argv:
    for p in sorted(edges): print(p, '->', ' '.join(sorted(edges[p])))
print(len(sccs), 'cycles')
