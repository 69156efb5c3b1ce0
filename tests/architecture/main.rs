//! The library's source files import each other without a cycle (docs/ARCHITECTURE.md,
//! "Layers"): a file never imports a file that imports it back, directly or through others.
//!
//! An edge `a.rs → b.rs` is a path in `a.rs` (outside comments and `#[cfg(test)] mod tests`)
//! that names an item of `b.rs`: `crate::x::y`, `super::y`, `self::y`, a `use` group
//! `crate::x::{y, z}`, or, in a `mod.rs`/`lib.rs`, `use child::...`. The longest prefix that is
//! a file decides which file is named. `lib.rs` is never a target (it re-exports everything).
//! Visibility paths (`pub(in crate::fs)`) are not imports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["warm", "store"]`) of a source file relative to `src/`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Source with comments and string literals blanked, and `#[cfg(test)]` modules removed
/// (inline ones by brace matching, so that what follows them is still read).
fn strip(src: &str) -> String {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < bytes.len() {
        if src[i..].starts_with("//") {
            i = src[i..].find('\n').map_or(bytes.len(), |e| i + e);
        } else if src[i..].starts_with("/*") {
            i = src[i..].find("*/").map_or(bytes.len(), |e| i + e + 2);
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else {
            let c = src[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    // `#[cfg(test)] mod x;` and `#[cfg(test)] mod x { ... }`.
    let mut cleaned = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        cleaned.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let decl = after.trim_start();
        let decl = decl.strip_prefix("pub(crate) ").unwrap_or(decl);
        if !decl.starts_with("mod ") {
            cleaned.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        match (decl.find(';'), decl.find('{')) {
            (Some(s), b) if b.is_none_or(|b| s < b) => rest = &decl[s + 1..],
            (_, Some(b)) => rest = &decl[matching_brace(decl, b).map_or(decl.len(), |e| e + 1)..],
            _ => rest = "",
        }
    }
    cleaned.push_str(rest);
    // Visibility paths are not imports.
    let mut out = String::with_capacity(cleaned.len());
    let mut rest = cleaned.as_str();
    while let Some(i) = rest.find("pub(in ") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(')').map_or(rest.len(), |e| e + 1);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The index of the brace closing the one at `open`.
fn matching_brace(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, ch) in s[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + k);
                }
            }
            _ => {}
        }
    }
    None
}

/// The paths of a use tree's group body (`a::B, c::{d, e as f}`), each as segments, with the
/// name it is known by (the last segment, or its `as` alias).
fn use_tree(body: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut items = Vec::new();
    for (k, ch) in body.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&body[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if let Some(b) = item.find('{') {
            let prefix: Vec<String> = item[..b]
                .trim_end_matches("::")
                .split("::")
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().to_owned())
                .collect();
            let end = matching_brace(item, b).unwrap_or(item.len());
            for (segs, name) in use_tree(&item[b + 1..end]) {
                out.push((prefix.iter().cloned().chain(segs).collect(), name));
            }
        } else {
            let mut parts = item.split(" as ");
            let path = parts.next().unwrap_or("").trim();
            let segs: Vec<String> = path.split("::").map(|p| p.trim().to_owned()).collect();
            let name = parts
                .next()
                .map(|a| a.trim().to_owned())
                .or_else(|| segs.last().cloned())
                .unwrap_or_default();
            let segs = segs.into_iter().filter(|s| s != "self").collect();
            out.push((segs, name));
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path starting at `base` (`crate`, `super`, `self`, or a child module name) in `src`,
/// as segment lists, with `use` groups expanded (nested groups too).
fn paths_from(src: &str, base: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut from = 0;
    while let Some(off) = src[from..].find(base) {
        let start = from + off;
        from = start + base.len();
        // Not the middle of a longer path (`super::super::x` is one path, read once).
        let before_ok =
            start == 0 || !(is_ident(bytes[start - 1] as char) || bytes[start - 1] == b':');
        if !before_ok || !src[from..].starts_with("::") {
            continue;
        }
        // Segments.
        let mut segs = Vec::new();
        let mut i = from;
        while src[i..].starts_with("::") {
            i += 2;
            let seg: String = src[i..].chars().take_while(|&c| is_ident(c)).collect();
            if seg.is_empty() {
                break;
            }
            i += seg.len();
            segs.push(seg);
        }
        if src[i..].starts_with('{') {
            let end = matching_brace(src, i).unwrap_or(src.len());
            for (tail, _) in use_tree(&src[i + 1..end]) {
                out.push(segs.iter().cloned().chain(tail).collect());
            }
        }
        out.push(segs);
    }
    out
}

/// The import graph of `files` (module path → source).
fn graph(files: &BTreeMap<Vec<String>, (PathBuf, String)>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    // What `lib.rs` re-exports: `crate::Name` names the file `Name` comes from.
    let mut reexports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((_, lib)) = files.get(&Vec::new()) {
        for stmt in strip(lib).split(';') {
            let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
                continue;
            };
            for (segs, name) in use_tree(rest) {
                reexports.insert(name, segs);
            }
        }
    }
    let resolve = |parts: &[String]| -> Option<PathBuf> {
        let expanded: Vec<String>;
        let parts = match parts.first().and_then(|first| reexports.get(first)) {
            Some(path) if !files.contains_key(&parts[..1]) => {
                expanded = path.iter().chain(&parts[1..]).cloned().collect();
                &expanded[..]
            }
            _ => parts,
        };
        (0..=parts.len())
            .rev()
            .find_map(|n| files.get(&parts[..n]).map(|(p, _)| p.clone()))
    };
    let mut edges = BTreeMap::new();
    for (me, (path, src)) in files {
        let src = strip(src);
        let is_mod = matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "lib.rs")
        );
        let own = if is_mod {
            me.clone()
        } else {
            me[..me.len().saturating_sub(1)].to_vec()
        };
        let parent = me[..me.len().saturating_sub(1)].to_vec();
        let mut targets: Vec<Vec<String>> = Vec::new();
        for segs in paths_from(&src, "crate") {
            targets.push(segs);
        }
        // `super::super::x`: each further `super` goes one module up.
        let join = |base: &[String], segs: Vec<String>| {
            let mut t = base.to_vec();
            for s in segs {
                if s == "super" {
                    t.pop();
                } else {
                    t.push(s);
                }
            }
            t
        };
        for segs in paths_from(&src, "super") {
            targets.push(join(&parent, segs));
        }
        for segs in paths_from(&src, "self") {
            targets.push(join(&own, segs));
        }
        if is_mod {
            // `use child::...` in a mod.rs: a relative path to a child module.
            for (other, _) in files.iter() {
                if other.len() == me.len() + 1 && other.starts_with(me) {
                    let child = &other[me.len()];
                    for stmt in src.split(';') {
                        let stmt = stmt.trim();
                        let stmt = stmt
                            .trim_start_matches("pub(crate) ")
                            .trim_start_matches("pub ");
                        if let Some(rest) = stmt.strip_prefix("use ") {
                            if rest.starts_with(&format!("{child}::")) {
                                for segs in paths_from(&format!(" {rest}"), child) {
                                    let mut full = me.clone();
                                    full.push(child.clone());
                                    full.extend(segs);
                                    targets.push(full);
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut to = BTreeSet::new();
        for t in targets {
            if let Some(f) = resolve(&t) {
                if f != *path && !f.ends_with("lib.rs") {
                    to.insert(f);
                }
            }
        }
        edges.insert(path.clone(), to);
    }
    edges
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        let edges = t.edges;
        for w in edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn library_sources(src: &Path) -> BTreeMap<Vec<String>, (PathBuf, String)> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Vec<String>, (PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("list src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(src).expect("under src").to_path_buf();
            if rel.starts_with("bin") {
                continue;
            }
            if p.is_dir() {
                walk(&p, src, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                out.insert(module_path(&rel), (rel, text));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

fn synthetic(files: &[(&str, &str)]) -> BTreeMap<Vec<String>, (PathBuf, String)> {
    files
        .iter()
        .map(|(p, s)| {
            (
                module_path(Path::new(p)),
                (PathBuf::from(p), (*s).to_owned()),
            )
        })
        .collect()
}

#[test]
fn the_library_has_no_import_cycle_between_source_files() {
    // `ARCHITECTURE_SRC=<other checkout>/src` checks another tree (e.g. an older commit).
    let src = std::env::var_os("ARCHITECTURE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let files = library_sources(&src);
    assert!(files.len() > 40, "read {} files", files.len());
    let edges = graph(&files);
    // The graph is not empty: the checker sees real imports.
    assert!(
        edges[Path::new("cache.rs")].contains(Path::new("warm/store.rs")),
        "cache.rs imports warm/store.rs: {:?}",
        edges[Path::new("cache.rs")]
    );
    let found = cycles(&edges);
    assert_eq!(
        found,
        Vec::<Vec<PathBuf>>::new(),
        "import cycles between source files"
    );
}

#[test]
fn the_checker_finds_a_cycle_through_a_use_group_a_super_path_and_a_mod_rs_reexport() {
    let files = synthetic(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::{b::Thing, x};"),
        (
            "b/mod.rs",
            "#[cfg(test)]\nmod tests_only;\nmod inner;\npub use inner::Thing;",
        ),
        ("b/inner.rs", "use super::super::c::Other;"),
        (
            "c.rs",
            "fn f() -> crate::a::A { todo!() } // crate::b is only named in a comment\n\
             const S: &str = \"crate::b::Thing\";",
        ),
        ("d.rs", "pub(in crate::a) fn g() {}"),
    ]);
    assert_eq!(
        names(&files),
        vec![vec!["a.rs", "b/inner.rs", "b/mod.rs", "c.rs"]],
        "a → b/mod.rs (read past its #[cfg(test)] mod line) → b/inner.rs → c → a; d.rs's \
         visibility path and c.rs's comment and string are no edges"
    );
}

#[test]
fn the_checker_finds_cycles_through_lib_rs_reexports_nested_groups_and_after_test_modules() {
    // Each pair is a cycle one of the ways a simpler checker missed (tests/adversary4).
    let files = synthetic(&[
        (
            "lib.rs",
            "mod a; mod b; mod c; mod d; mod e; mod f;\npub use a::{Top as Renamed};",
        ),
        // Through a lib.rs re-export (and its alias).
        ("a.rs", "use crate::b::B;"),
        ("b.rs", "fn g() -> crate::Renamed { todo!() }"),
        // A nested use group.
        ("c.rs", "use crate::{d::{inner::X, Y}};"),
        ("d.rs", "use crate::c::C;"),
        // After an inline test module.
        (
            "e.rs",
            "#[cfg(test)]\nmod tests {\n    fn t() { let _ = { 1 }; }\n}\nuse crate::f::F;",
        ),
        ("f.rs", "use super::e::E;"),
    ]);
    assert_eq!(
        names(&files),
        vec![
            vec!["a.rs", "b.rs"],
            vec!["c.rs", "d.rs"],
            vec!["e.rs", "f.rs"]
        ]
    );
}

/// The cycles of `files`, as file names.
fn names(files: &BTreeMap<Vec<String>, (PathBuf, String)>) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = cycles(&graph(files))
        .iter()
        .map(|c| c.iter().map(|p| p.display().to_string()).collect())
        .collect();
    found.sort();
    found
}
