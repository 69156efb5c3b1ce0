//! Savings: the cost the caller gives an answer is stored with it (on disk too) and summed
//! over every hit, from either tier, and over every caller served by another caller's load;
//! `loader_calls` counts the model calls made, so calls − loader_calls were saved.

use std::time::Duration;

use answercache::agent::Controls;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn cost_saved_sums_the_cost_of_every_hit_in_both_tiers() {
    let mut f = TestCache::new().await;
    let c = Controls::new().cost_by(|a: &Answer| a.tokens);
    let load = || async { ok(answer("long essay", 120)) };
    for _ in 0..4 {
        f.get_or_insert_with_controls("essay", &c, load)
            .await
            .unwrap();
    }
    let s = f.stats();
    assert_eq!((s.loader_calls, s.hot_hits, s.cost_saved), (1, 3, 360));

    // The cost is persisted with the entry: a hit after a restart (from disk, then from
    // memory) saves it again.
    f.reopen().await;
    for _ in 0..2 {
        f.get_or_insert_with_controls("essay", &c, load)
            .await
            .unwrap();
    }
    let s = f.stats();
    assert_eq!(
        (s.loader_calls, s.warm_hits, s.hot_hits, s.cost_saved),
        (0, 1, 1, 240)
    );
    // A plain get is a hit like any other.
    let _: Option<Answer> = f.get("essay").await.unwrap();
    assert_eq!(f.stats().cost_saved, 360);
}

#[tokio::test(start_paused = true)]
async fn coalesced_callers_save_the_cost_of_the_load_they_shared() {
    let f = TestCache::new().await;
    let c = Controls::new().cost(50);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (cache, c) = (f.cache.clone(), c.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with_controls("q", &c, || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        ok(answer("shared", 999))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = f.stats();
    // Ten calls, one model call: one miss and nine joined, each saving the fixed cost of 50.
    assert_eq!(
        (s.loader_calls, s.misses, s.joined, s.cost_saved),
        (1, 1, 9, 450)
    );

    // set_with_controls stores the cost too.
    f.set_with_controls("manual", &answer("m", 1), &Controls::new().cost(7))
        .await
        .unwrap();
    let _: Option<Answer> = f.get("manual").await.unwrap();
    let _: Option<Answer> = f.get("manual").await.unwrap();
    assert_eq!(f.stats().cost_saved, 464);
}

/// Costs are the caller's unit and can be any u64: their sum saturates, it never wraps (two
/// warm hits of cost u64::MAX once summed to u64::MAX - 1).
#[tokio::test(start_paused = true)]
async fn cost_saved_saturates_instead_of_wrapping() {
    let mut f = TestCache::with(|b| b.hot_capacity_bytes(0)).await;
    f.set_with_controls("q", &answer("a", 1), &Controls::new().cost(u64::MAX))
        .await
        .unwrap();
    f.reopen().await;
    for _ in 0..2 {
        assert_eq!(f.get::<Answer>("q").await.unwrap(), Some(answer("a", 1)));
    }
    let s = f.stats();
    assert_eq!((s.warm_hits, s.cost_saved), (2, u64::MAX));
}
