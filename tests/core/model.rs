//! The cache against a model: seeded random sequences of set, set_with_ttl, remove, get,
//! clock advances, flush, clear and close+reopen, replayed against a `HashMap` that knows
//! exactly what a cache with perfect memory would answer. The hot budget is tiny (8 entries,
//! 4 KiB) so that most reads go past it to the write queue or the disk, and some values do not
//! fit in memory at all; the clock is manual, so expiry is modelled to the millisecond,
//! including entries that expire while only on disk and are read after a restart. Every get
//! must equal the model; at the end, after a last close and reopen, the disk must equal the
//! model: every live key reads back, and no removed or never-set key has a file.

use std::collections::HashMap;
use std::time::Duration;

use answercache::workload::{markdown, Rng};
use answercache::Durability;

use crate::support::{open, OnDisk, TestCache};

const KEYS: usize = 40;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bytes(Vec<u8>),
    Text(String),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    /// Unix ms at which the entry stops being served; `None`: never.
    expires_ms: Option<u64>,
}

/// What a perfect cache holds.
#[derive(Debug, Default)]
struct Model {
    entries: HashMap<String, Entry>,
}

impl Model {
    fn live(&self, key: &str, now_ms: u64) -> Option<&Value> {
        let e = self.entries.get(key)?;
        match e.expires_ms {
            Some(t) if now_ms >= t => None,
            _ => Some(&e.value),
        }
    }
}

/// A value of a size drawn to cover every path: tiny, typical, and larger than the whole hot
/// budget (written to disk, never admitted to memory).
fn value(rng: &mut Rng) -> Value {
    let len = match rng.below(10) {
        0..=4 => rng.range(0, 64),
        5..=8 => rng.range(65, 1024),
        _ => rng.range(1025, 6000),
    };
    if rng.chance(0.5) {
        Value::Bytes(rng.bytes(len))
    } else {
        Value::Text(markdown(rng, len))
    }
}

async fn set(h: &TestCache, key: &str, v: &Value, ttl: Option<Duration>) {
    match (v, ttl) {
        (Value::Bytes(b), None) => h.set_bytes(key, b).await,
        (Value::Bytes(b), Some(t)) => h.set_bytes_with_ttl(key, b, t).await,
        (Value::Text(s), None) => h.set(key, s).await,
        (Value::Text(s), Some(t)) => h.set_with_ttl(key, s, t).await,
    }
    .unwrap();
}

/// A short description of a value for failure messages: its length and a digest.
fn describe(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "a miss".into(),
        Some(b) => format!(
            "{} bytes, blake3 {}",
            b.len(),
            &crate::support::hex_of(b)[..12]
        ),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Text(t) => format!("text of {}", describe(Some(t.as_bytes()))),
        Value::Bytes(b) => format!("bytes of {}", describe(Some(b))),
    }
}

/// What the model and the cache did to each key, for failure messages.
#[derive(Debug, Default)]
struct History(HashMap<String, Vec<String>>);

impl History {
    fn note(&mut self, key: &str, step: usize, now_ms: u64, what: impl Into<String>) {
        let ops = self.0.entry(key.to_owned()).or_default();
        ops.push(format!("step {step} @{now_ms}: {}", what.into()));
    }

    fn note_all(&mut self, step: usize, now_ms: u64, what: &str) {
        for ops in self.0.values_mut() {
            ops.push(format!("step {step} @{now_ms}: {what}"));
        }
    }

    fn of(&self, key: &str) -> String {
        let ops = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
        let recent = &ops[ops.len().saturating_sub(24)..];
        recent.join("\n  ")
    }
}

/// Reads `key` the way its model value was written and checks it.
async fn check(h: &TestCache, model: &Model, key: &str, what: &str, history: &History) {
    let now = answercache::Clock::now_ms(h.clock());
    let (want, got) = match model.live(key, now) {
        Some(Value::Text(want)) => {
            let got = h.get::<String>(key).await.unwrap();
            (Some(want.clone().into_bytes()), got.map(String::into_bytes))
        }
        Some(Value::Bytes(want)) => {
            let got = h.get_bytes(key).await.unwrap();
            (Some(want.clone()), got.map(|b| b.to_vec()))
        }
        None => (None, h.get_bytes(key).await.unwrap().map(|b| b.to_vec())),
    };
    assert!(
        got == want,
        "{what} @{now}: key {key} read {}, the model has {}; history of {key}:\n  {}",
        describe(got.as_deref()),
        describe(want.as_deref()),
        history.of(key)
    );
}

/// Where reads were served from over a whole run.
#[derive(Debug, Default)]
struct Served {
    hot: u64,
    warm: u64,
    queue: u64,
    miss: u64,
}

impl Served {
    fn add(&mut self, s: &answercache::Stats) {
        self.hot += s.hot_hits;
        self.warm += s.warm_hits;
        self.queue += s.queue_hits;
        self.miss += s.misses;
    }
}

async fn run(seed: u64, ops: usize, served: &mut Served) {
    let mut rng = Rng::new(seed);
    let mut h = open(|b| {
        b.hot_capacity_bytes(4 << 10)
            .hot_capacity_entries(8)
            .hot_shards(2)
            .durability(Durability::NoSync)
    })
    .await;
    let mut model = Model::default();
    let mut history = History::default();
    let mut sets = 0u64;
    for step in 0..ops {
        let key = format!("k{}", rng.below(KEYS));
        let what = format!("seed {seed} step {step}");
        let now = answercache::Clock::now_ms(h.clock());
        match rng.below(1000) {
            0..=299 => {
                let v = value(&mut rng);
                set(&h, &key, &v, None).await;
                history.note(&key, step, now, format!("set {}", short(&v)));
                model.entries.insert(
                    key,
                    Entry {
                        value: v,
                        expires_ms: None,
                    },
                );
                sets += 1;
            }
            300..=449 => {
                let v = value(&mut rng);
                let ttl = rng.range(0, 5000) as u64;
                set(&h, &key, &v, Some(Duration::from_millis(ttl))).await;
                history.note(&key, step, now, format!("set {} ttl {ttl} ms", short(&v)));
                model.entries.insert(
                    key,
                    Entry {
                        value: v,
                        expires_ms: Some(now + ttl),
                    },
                );
                sets += 1;
            }
            450..=549 => {
                h.remove(&key).await.unwrap();
                history.note(&key, step, now, "remove");
                model.entries.remove(&key);
            }
            550..=899 => {
                check(&h, &model, &key, &what, &history).await;
                history.note(&key, step, now, "get ok");
            }
            900..=959 => h.advance(Duration::from_millis(rng.range(1, 3000) as u64)),
            960..=979 => {
                h.flush().await.unwrap();
                history.note_all(step, now, "flush");
            }
            980..=994 => {
                served.add(&h.stats());
                h.reopen().await;
                history.note_all(step, now, "close + reopen");
            }
            _ => {
                h.clear().await.unwrap();
                history.note_all(step, now, "clear");
                model.entries.clear();
            }
        }
    }
    let s = h.stats();
    assert_eq!(
        (s.lost_writes, s.writes_failed, s.disk_errors),
        (0, 0, 0),
        "seed {seed}"
    );
    served.add(&s);

    // The disk now holds exactly the model: before any read (reads delete expired files),
    // no key without a model entry has a file.
    h.reopen().await;
    for i in 0..KEYS {
        let key = format!("k{i}");
        if !model.entries.contains_key(&key) {
            assert!(
                !h.on_disk(&key),
                "seed {seed}: removed {key} still has a file"
            );
        }
    }
    for i in 0..KEYS {
        let key = format!("k{i}");
        check(
            &h,
            &model,
            &key,
            &format!("seed {seed} after reopen"),
            &history,
        )
        .await;
        let now = answercache::Clock::now_ms(h.clock());
        assert_eq!(
            h.on_disk(&key),
            model.live(&key, now).is_some(),
            "seed {seed}: file of {key}"
        );
        check(&h, &model, &format!("never-set-{i}"), "never set", &history).await;
    }
    assert!(
        sets > ops as u64 / 3,
        "seed {seed}: the run did set values ({sets})"
    );
    h.close().await.unwrap();
}

/// Current-thread runtime: the writer runs only when the test awaits, so values sit in the
/// write queue for a while and reads find them there, as under load.
#[tokio::test]
async fn random_operations_match_a_hashmap_model() {
    let mut served = Served::default();
    // 104: the seed on which this test first caught a `clear` losing to a write in flight
    // (whether it does again depends on thread timing).
    for seed in [1, 2, 3, 104, 0xC0FFEE, 0xDEAD_BEEF] {
        run(seed, 3000, &mut served).await;
    }
    // The scenario reached every tier: the tiny hot budget pushed reads to the queue and disk.
    assert!(served.hot > 100, "{served:?}");
    assert!(served.warm > 100, "{served:?}");
    assert!(served.queue > 10, "{served:?}");
    assert!(served.miss > 100, "{served:?}");
}
