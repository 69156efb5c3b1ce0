//! The package (issue 13, "a publishable crate"): `cargo publish --dry-run` clean, the
//! packaged crate holds what its own tests and docs need, and the library builds with no
//! crate that only the tests and benches need.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn packaged() -> BTreeSet<String> {
    let out = cargo()
        .args(["package", "--list", "--allow-dirty"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file or directory the packaged tests, benches and examples read through
/// `CARGO_MANIFEST_DIR` or `include_str!` is in the package: a packager who runs the
/// packaged tests (the manifest says that is why they are included) must not see them fail
/// for a missing fixture.
#[test]
fn the_packaged_tests_find_their_fixtures() {
    let files = packaged();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut read = BTreeSet::new();
    for dir in ["tests", "benches", "examples"] {
        for f in walk(&root.join(dir)) {
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if !files.contains(&rel) {
                continue; // not packaged: not run by a packager
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("CARGO_MANIFEST_DIR")) {
                // `env!("CARGO_MANIFEST_DIR")).join("a/b")`: the joined literal.
                if let Some(rest) = line.split(".join(\"").nth(1) {
                    if let Some(p) = rest.split('"').next() {
                        read.insert(p.to_owned());
                    }
                }
            }
        }
    }
    let missing: Vec<&String> = read
        .iter()
        .filter(|p| root.join(p).exists())
        .filter(|p| {
            !files
                .iter()
                .any(|f| f == *p || f.starts_with(&format!("{p}/")))
        })
        .collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "read by packaged tests, not packaged"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(it) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in it {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// What a user needs is in the package: the library, the binary, the licences, the docs the
/// README links to, the format description; nothing of the repository's tooling.
#[test]
fn the_package_holds_what_a_user_needs() {
    let files = packaged();
    for need in [
        "Cargo.toml",
        "README.md",
        "FORMAT.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "docs/CLI.md",
        "docs/METRICS.md",
        "src/lib.rs",
        "src/bin/answercache/main.rs",
    ] {
        assert!(files.contains(need), "{need} is not packaged");
    }
    // Every relative link of the README resolves in the package.
    let readme = include_str!("../../README.md");
    let mut broken = Vec::new();
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap().split('#').next().unwrap();
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let t = target.trim_start_matches("./");
        if !files
            .iter()
            .any(|f| f == t || f.starts_with(&format!("{}/", t.trim_end_matches('/'))))
        {
            broken.push(target.to_owned());
        }
    }
    assert_eq!(
        broken,
        Vec::<String>::new(),
        "README links not in the package"
    );
    let tooling: Vec<&String> = files
        .iter()
        .filter(|f| {
            f.starts_with(".ci/")
                || f.starts_with("fuzz/")
                || f.starts_with(".github/")
                || f.starts_with("target/")
        })
        .collect();
    assert_eq!(tooling, Vec::<&String>::new());
}

/// The library's dependency tree (normal and build edges, no dev ones) holds none of the
/// crates only the tests and benches need, with no feature and with each library feature.
#[test]
fn the_library_needs_no_dev_only_crate() {
    let dev_only = [
        "tempfile",
        "criterion",
        "moka",
        "cacache",
        "foyer",
        "metrics-util",
        "tracing-subscriber",
        "async-openai",
    ];
    for features in ["", "metrics", "workload"] {
        let mut c = cargo();
        c.args([
            "tree",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--no-default-features",
            "--offline",
        ]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let found: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| dev_only.contains(name))
            .collect();
        assert_eq!(found, BTreeSet::new(), "features {features:?}");
    }
}

/// `cargo publish --dry-run --allow-dirty` runs clean: no warning but cargo's own "aborting
/// upload due to dry run". It needs the crates.io index (network): without it the test says
/// it is skipped, except under `CI=true`.
#[test]
fn publish_dry_run_is_clean() {
    let out = cargo()
        .args(["publish", "--dry-run", "--allow-dirty"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let offline = [
        "Unable to update registry",
        "failed to query",
        "Could not resolve",
        "failed to get",
    ]
    .iter()
    .any(|m| err.contains(m));
    if offline && std::env::var("CI").map_or(true, |v| v != "true") {
        println!("SKIPPED publish_dry_run_is_clean: the crates.io index is unreachable:\n{err}");
        return;
    }
    assert!(out.status.success(), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning"))
        .filter(|l| *l != "warning: aborting upload due to dry run")
        .collect();
    assert_eq!(warnings, Vec::<&str>::new(), "{err}");
}
