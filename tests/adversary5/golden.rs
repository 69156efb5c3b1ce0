//! Transcripts: a test writes what it saw as text, and the text must be the file
//! `golden/<name>.txt` byte for byte. `ADV5_BLESS=1` writes the files instead. The files of
//! layout 2 were recorded on the commit that introduced it (0ae433c) and each was read and
//! checked against FORMAT.md before it was committed (FINDINGS.md says what was checked):
//! bless only after reading the new transcript, never to make a failing test pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::trees::Node;

use answercache::{Stats, TieredCache};

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/adversary5/golden")
        .join(format!("{name}.txt"))
}

/// Lines of transcripts that show a finding (FINDINGS.md) are not pinned: a transcript
/// records what the code does, and what it does there is wrong. Each is replaced by a marker
/// naming the finding; the finding's own test asserts what it should do, and fails until it is
/// fixed. (`[golden name, line prefix, finding]`: the line from the prefix on is replaced, and
/// the indented lines that follow it, a tree, are left out. Whole CLI commands are masked in
/// `cli::not_pinned`.)
const NOT_PINNED: &[(&str, &str, &str)] = &[
    // `invalidate_if` while a layout-1 directory is half moved: Ok, though `v1/` was not
    // scanned (F2).
    ("lib_locked_legacy_fan", "invalidate_if(expired*): ", "F2"),
    // A file moved to the quarantine, counted and reported as not moved when the quarantine
    // cannot be listed afterwards (F5).
    ("lib_locked_tmp", "after gets: ", "F5"),
    ("lib_locked_tmp", "verify(repair=true): ", "F5"),
    // `verify` of a directory of layout 1 no cache has moved yet sees none of its entries
    // (F3, as the CLI's scan commands).
    ("lib_legacy_clean", "verify(repair=false): ", "F3"),
    ("lib_legacy_clean", "verify(repair=true): ", "F3"),
    ("lib_legacy_clean", "tree after repair:", "F3"),
    ("lib_legacy_layout", "verify(repair=false): ", "F3"),
    ("lib_legacy_layout", "verify(repair=true): ", "F3"),
    ("lib_legacy_layout", "tree after repair:", "F3"),
    ("lib_locked_legacy_fan", "verify(repair=false): ", "F3"),
    ("lib_locked_legacy_fan", "verify(repair=true): ", "F3"),
    ("lib_locked_legacy_fan", "tree after repair:", "F3"),
    // `verify` of a root given through a symlink walks an empty directory (F8).
    ("lib_root_symlink", "verify(repair=false): ", "F8"),
    ("lib_root_symlink", "verify(repair=true): ", "F8"),
    ("lib_root_symlink", "tree after repair:", "F8"),
];

/// `text` with the lines of [`NOT_PINNED`] (and every CLI line of F6) replaced by markers.
pub fn mask_findings(name: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_masked_block = false;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if in_masked_block && body.starts_with("  ") {
            continue;
        }
        let pinned = NOT_PINNED
            .iter()
            .filter(|(golden, _, _)| *golden == name)
            .find_map(|(_, prefix, finding)| {
                body.starts_with(prefix)
                    .then(|| format!("{prefix}[not pinned: {finding}, see FINDINGS.md]"))
            });
        in_masked_block = pinned.is_some();
        let masked = pinned.or_else(|| mask_f6(name, body));
        out.push_str(masked.as_deref().unwrap_or(body));
        out.push_str(nl);
    }
    out
}

/// F6: `verify` names `<dir>/v1` (layout 1's directory, not there) when it cannot list the
/// cache directory or `v2`. The path is not pinned; the error after it is.
fn mask_f6(name: &str, body: &str) -> Option<String> {
    let at = body.find("  | error: ")?;
    let rest = &body[at + "  | error: ".len()..];
    let end = rest.find("/v1: ")?;
    (name.starts_with("cli_")).then(|| {
        format!(
            "{}  | error: [not pinned: F6, see FINDINGS.md]: {}",
            &body[..at],
            &rest[end + "/v1: ".len()..]
        )
    })
}

/// Compares `text` with the recorded transcript `name` (or records it under `ADV5_BLESS=1`),
/// once the lines showing a finding are masked ([`mask_findings`]).
#[track_caller]
pub fn check(name: &str, text: &str) {
    let masked = mask_findings(name, text);
    let text = masked.as_str();
    let path = golden_path(name);
    if std::env::var_os("ADV5_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it with ADV5_BLESS=1, then read it before committing it)",
            path.display()
        )
    });
    if want == text {
        return;
    }
    let mut diff = String::new();
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), text.lines().collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i).copied(), g.get(i).copied());
        if a != b {
            writeln!(
                diff,
                "line {}:\n  recorded: {}\n  now:      {}",
                i + 1,
                a.unwrap_or("<none>"),
                b.unwrap_or("<none>")
            )
            .unwrap();
        }
    }
    panic!(
        "transcript {name} differs from the recorded one ({}):\n{diff}",
        path.display()
    );
}

/// A transcript being written, with paths under `base` shown as `<BASE>`.
pub struct Transcript {
    pub text: String,
    base: String,
}

impl Transcript {
    pub fn new(base: &Path) -> Self {
        Transcript {
            text: String::new(),
            base: base.to_string_lossy().into_owned(),
        }
    }

    pub fn norm(&self, s: &str) -> String {
        s.replace(&self.base, "<BASE>")
    }

    pub fn line(&mut self, s: impl AsRef<str>) {
        let s = self.norm(s.as_ref());
        self.text.push_str(&s);
        self.text.push('\n');
    }

    /// The figures of the startup scan and the disk's health, as `Stats` shows them.
    pub fn stats(&mut self, label: &str, cache: &TieredCache) {
        let s = cache.stats();
        self.line(format!("{label}: {}", figures(&s)));
    }

    /// Every name under `dir`, `lstat`-ed.
    pub fn tree(&mut self, label: &str, dir: &Path) {
        self.line(format!("{label}:"));
        for (path, node) in self.snapshot(dir) {
            self.line(format!("  {path}: {node:?}"));
        }
    }

    /// The tree under `dir` as [`Transcript::tree`] shows it, for [`Transcript::changes`].
    pub fn snapshot(&self, dir: &Path) -> BTreeMap<String, Node> {
        let base = self.base.clone();
        let norm = move |s: &str| s.replace(&base, "<BASE>");
        crate::trees::snapshot(dir, &norm)
    }

    /// What changed from `before` to the tree under `dir` now: `+` added, `-` removed, `~`
    /// changed, in path order; `(none)` when nothing did.
    pub fn changes(&mut self, label: &str, before: &BTreeMap<String, Node>, dir: &Path) {
        let after = self.snapshot(dir);
        self.line(format!("{label}:"));
        let lines = diff(before, &after);
        if lines.is_empty() {
            self.line("  (none)");
        }
        for l in lines {
            self.line(format!("  {l}"));
        }
    }
}

/// The differences between two trees, as lines.
pub fn diff(before: &BTreeMap<String, Node>, after: &BTreeMap<String, Node>) -> Vec<String> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for p in paths {
        match (before.get(p), after.get(p)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!("~ {p}: {a:?} -> {b:?}")),
            (Some(a), None) => out.push(format!("- {p}: {a:?}")),
            (None, Some(b)) => out.push(format!("+ {p}: {b:?}")),
            (None, None) => {}
        }
    }
    out
}

/// The figures a walk decides.
pub fn figures(s: &Stats) -> String {
    format!(
        "warm_entries={} warm_bytes={} warm_disk_bytes={} warm_index_complete={} foreign_files={} \
         temp_files_swept={} disk_errors={} by_kind={:?} mode={:?} hot_entries={} \
         corrupted={:?} quarantined={} newer_skipped={} warm_evictions={} warm_expirations={} \
         last_disk_error={:?}",
        s.warm_entries,
        s.warm_bytes,
        s.warm_disk_bytes,
        s.warm_index_complete,
        s.foreign_files,
        s.temp_files_swept,
        s.disk_errors,
        s.disk_errors_by_kind,
        s.mode,
        s.hot_entries,
        s.corrupted_by_reason,
        s.quarantined_files,
        s.newer_version_skipped,
        s.warm_evictions,
        s.warm_expirations,
        s.last_disk_error,
    )
}
