//! The committed corpus in `quarantine-fixtures/`: it is what the generator produces, and each
//! file placed at its claimed key's path is a miss, is quarantined under the manifest's reason
//! with a sidecar, is counted exactly once under that reason, and harms no other key.

use std::collections::BTreeMap;

use answercache::warm::format::{self, Invalid};
use answercache::warm::layout::{hex, key_hash};
use answercache::{BreakerState, Mode};

use crate::corpus::{self, NEWER_VERSION};
use crate::support::{self, entry, open, place, quarantine_name, text, DEFAULT_LIMITS, NOW};

#[test]
fn fixtures_are_up_to_date() {
    let generated = corpus::generate();
    let dir = corpus::dir();
    if std::env::var_os("ANSWERCACHE_REGENERATE_FIXTURES").is_some_and(|v| v == "1") {
        // Stale files go, changed ones are replaced by rename: tests reading the corpus in
        // parallel see the old or the new bytes, never a half-written file.
        std::fs::create_dir_all(&dir).unwrap();
        let keep: Vec<&str> = generated.iter().map(|f| f.file.as_str()).collect();
        for old in std::fs::read_dir(&dir).unwrap() {
            let path = old.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".entry") && !keep.contains(&name.as_str()) {
                std::fs::remove_file(path).unwrap();
            }
        }
        let write = |name: &str, bytes: &[u8]| {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        };
        for f in &generated {
            write(&f.file, &f.bytes);
        }
        write("MANIFEST.tsv", corpus::manifest(&generated).as_bytes());
        eprintln!(
            "regenerated {} fixtures in {}",
            generated.len(),
            dir.display()
        );
    }
    let hint = "run `ANSWERCACHE_REGENERATE_FIXTURES=1 cargo test --test corruption fixtures_are_up_to_date` and review the diff";
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    assert_eq!(
        manifest,
        corpus::manifest(&generated),
        "MANIFEST.tsv is stale: {hint}"
    );
    for f in &generated {
        let committed =
            std::fs::read(dir.join(&f.file)).unwrap_or_else(|e| panic!("{}: {e}: {hint}", f.file));
        assert!(
            committed == f.bytes,
            "{} differs from the generator: {hint}",
            f.file
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".entry"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = generated.iter().map(|f| f.file.clone()).collect();
    assert_eq!(on_disk, listed, "stray fixture files: {hint}");
    assert!(generated.len() >= 25);
}

/// Each fixture means what the manifest says, decoded directly: a format change that turns a
/// fixture into a different kind of damage fails here first.
#[test]
fn each_fixture_decodes_to_its_reason() {
    let fixtures = corpus::load();
    let reasons: std::collections::BTreeSet<&str> =
        fixtures.iter().map(|f| f.reason.as_str()).collect();
    // Every reason a file's bytes can earn appears (`not-a-regular-file` is about the kind of
    // file, see `hostile`), plus the newer version that is not corruption.
    let want = [
        "bomb",
        "checksum",
        "decode",
        "flags",
        "key-mismatch",
        "magic",
        NEWER_VERSION,
        "oversize",
        "trailing-bytes",
        "truncated",
        "version-too-old",
    ];
    assert_eq!(reasons.into_iter().collect::<Vec<_>>(), want);
    for f in &fixtures {
        let got = match format::decode(&f.bytes, f.key.as_bytes(), &DEFAULT_LIMITS) {
            Ok(_) => panic!("{} decoded as a valid entry", f.file),
            Err(Invalid::NewerVersion(_)) => NEWER_VERSION.to_owned(),
            Err(Invalid::Corrupt(reason, _)) => reason.name().to_owned(),
        };
        assert_eq!(got, f.reason, "{}", f.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_a_miss_and_quarantined_with_its_reason() {
    let fixtures = corpus::load();
    let dir = crate::support::dir();
    let root = dir.root();
    let healthy: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("healthy/{i}"), text(100 + i * 300, i as u64)))
        .collect();
    for (k, v) in &healthy {
        place(root, k.as_bytes(), &entry(k.as_bytes(), v));
    }
    for f in &fixtures {
        place(root, f.key.as_bytes(), &f.bytes);
    }
    let cache = open(&dir).await;
    for f in &fixtures {
        let got = cache.get_bytes(&f.key).await.unwrap();
        assert!(got.is_none(), "{} was served", f.file);
    }
    for (k, v) in &healthy {
        let got = cache.get_bytes(k).await.unwrap();
        assert_eq!(got.as_deref(), Some(&v[..]), "{k}");
    }

    let corrupt: Vec<_> = fixtures
        .iter()
        .filter(|f| f.reason != NEWER_VERSION)
        .collect();
    let newer: Vec<_> = fixtures
        .iter()
        .filter(|f| f.reason == NEWER_VERSION)
        .collect();
    let s = cache.stats();
    assert_eq!(
        s.corrupted_by_reason,
        support::counts(corrupt.iter().map(|f| f.reason.as_str()))
    );
    assert_eq!(s.corrupted, corrupt.len() as u64);
    assert_eq!(s.quarantined_files, corrupt.len() as u64);
    let bytes: u64 = corrupt.iter().map(|f| f.bytes.len() as u64).sum();
    assert_eq!(s.quarantined_bytes, bytes);
    assert_eq!(s.newer_version_skipped, newer.len() as u64);
    assert_eq!(s.misses, fixtures.len() as u64);
    assert_eq!((s.warm_hits, s.hot_hits), (healthy.len() as u64, 0));
    assert_eq!(s.disk_errors, 0, "{:?}", s.disk_errors_by_kind);
    assert_eq!(
        (s.mode, s.breaker_state),
        (Mode::Tiered, BreakerState::Closed)
    );

    // The quarantine holds exactly the corrupt fixtures, named <time>-<reason>-<hex>, each
    // byte-identical to what was placed, each with its sidecar.
    let q = support::quarantined(root);
    let want: BTreeMap<String, &str> = corrupt
        .iter()
        .map(|f| {
            (
                quarantine_name(NOW, &f.reason, f.key.as_bytes()),
                f.file.as_str(),
            )
        })
        .collect();
    assert_eq!(
        q.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for f in &corrupt {
        let name = quarantine_name(NOW, &f.reason, f.key.as_bytes());
        let entry = &q[&name];
        assert_eq!(std::fs::read(&entry.path).unwrap(), f.bytes, "{}", f.file);
        assert_eq!(entry.field("reason"), Some(f.reason.as_str()), "{}", f.file);
        assert_eq!(
            entry.field("size"),
            Some(f.bytes.len().to_string().as_str()),
            "{}",
            f.file
        );
        assert_eq!(entry.field("time_ms"), Some(NOW.to_string().as_str()));
        let original = support::entry_path(root, f.key.as_bytes());
        assert_eq!(
            entry.field("original"),
            Some(original.to_string_lossy().as_ref())
        );
        assert!(
            entry.field("detail").is_some_and(|d| !d.is_empty()),
            "{}",
            f.file
        );
        assert!(!original.exists(), "{} still at its entry path", f.file);
    }
    // The newer-version file is untouched.
    for f in &newer {
        let path = support::entry_path(root, f.key.as_bytes());
        assert_eq!(std::fs::read(path).unwrap(), f.bytes);
        assert!(!q
            .keys()
            .any(|n| n.ends_with(&hex(&key_hash(f.key.as_bytes())))));
    }
    // A second round reads nothing corrupt: the files are gone, the counts do not move.
    for f in &corrupt {
        assert!(cache.get_bytes(&f.key).await.unwrap().is_none());
    }
    assert_eq!(cache.stats().corrupted, corrupt.len() as u64);
    cache.close().await.unwrap();
}
