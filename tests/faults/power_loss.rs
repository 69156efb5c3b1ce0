//! Power loss at every fs call of the write path, over `CrashFs`: the durable image (file data
//! as of its fsync, names as of their directory's fsync) is all a restarted machine finds.
//!
//! For each crash point N = 0, 1, 2, ... the cache opens (write-through, fsync), runs a fixed
//! workload (new keys in new fan-out directories, overwrites, removes, a large value), and the
//! power goes off at the Nth fs call; the operation it interrupts is "in flight". The durable
//! image is then reopened with the real file system and must show: 0 torn entries (`verify`
//! clean), 0 acknowledged operations lost, 0 wrong values (each key holds its last
//! acknowledged value, or the in-flight one), 0 temp files after `open`. This is the test that
//! proves the fsync ordering, which `kill -9` cannot: the page cache survives a killed process.
//!
//! Two controls run the same sweep over a disk that lies (file fsyncs, then directory fsyncs,
//! do nothing) and must see torn entries, then lost ones: proof that the sweep would notice a
//! missing fsync.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use answercache::testing::CrashFs;

use crate::support::*;

#[derive(Debug, Clone, Copy)]
enum Step {
    Set(&'static str, u64, usize),
    Remove(&'static str),
}

const WORKLOAD: [Step; 8] = [
    Step::Set("new0", 1, 300),
    Step::Set("pre0", 2, 5000),
    Step::Remove("pre1"),
    Step::Set("new1", 3, 40_000),
    Step::Set("new0", 4, 100),
    Step::Remove("new1"),
    Step::Set("pre1", 5, 2000),
    Step::Set("new2", 6, 700),
];

const PRE_KEYS: u64 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    None,
    FileSyncs,
    DirSyncs,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    existing: bool,
    lie: Lie,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    points: u64,
    acked: u64,
    torn: u64,
    lost: u64,
    wrong: u64,
    temps_after_open: u64,
}

/// key -> value sequence number (None: absent).
type Model = BTreeMap<String, Option<u64>>;

fn pre_key(i: u64) -> String {
    format!("pre{i}")
}

fn runtime_ct() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache directory holding `pre0..pre5`, written and closed by a healthy process.
async fn template(root: &Path) -> Model {
    let cache = builder(root).build().await.unwrap();
    let mut model = Model::new();
    for i in 0..PRE_KEYS {
        let k = pre_key(i);
        cache
            .set_bytes(&k, value(&k, 0, 100 + i, 1500))
            .await
            .unwrap();
        model.insert(k, Some(100 + i));
    }
    cache.close().await.unwrap();
    model
}

/// Runs the workload with the power cut after `n` calls. `None` once the workload completes
/// without reaching call `n + 1`.
async fn crash_at(sc: Scenario, n: u64, template_dir: &Path, pre: &Model) -> Option<Tally> {
    let dir = scratch_dir();
    let root = dir.path().join("root");
    let mut model = Model::new();
    if sc.existing {
        copy_dir(template_dir, &root).unwrap();
        model = pre.clone();
    }
    let fs = Arc::new(CrashFs::new(&root).unwrap());
    fs.drop_file_syncs(sc.lie == Lie::FileSyncs);
    fs.drop_dir_syncs(sc.lie == Lie::DirSyncs);
    fs.power_off_after(n);
    let cache = builder(fs.root()).fs(fs.clone()).build().await.unwrap();
    // Let the startup scan finish first, so that the call order is the same in every run.
    for _ in 0..2000 {
        if cache.stats().warm_index_complete || fs.is_powered_off() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut tally = Tally {
        points: 1,
        ..Tally::default()
    };
    let mut in_flight = None;
    for step in WORKLOAD {
        match step {
            // After the power goes, a write-through set or remove says it is not on disk;
            // the flush below reports it too.
            Step::Set(k, seq, len) => {
                persisted(cache.set_bytes(k, value(k, 0, seq, len)).await);
            }
            Step::Remove(k) => {
                persisted(cache.remove(k).await);
            }
        }
        if cache.flush().await.is_err() {
            in_flight = Some(step);
            break;
        }
        tally.acked += 1;
        match step {
            Step::Set(k, seq, _) => model.insert(k.to_owned(), Some(seq)),
            Step::Remove(k) => model.insert(k.to_owned(), None),
        };
    }
    let _ = cache.close().await;
    if !fs.is_powered_off() {
        assert!(
            in_flight.is_none(),
            "{}: a write failed with the power on",
            sc.name
        );
        return None;
    }
    let image = dir.path().join("image");
    fs.crash(&image).unwrap();

    let report = verify_report(&image);
    tally.torn = report.corrupted.len() as u64 + report.io_errors.len() as u64;
    let reopened = builder(&image).build().await.unwrap();
    tally.temps_after_open = temp_files(&image) as u64;
    for (k, want) in &model {
        let found = reopened
            .get_bytes(k)
            .await
            .unwrap()
            .map(|v| check_value(k, &v).map(|(_, s)| s));
        let also = match in_flight {
            Some(Step::Set(fk, seq, _)) if fk == k => Some(Some(seq)),
            Some(Step::Remove(fk)) if fk == k => Some(None),
            _ => None,
        };
        match found {
            Some(Err(_)) => tally.wrong += 1,
            Some(Ok(s)) if Some(s) == *want || also == Some(Some(s)) => {}
            None if want.is_none() || also == Some(None) => {}
            None => tally.lost += 1,
            Some(Ok(_)) => tally.wrong += 1,
        }
    }
    // A key the workload never acknowledged may only hold its in-flight value.
    if let Some(Step::Set(k, seq, _)) = in_flight {
        if !model.contains_key(k) {
            if let Some(v) = reopened.get_bytes(k).await.unwrap() {
                tally.wrong += u64::from(check_value(k, &v) != Ok((0, seq)));
            }
        }
    }
    reopened.close().await.unwrap();
    Some(tally)
}

fn sweep(sc: Scenario, template_dir: &Path, pre: &Model) -> Tally {
    let rt = runtime_ct();
    let mut total = Tally::default();
    for n in 0.. {
        let Some(t) = rt.block_on(crash_at(sc, n, template_dir, pre)) else {
            break;
        };
        if t.torn + t.lost + t.wrong + t.temps_after_open > 0 {
            eprintln!("power-loss {} crash point {n}: {t:?}", sc.name);
        }
        total.points += t.points;
        total.acked += t.acked;
        total.torn += t.torn;
        total.lost += t.lost;
        total.wrong += t.wrong;
        total.temps_after_open += t.temps_after_open;
    }
    total
}

#[test]
fn crash_at_every_fs_call() {
    let dir = scratch_dir();
    let template_dir = dir.path().join("template");
    let pre = runtime_ct().block_on(template(&template_dir));
    let honest = [
        Scenario {
            name: "existing-root",
            existing: true,
            lie: Lie::None,
        },
        Scenario {
            name: "fresh-root",
            existing: false,
            lie: Lie::None,
        },
    ];
    let mut total = Tally::default();
    for sc in honest {
        let t = sweep(sc, &template_dir, &pre);
        assert!(t.points > 20, "{}: only {} crash points", sc.name, t.points);
        total.points += t.points;
        total.acked += t.acked;
        total.torn += t.torn;
        total.lost += t.lost;
        total.wrong += t.wrong;
        total.temps_after_open += t.temps_after_open;
    }
    // Controls: the same sweep on a lying disk must notice.
    let lying_files = sweep(
        Scenario {
            name: "control-lying-file-fsync",
            existing: true,
            lie: Lie::FileSyncs,
        },
        &template_dir,
        &pre,
    );
    let lying_dirs = sweep(
        Scenario {
            name: "control-lying-dir-fsync",
            existing: true,
            lie: Lie::DirSyncs,
        },
        &template_dir,
        &pre,
    );
    let controls_detected = u64::from(lying_files.torn > 0) + u64::from(lying_dirs.lost > 0);
    reliability(
        "power-loss",
        &[
            ("scenarios", &2),
            ("crash_points", &total.points),
            ("acked_ops", &total.acked),
            ("torn_entries", &total.torn),
            ("lost_entries", &total.lost),
            ("wrong_values", &total.wrong),
            ("temp_files_after_open", &total.temps_after_open),
            ("controls_detected", &format!("{controls_detected}/2")),
        ],
    );
    assert_eq!(controls_detected, 2, "{lying_files:?} {lying_dirs:?}");
    assert_eq!(
        (total.torn, total.lost, total.wrong, total.temps_after_open),
        (0, 0, 0, 0),
        "{total:?}"
    );
}
