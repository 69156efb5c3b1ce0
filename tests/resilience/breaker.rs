//! The breaker as the cache uses it: what opens it, what never does, its timer, its half-open
//! admissions under concurrency.

use std::time::Duration;

use answercache::testing::{Fault, FsOp, Rule};
use answercache::{BreakerState, Mode};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn opens_after_exactly_k_write_failures_and_values_are_still_served() {
    let t = dir();
    let cache = open(&t, |b| b.failure_threshold(3)).await;
    fail(&t, &[FsOp::WriteNew], EIO);
    for i in 0..2 {
        not_persisted(cache.set(format!("k{i}"), &i).await);
        assert_eq!(
            cache.breaker_state(),
            BreakerState::Closed,
            "after {} failures",
            i + 1
        );
    }
    not_persisted(cache.set("k2", &2).await);
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert_eq!(t.fs().calls(FsOp::WriteNew), 3);
    // While open: no disk call; the write-through set says it is not on disk, and the value
    // is served from memory.
    not_persisted(cache.set("k3", &3).await);
    assert_eq!(t.fs().calls(FsOp::WriteNew), 3);
    for i in 0..4 {
        assert_eq!(cache.get::<i32>(format!("k{i}")).await.unwrap(), Some(i));
    }
    let s = cache.stats();
    assert_eq!(errors(&cache, "io"), 3);
    assert_eq!(s.disk_errors, 3);
    assert_eq!(s.breaker_transitions, 1);
    assert_eq!(s.breaker_opens, 1);
    assert_eq!(s.breaker_rejections, 1);
    assert!(
        s.last_disk_error
            .as_deref()
            .is_some_and(|e| e.starts_with("write: ")),
        "{:?}",
        s.last_disk_error
    );
    assert_eq!(s.dirty_entries, 4);
    assert_eq!(s.mode, Mode::Tiered);
}

#[tokio::test(start_paused = true)]
async fn hidden_errors_still_open_it() {
    // LiteLLM's breaker never opened because errors were swallowed before it saw them. Here
    // `get` hides EIO from the caller (a miss), yet each one is a breaker failure.
    let t = dir();
    let cache = open(&t, |b| b.failure_threshold(3)).await;
    fail(&t, &[FsOp::ReadFile], EIO);
    for i in 0..3 {
        assert_eq!(
            cache.get::<String>(format!("missing{i}")).await.unwrap(),
            None
        );
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert_eq!(errors(&cache, "io"), 3);
    assert_eq!(cache.stats().misses, 3);
}

#[tokio::test(start_paused = true)]
async fn not_found_never_opens_it() {
    let t = dir();
    let cache = open(&t, |b| b.failure_threshold(1)).await;
    for i in 0..1000 {
        assert_eq!(cache.get::<u8>(format!("nope{i}")).await.unwrap(), None);
    }
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    assert_eq!(cache.stats().disk_errors, 0);
    assert_eq!(cache.stats().misses, 1000);
    // One read per get, plus the fence read at open.
    assert_eq!(t.fs().calls(FsOp::ReadFile), 1001);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_corrupted_entries_never_open_it() {
    let t = dir();
    let layout = answercache::warm::layout::Layout::new(t.root());
    for i in 0..1000u32 {
        let key = format!("bad{i}");
        let hash = answercache::warm::layout::key_hash(key.as_bytes());
        std::fs::create_dir_all(layout.entry_dir(&hash)).unwrap();
        std::fs::write(layout.entry_path(&hash), format!("garbage {i}")).unwrap();
    }
    let cache = open(&t, |b| b.failure_threshold(1).memory_only_after(1)).await;
    for i in 0..1000u32 {
        assert_eq!(cache.get::<u8>(format!("bad{i}")).await.unwrap(), None);
    }
    let s = cache.stats();
    assert_eq!(s.breaker_state, BreakerState::Closed);
    assert_eq!(s.mode, Mode::Tiered);
    assert_eq!(s.corrupted, 1000);
    assert_eq!(s.corrupted_by_reason.get("magic"), Some(&1000));
    assert_eq!(s.quarantined_files, 1000);
    assert_eq!(s.disk_errors, 0);
}

#[tokio::test(start_paused = true)]
async fn efbig_is_per_entry_and_never_opens_it() {
    let t = dir();
    let cache = open(&t, |b| b.failure_threshold(1).memory_only_after(1)).await;
    fail(&t, &[FsOp::WriteNew], EFBIG);
    for i in 0..50 {
        // Not durable (it stays memory-only): a write-through set says so.
        not_persisted(cache.set(format!("big{i}"), &vec![i as u8; 100]).await);
    }
    let s = cache.stats();
    assert_eq!(s.breaker_state, BreakerState::Closed);
    assert_eq!(s.mode, Mode::Tiered);
    assert_eq!(s.writes_skipped, 50);
    assert_eq!(s.disk_errors_by_kind.get("file-too-large"), Some(&50));
    // Those entries stay memory-only: still served, still dirty (not on disk, so `flush`
    // reports them after trying each once more: a file-size limit may have been raised).
    assert_eq!(s.dirty_entries, 50);
    match cache.flush().await {
        Err(answercache::Error::NotPersisted { failed: 50, .. }) => {}
        other => panic!("flush returned {other:?}"),
    }
    let s = cache.stats();
    assert_eq!(
        (s.writes_skipped, s.breaker_state),
        (100, BreakerState::Closed)
    );
    assert_eq!(
        cache.get::<Vec<u8>>("big7").await.unwrap(),
        Some(vec![7u8; 100])
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_on_the_timer_without_traffic_then_closes_on_success() {
    let t = dir();
    let cache = open(&t, |b| {
        b.failure_threshold(3).open_timeout(Duration::from_secs(30))
    })
    .await;
    fail(&t, &[FsOp::ReadFile], EIO);
    for i in 0..3 {
        cache.get::<u8>(format!("k{i}")).await.unwrap();
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
    spin().await;
    assert_eq!(
        cache.breaker_state(),
        BreakerState::Open,
        "1 ms before the timeout"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    spin().await;
    assert_eq!(
        cache.breaker_state(),
        BreakerState::HalfOpen,
        "at the timeout, no traffic"
    );
    t.fs().clear_rules();
    assert_eq!(cache.get::<u8>("k0").await.unwrap(), None); // the probe call: NotFound = success
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    assert_eq!(cache.stats().breaker_transitions, 3);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_with_a_doubled_timeout() {
    let t = dir();
    let cache = open(&t, |b| {
        b.failure_threshold(1).open_timeout(Duration::from_secs(30))
    })
    .await;
    fail(&t, &[FsOp::ReadFile], EIO);
    cache.get::<u8>("a").await.unwrap();
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(cache.breaker_state(), BreakerState::HalfOpen);
    cache.get::<u8>("a").await.unwrap(); // probe fails
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(
        cache.breaker_state(),
        BreakerState::Open,
        "timeout is now 60 s"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(cache.breaker_state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_never_get_more_than_half_open_max_admissions() {
    let t = dir();
    let cache = open(&t, |b| {
        b.failure_threshold(1)
            .half_open_max(2)
            .open_timeout(Duration::from_secs(10))
    })
    .await;
    fail(&t, &[FsOp::ReadFile], EIO);
    cache.get::<u8>("x").await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(cache.breaker_state(), BreakerState::HalfOpen);
    t.fs().clear_rules();
    // Admitted calls hang, so every admission is still outstanding when the others arrive.
    t.fs()
        .add_rule(Rule::new(Fault::Hang).ops(&[FsOp::ReadFile]));
    let before = t.fs().calls(FsOp::ReadFile);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = cache.clone();
        tasks.push(tokio::spawn(
            async move { c.get::<u8>(format!("q{i}")).await },
        ));
    }
    // Only yields: tokio does not auto-advance a paused clock while blocking calls run. Every
    // caller has been admitted or rejected once the two admitted reads reached the disk and 62
    // rejections are counted; then more yields give any extra admission time to show.
    spin_until(|| {
        t.fs().calls(FsOp::ReadFile) - before == 2 && cache.stats().breaker_rejections == 62
    })
    .await;
    spin().await;
    assert_eq!(t.fs().calls(FsOp::ReadFile) - before, 2);
    assert_eq!(cache.stats().breaker_rejections, 62);
    t.fs().clear_rules();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), None);
    }
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn health_check_feeds_the_breaker_without_traffic() {
    let t = dir();
    let cache = open(&t, |b| {
        b.failure_threshold(3)
            .health_interval(Duration::from_secs(60))
    })
    .await;
    fail(&t, &[FsOp::WriteNew], EIO);
    for n in 1..=3u64 {
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(cache.stats().health_checks, n);
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert_eq!(errors(&cache, "io"), 3);
}
