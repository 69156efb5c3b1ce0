//! File size limit, for real: the child runs under `RLIMIT_FSIZE` below one entry's size, with
//! SIGXFSZ ignored (`sh -c 'trap "" XFSZ; ulimit -f ..; exec ..'`), so writing past the limit
//! fails with a real EFBIG instead of killing the process.
//!
//! EFBIG is about one entry, not the device: the breaker never moves (not even through five
//! oversized entries in a row), the mode stays Tiered, the oversized entries stay in memory
//! and are served from there, smaller entries keep landing on disk, no partial temp file is
//! left, and the process lives. An entry that was on disk before an oversized `set` of the
//! same key must not come back after a restart: the last `set` wins on disk too.

use std::time::Duration;

use answercache::{BreakerState, Mode};

use crate::support::*;

/// 64 KiB: a multiple of 512 for `ulimit -f`.
const LIMIT: u64 = 64 << 10;
const SMALL: usize = 2 << 10;
const LARGE: usize = 96 << 10;
const SETS: u64 = 48;

#[test]
fn efbig_is_per_entry() {
    if role().as_deref() == Some("fsize") {
        return child();
    }
    // Reaching the end (exit status 0, not SIGXFSZ) is the proof the process lives.
    run_child_in_temp_dir(
        &test_name(module_path!(), "efbig_is_per_entry"),
        "fsize",
        Wrap::FileSizeLimit(LIMIT),
    );
}

fn large(i: u64) -> bool {
    i % 4 == 1 || (20..25).contains(&i)
}

fn key(i: u64) -> String {
    format!("key{i}")
}

fn len(i: u64) -> usize {
    if large(i) {
        LARGE
    } else {
        SMALL
    }
}

fn sigxfsz_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    // SIGXFSZ is 25: bit 24.
    mask & (1 << 24) != 0
}

fn child() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Fsize);
    assert_eq!(
        (limit.current, limit.maximum),
        (Some(LIMIT), Some(LIMIT)),
        "RLIMIT_FSIZE is set"
    );
    assert!(sigxfsz_ignored(), "SIGXFSZ is ignored");
    let dir = child_dir();
    // The limit is real: a plain write past it fails with EFBIG.
    let e = std::fs::write(dir.join("big"), vec![0u8; LIMIT as usize + 1]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EFBIG));
    std::fs::remove_file(dir.join("big")).unwrap();

    let root = dir.join("cache");
    runtime().block_on(async {
        let cache = builder(&root)
            .failure_threshold(3)
            .memory_only_after(5)
            .open_timeout(Duration::from_millis(50))
            .recovery_interval(Duration::from_millis(200))
            // Health checks would write the oversized entries back (they are retried, a limit
            // can be raised): `flush` does it once below, so the counts stay exact.
            .health_interval(DAY)
            .build()
            .await
            .unwrap();
        // A small value first, then an oversized one of the same key.
        cache
            .set_bytes("over", value("over", 0, 1, SMALL))
            .await
            .unwrap();
        for i in 0..SETS {
            let k = key(i);
            // A value over the file-size limit lives in memory only: not persisted.
            let r = cache.set_bytes(&k, value(&k, 0, i, len(i))).await;
            assert_eq!(persisted(r), !large(i), "{k}");
        }
        let r = cache.set_bytes("over", value("over", 0, 2, LARGE)).await;
        assert!(!persisted(r));
        let n_large = (0..SETS).filter(|i| large(*i)).count() as u64 + 1;
        let n_small = SETS + 2 - n_large;
        // `flush` tries each oversized entry once more (EFBIG again) and reports exactly them:
        // they live in memory only.
        match cache.flush().await {
            Err(answercache::Error::NotPersisted { failed, .. }) => assert_eq!(failed, n_large),
            other => panic!("flush returned {other:?}"),
        }
        let efbig_errors = 2 * n_large;
        let s = cache.stats();
        assert_eq!(s.breaker_transitions, 0, "{s:?}");
        assert_eq!(s.breaker_state, BreakerState::Closed);
        assert_eq!(s.mode, Mode::Tiered);
        assert_eq!(s.disk_errors, efbig_errors, "{:?}", s.disk_errors_by_kind);
        assert_eq!(errors(&cache, "file-too-large"), efbig_errors);
        assert_eq!(s.writes_skipped, efbig_errors);
        assert_eq!(s.writes_ok, n_small);
        assert_eq!(s.writes_failed, 0);
        for i in 0..SETS {
            let got = cache.get_bytes(key(i)).await.unwrap().unwrap();
            assert_eq!(check_value(&key(i), &got), Ok((0, i)));
        }
        let got = cache.get_bytes("over").await.unwrap().unwrap();
        assert_eq!(check_value("over", &got), Ok((0, 2)));
        assert_eq!(temp_files(&root), 0, "a partial temp file was left");
        match cache.close().await {
            Err(answercache::Error::NotPersisted { failed, .. }) => assert_eq!(failed, n_large),
            other => panic!("close returned {other:?}"),
        }
        let report = verify_report(&root);
        assert!(report.is_clean(), "{report:?}");

        let reopened = builder(&root).build().await.unwrap();
        for i in 0..SETS {
            let got = reopened.get_bytes(key(i)).await.unwrap();
            if large(i) {
                assert_eq!(got, None, "{} never reached the disk", key(i));
            } else {
                assert_eq!(check_value(&key(i), &got.unwrap()), Ok((0, i)));
            }
        }
        let over = reopened.get_bytes("over").await.unwrap();
        let over = over.map(|v| check_value("over", &v).unwrap().1);
        // The last set of "over" was the oversized one: its older value must not come back.
        let stale_after_restart = u64::from(over == Some(1));
        reopened.close().await.unwrap();
        reliability(
            "file-size-limit",
            &[
                ("rlimit_fsize", &LIMIT),
                ("sets", &(SETS + 2)),
                ("efbig", &n_large),
                ("written", &n_small),
                ("breaker_transitions", &s.breaker_transitions),
                ("mode_changes", &s.memory_only_entries),
                ("wrong_values", &0),
                ("stale_values_after_restart", &stale_after_restart),
                ("leaked_files", &0),
                ("process_killed", &0),
            ],
        );
        assert_eq!(
            stale_after_restart, 0,
            "the value \"over\" had before its oversized set came back after a restart"
        );
    });
}
