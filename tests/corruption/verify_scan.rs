//! `answercache::verify::verify` over a directory holding everything at once: healthy entries
//! (some expired), the whole fixture corpus, a symlink, a FIFO, a planted directory, a newer
//! version and foreign files. The report names each corrupted file with the manifest's reason;
//! `repair` quarantines exactly those; a second verify is clean; the cache still serves every
//! healthy entry afterwards.

use std::collections::BTreeMap;

use answercache::testing::real_fs;
use answercache::verify::{verify_with_fs, VerifyOptions};
use answercache::warm::format;

use crate::corpus::{self, NEWER_VERSION};
use crate::support::{
    self, mkfifo, open, place, quarantine_name, rel_entry_path, text, verify, META, NOW,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_reason_repairs_and_comes_back_clean() {
    let dir = crate::support::dir();
    let root = dir.root();
    let fixtures = corpus::load();
    for f in &fixtures {
        place(root, f.key.as_bytes(), &f.bytes);
    }
    // Healthy: 6 live, 2 expired.
    let mut healthy = Vec::new();
    for i in 0..8u64 {
        let key = format!("healthy/{i}");
        let value = text(50 + 500 * i as usize, i);
        let meta = format::EntryMeta {
            expires_ms: if i < 2 { NOW - 1 } else { NOW + 3_600_000 },
            ..META
        };
        let file = format::encode(key.as_bytes(), &value, meta, 3).unwrap();
        place(root, key.as_bytes(), &file);
        healthy.push((key, value, file.len() as u64, i < 2));
    }
    // Not regular files, and foreign ones.
    let outside = tempfile::tempdir().unwrap();
    let sentinel = outside.path().join("sentinel");
    std::fs::write(&sentinel, b"outside").unwrap();
    std::os::unix::fs::symlink(&sentinel, support::prepare_path(root, b"kind/symlink")).unwrap();
    mkfifo(&support::prepare_path(root, b"kind/fifo"));
    std::fs::create_dir_all(support::prepare_path(root, b"kind/dir")).unwrap();
    std::fs::write(root.join("v2").join(".DS_Store"), b"x").unwrap();
    std::fs::write(
        support::entry_path(root, b"healthy/0").with_extension("orig"),
        b"x",
    )
    .unwrap();

    // The expected verdicts, by relative path.
    let mut want: BTreeMap<String, String> = fixtures
        .iter()
        .filter(|f| f.reason != NEWER_VERSION)
        .map(|f| (rel_entry_path(f.key.as_bytes()), f.reason.clone()))
        .collect();
    for k in ["kind/symlink", "kind/fifo", "kind/dir"] {
        want.insert(rel_entry_path(k.as_bytes()), "not-a-regular-file".into());
    }

    let options = VerifyOptions {
        now_ms: NOW,
        ..VerifyOptions::default()
    };
    let mut progress = Vec::new();
    let report =
        verify_with_fs(&real_fs(), root, &options, Some(&mut |n| progress.push(n))).unwrap();
    let total = (fixtures.len() + healthy.len() + 3) as u64;
    assert_eq!(report.entries_checked, total);
    assert_eq!(progress, (1..=total).collect::<Vec<_>>());
    assert_eq!(report.healthy, healthy.len() as u64);
    assert_eq!(
        report.healthy_bytes,
        healthy.iter().map(|h| h.2).sum::<u64>()
    );
    assert_eq!(report.expired, 2);
    assert_eq!(report.newer_version, 1);
    assert_eq!(report.foreign_files, 2);
    assert_eq!((report.quarantined, report.vanished), (0, 0));
    assert!(report.io_errors.is_empty(), "{:?}", report.io_errors);
    let got: BTreeMap<String, String> = report
        .corrupted
        .iter()
        .map(|c| (c.path.clone(), c.reason.name().to_owned()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(report.corrupted.len(), want.len(), "one line per file");
    assert_eq!(
        report.corrupted_by_reason,
        support::counts(want.values().map(String::as_str))
    );
    let fixture_bytes: u64 = fixtures
        .iter()
        .filter(|f| f.reason != NEWER_VERSION)
        .map(|f| f.bytes.len() as u64)
        .sum();
    assert_eq!(report.corrupted_bytes, fixture_bytes);
    assert!(!report.is_clean());
    // Nothing moved without `repair`.
    assert!(support::quarantined(root).is_empty());

    let repaired = verify(
        root,
        &VerifyOptions {
            repair: true,
            ..options.clone()
        },
    )
    .unwrap();
    assert_eq!(repaired.quarantined, want.len() as u64);
    assert_eq!(repaired.quarantined_bytes, fixture_bytes);
    let q = support::quarantined(root);
    assert_eq!(q.len(), want.len());
    for c in &repaired.corrupted {
        let hex = c.path.rsplit('/').next().unwrap();
        let name = format!("{NOW}-{}-{hex}", c.reason.name());
        assert_eq!(c.quarantined_as.as_deref(), Some(name.as_str()));
        assert_eq!(q[&name].field("reason"), Some(c.reason.name()));
        assert_eq!(q[&name].field("detail"), Some(c.detail.as_str()));
        assert!(
            !root.join(&c.path).exists() && std::fs::symlink_metadata(root.join(&c.path)).is_err()
        );
    }
    assert_eq!(std::fs::read(&sentinel).unwrap(), b"outside");

    let again = verify(
        root,
        &VerifyOptions {
            repair: true,
            ..options
        },
    )
    .unwrap();
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(again.entries_checked, healthy.len() as u64 + 1);
    assert_eq!(
        (again.healthy, again.newer_version),
        (healthy.len() as u64, 1)
    );
    assert_eq!(again.quarantined, 0);

    // The cache agrees: live entries hit, expired ones miss, nothing new is corrupt.
    let cache = open(&dir).await;
    for (key, value, _, expired) in &healthy {
        let got = cache.get_bytes(key).await.unwrap();
        if *expired {
            assert_eq!(got, None, "{key}");
        } else {
            assert_eq!(got.as_deref(), Some(&value[..]), "{key}");
        }
    }
    for f in &fixtures {
        assert_eq!(cache.get_bytes(&f.key).await.unwrap(), None);
    }
    let s = cache.stats();
    assert_eq!((s.corrupted, s.quarantined_files), (0, 0));
    assert_eq!(s.warm_hits, 6);
    cache.close().await.unwrap();
    // The quarantine names the read path would have used are the ones verify used.
    let f = fixtures.iter().find(|f| f.reason == "checksum").unwrap();
    assert!(q.contains_key(&quarantine_name(NOW, "checksum", f.key.as_bytes())));
}
