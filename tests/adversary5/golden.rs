//! Transcripts recorded on 2694034: a test writes what it saw as text, and the text must be
//! the file `golden/<name>.txt` byte for byte. `ADV5_BLESS=1` writes the files instead (run it
//! on the old code only: the point is that the new code reproduces the old transcript).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use answercache::{Stats, TieredCache};

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/adversary5/golden")
        .join(format!("{name}.txt"))
}

/// Compares `text` with the recorded transcript `name` (or records it under `ADV5_BLESS=1`).
#[track_caller]
pub fn check(name: &str, text: &str) {
    let path = golden_path(name);
    if std::env::var_os("ADV5_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it with ADV5_BLESS=1 on 2694034)",
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
                "line {}:\n  old: {}\n  new: {}",
                i + 1,
                a.unwrap_or("<none>"),
                b.unwrap_or("<none>")
            )
            .unwrap();
        }
    }
    panic!(
        "transcript {name} differs from the one recorded on 2694034 ({}):\n{diff}",
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
        let base = self.base.clone();
        let norm = move |s: &str| s.replace(&base, "<BASE>");
        self.line(format!("{label}:"));
        for (path, node) in crate::trees::snapshot(dir, &norm) {
            self.line(format!("  {path}: {node:?}"));
        }
    }
}

/// The figures a walk decides.
pub fn figures(s: &Stats) -> String {
    format!(
        "warm_entries={} warm_bytes={} warm_index_complete={} foreign_files={} \
         temp_files_swept={} disk_errors={} by_kind={:?} mode={:?} hot_entries={} \
         corrupted={:?} quarantined={} newer_skipped={} warm_evictions={} warm_expirations={} \
         last_disk_error={:?}",
        s.warm_entries,
        s.warm_bytes,
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
