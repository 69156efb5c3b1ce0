//! LiteLLM's breaker logged a traceback per request while open. Here there is exactly one
//! event per state transition (and per mode change), whatever the traffic: counted with a
//! test subscriber over a workload of thousands of calls against a dead disk.

use std::sync::{Arc, Mutex};

use tiercache::testing::FsOp;
use tiercache::{BreakerState, Mode};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::support::*;

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Level, String)>>>);

impl<S: Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level <= Level::INFO {
            let mut msg = String::new();
            struct V<'a>(&'a mut String);
            impl tracing::field::Visit for V<'_> {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0.push_str(&format!("{v:?}"));
                    }
                }
            }
            event.record(&mut V(&mut msg));
            self.0.lock().unwrap().push((level, msg));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn one_event_per_transition_whatever_the_traffic() {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other test threads may have registered the callsites with no subscriber interested,
    // caching "never"; recompute now that this one is installed.
    tracing::callsite::rebuild_interest_cache();

    let t = TestCache::new();
    let cache = t
        .open(t.builder().failure_threshold(3).memory_only_after(5))
        .await;
    events.0.lock().unwrap().clear(); // drop the "opened" event
    t.fail(&[FsOp::WriteNew, FsOp::ReadFile], EIO);
    // 3 failures open the breaker (one event); then 5,000 calls are rejected silently.
    for i in 0..3 {
        cache.set(format!("k{i}"), &i).await.unwrap();
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    for i in 0..2500 {
        cache.set(format!("k{i}"), &i).await.unwrap();
        cache.get::<i32>(format!("other{i}")).await.unwrap();
    }
    let got = events.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Level::WARN);
    assert!(got[0].1.contains("breaker opened"), "{got:?}");
    assert_eq!(cache.stats().breaker_transitions, 1);
    assert_eq!(cache.stats().mode, Mode::Tiered);
}
