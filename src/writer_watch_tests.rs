//! The watchdog's list of started jobs stays bounded by the jobs still running.

use std::sync::{Arc, Mutex};

use super::{Direct, DirectState, Watch, Watched, WATCH_COMPACT_MIN};
use crate::sync::lock;

fn watched(state: DirectState, n: u64) -> Watched {
    Watched {
        deadline: tokio::time::Instant::now(),
        direct: Arc::new(Direct {
            state: Mutex::new(state),
        }),
        hash: [0; 32],
        seq: n,
    }
}

/// 100,000 jobs that finished at once behind one that has not (timed out, waiting for its
/// disk call): the list never holds more than `WATCH_COMPACT_MIN` of them, the unfinished
/// one stays first, and every finished job dropped was finished.
#[tokio::test]
async fn finished_jobs_are_dropped_as_they_pile_up() {
    let watch = Watch::default();
    watch.register(watched(DirectState::GaveUp, 0));
    let mut longest = 0;
    for n in 1..=100_000 {
        watch.register(watched(DirectState::Finished, n));
        longest = longest.max(lock(&watch.state).jobs.len());
    }
    let st = lock(&watch.state);
    assert_eq!(longest, WATCH_COMPACT_MIN);
    assert_eq!(st.jobs.front().map(|w| w.seq), Some(0));
    assert_eq!(st.jobs.iter().filter(|w| !w.direct.finished()).count(), 1);
    // The 64th finished job finds 64 watched: they shrink to the unfinished one, and it makes
    // 2; from then on every 63 jobs make a cycle from 2 to 64: after 100,000 jobs,
    // 2 + (100,000 - 64) mod 63 = 2 + 18.
    assert_eq!(st.jobs.len(), 20);
}

/// Jobs still running are never dropped: 1,000 unfinished jobs stay, in order, however many
/// compactions ran.
#[tokio::test]
async fn unfinished_jobs_are_all_kept_in_order() {
    let watch = Watch::default();
    for n in 0..1000 {
        watch.register(watched(DirectState::GaveUp, n));
        watch.register(watched(DirectState::Finished, 10_000 + n));
    }
    let st = lock(&watch.state);
    let unfinished: Vec<u64> = st
        .jobs
        .iter()
        .filter(|w| !w.direct.finished())
        .map(|w| w.seq)
        .collect();
    assert_eq!(unfinished, (0..1000).collect::<Vec<_>>());
    assert!(st.jobs.len() <= 2 * 1000 + 1, "{}", st.jobs.len());
}
