//! What the value tests share besides the crate's [`TestCache`] (reopened with the same or
//! another codec): the round-trip checks every value goes through, real-shaped provider
//! bodies, seeded floats.

#![allow(dead_code)] // each test module uses its own part of the fixture

use std::fmt::Debug;
use std::time::Duration;

use answercache::agent::Controls;
use answercache::workload::Rng;
use answercache::{Encoding, Source, TieredCache};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use answercache::testing::TestCache;

/// An `f32` vector compared bit for bit (`-0.0 != 0.0`), serialized exactly as a `Vec<f32>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bits(pub Vec<f32>);

impl PartialEq for Bits {
    fn eq(&self, other: &Bits) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// A float shaped like an embedding component: uniform in (-0.125, 0.125), full mantissa.
pub fn component(rng: &mut Rng) -> f32 {
    let r = rng.next_u64();
    let mantissa = (r >> 32) as u32 & 0x007F_FFFF;
    let exponent = 110 + (r % 14) as u32; // 2^-17 .. 2^-4
    let sign = ((r >> 20) & 1) as u32;
    f32::from_bits(sign << 31 | exponent << 23 | mantissa)
}

/// Any finite f32 bit pattern (subnormals and extremes included).
pub fn any_finite_f32(rng: &mut Rng) -> f32 {
    loop {
        let f = f32::from_bits((rng.next_u64() >> 16) as u32);
        if f.is_finite() {
            return f;
        }
    }
}

/// A 1536-dimension embedding from `seed`, with a few edge values in it.
pub fn embedding(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<f32> = (0..1536).map(|_| component(&mut rng)).collect();
    v[0] = -0.0;
    v[1] = 0.0;
    v[2] = f32::MIN_POSITIVE;
    v[3] = f32::MIN_POSITIVE / 8.0; // subnormal
    v[4] = f32::MAX;
    v[5] = f32::MIN;
    v[6] = f32::EPSILON;
    v[7] = 1.0 / 3.0;
    v
}

/// A full OpenAI chat completion body, as the API answers: a tool call, content, a refusal
/// of null, annotations, logprobs of null, usage with both token details, system
/// fingerprint, service tier.
pub const CHAT_COMPLETION_JSON: &str = include_str!("chat_completion.json");

/// An OpenAI embeddings body, as the API answers.
pub const EMBEDDING_JSON: &str = r#"{
  "object": "list",
  "data": [
    {
      "object": "embedding",
      "index": 0,
      "embedding": [-0.006929283, -0.005336422, 0.00047350125, -0.024047505, 0.0, -0.0]
    },
    {
      "object": "embedding",
      "index": 1,
      "embedding": [0.0023064255, -0.009327292, 0.015797347, -0.0077780345, 1e-45, 3.4028235e38]
    }
  ],
  "model": "text-embedding-3-small",
  "usage": {
    "prompt_tokens": 8,
    "total_tokens": 8
  }
}"#;

/// A loader that must not run: its error says so if it does.
pub async fn must_not_load<V>() -> Result<V, &'static str> {
    Err("this loader must not run: the value is cached")
}

/// Before a reopen: `set` then `get` from the hot tier; `get_or_insert` loads on a fresh key,
/// then answers from the hot tier. Keys: `<name>/set` and `<name>/load`.
pub async fn check_fresh<V>(cache: &TieredCache, name: &str, value: &V, encoding: Encoding)
where
    V: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let set_key = format!("{name}/set");
    cache.set(&set_key, value).await.unwrap();
    let got = cache.get_answer::<V>(&set_key).await.unwrap().unwrap();
    assert_eq!(got.value, *value, "{name}: set then get");
    assert_eq!(
        (got.source, got.encoding),
        (Source::Hot, encoding),
        "{name}"
    );
    assert_eq!(
        cache.get::<V>(&set_key).await.unwrap().as_ref(),
        Some(value)
    );

    let load_key = format!("{name}/load");
    let v = value.clone();
    let loaded = cache
        .get_or_insert_answer(&load_key, &Controls::new(), || async move {
            Ok::<_, std::convert::Infallible>(v)
        })
        .await
        .unwrap();
    assert_eq!(loaded.value, *value, "{name}: loaded");
    assert_eq!((loaded.source, loaded.encoding), (Source::Loaded, encoding));
    let again = cache
        .get_or_insert_answer(&load_key, &Controls::new(), must_not_load::<V>)
        .await
        .unwrap();
    assert_eq!(
        again.value, *value,
        "{name}: loaded, then from the hot tier"
    );
    assert_eq!((again.source, again.encoding), (Source::Hot, encoding));
}

/// After a reopen: what [`check_fresh`] stored comes back from the warm tier (then the hot
/// tier), through `get` and through `get_or_insert`.
pub async fn check_reopened<V>(cache: &TieredCache, name: &str, value: &V, encoding: Encoding)
where
    V: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let set_key = format!("{name}/set");
    let got = cache.get_answer::<V>(&set_key).await.unwrap().unwrap();
    assert_eq!(got.value, *value, "{name}: warm read after reopen");
    assert_eq!(
        (got.source, got.encoding),
        (Source::Warm, encoding),
        "{name}"
    );
    let got = cache.get_answer::<V>(&set_key).await.unwrap().unwrap();
    assert_eq!(got.value, *value, "{name}: promoted to the hot tier");
    assert_eq!(
        (got.source, got.encoding),
        (Source::Hot, encoding),
        "{name}"
    );

    let load_key = format!("{name}/load");
    let got = cache
        .get_or_insert_answer(&load_key, &Controls::new(), must_not_load::<V>)
        .await
        .unwrap();
    assert_eq!(got.value, *value, "{name}: loaded value after reopen");
    assert_eq!(
        (got.source, got.encoding),
        (Source::Warm, encoding),
        "{name}"
    );
    let got = cache
        .get_or_insert_answer(&load_key, &Controls::new(), must_not_load::<V>)
        .await
        .unwrap();
    assert_eq!(
        (got.source, got.encoding),
        (Source::Hot, encoding),
        "{name}"
    );
    assert_eq!(got.value, *value);
}

/// Two callers of the fresh key `<name>/join`: the first loads (its loader thinks for a
/// second of the paused clock), the second arrives while that load is in flight and is
/// served by it. Needs a paused-clock runtime.
pub async fn check_joined<V>(cache: &TieredCache, name: &str, value: &V, encoding: Encoding)
where
    V: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let key = format!("{name}/join");
    let v = value.clone();
    let controls = Controls::new();
    let leader = cache.get_or_insert_answer(&key, &controls, || async move {
        tokio::time::sleep(Duration::from_secs(1)).await; // the model thinks
        Ok::<_, std::convert::Infallible>(v)
    });
    let joiner = async {
        while cache.loads_in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cache
            .get_or_insert_answer(&key, &controls, || async {
                Err::<V, _>("the joiner's loader must not run: a load is in flight")
            })
            .await
    };
    let (led, joined) = tokio::join!(leader, joiner);
    let (led, joined) = (led.unwrap(), joined.unwrap());
    assert_eq!(led.value, *value, "{name}: leader");
    assert_eq!((led.source, led.encoding), (Source::Loaded, encoding));
    assert_eq!(joined.value, *value, "{name}: joiner");
    assert_eq!((joined.source, joined.encoding), (Source::Joined, encoding));
}
