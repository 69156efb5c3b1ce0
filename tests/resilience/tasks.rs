//! Background tasks stop on `close` and when the last handle is dropped: no task leaks.

use crate::support::*;

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn tasks_stop_on_close() {
    let before = alive();
    let t = TestCache::new();
    let cache = t.open(t.builder()).await;
    assert_eq!(alive(), before + 3, "writer, maintenance, resilience");
    cache.set("k", &1).await.unwrap();
    cache.close().await.unwrap();
    settle().await;
    assert_eq!(alive(), before);
    assert!(matches!(
        cache.get::<i32>("k").await,
        Err(tiercache::Error::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn tasks_stop_when_the_last_handle_is_dropped_and_queued_writes_land() {
    let before = alive();
    let t = TestCache::new();
    let cache = t
        .open(
            t.builder()
                .write_policy(tiercache::WritePolicy::WriteBehind),
        )
        .await;
    let clone = cache.clone();
    for i in 0..50 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    drop(cache);
    settle().await;
    assert_eq!(alive(), before + 3, "a clone is still alive");
    drop(clone);
    for _ in 0..10 {
        settle().await;
    }
    assert_eq!(alive(), before);
    let reopened = t.open(t.builder()).await;
    for i in 0..50 {
        assert_eq!(reopened.get::<i32>(format!("k{i}")).await.unwrap(), Some(i));
    }
}
