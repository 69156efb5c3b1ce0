//! Schema evolution: a value stored under one shape of its type and read under another. An
//! added `#[serde(default)]` field reads old JSON entries (default filled); a changed field
//! type is a miss (`decode_misses` and `misses`, never a hit, never a wrong value), which
//! `get_or_insert` turns into one load whose value replaces the old entry. Under bincode an
//! added field is a miss too. The encoding is per entry: a cache reads what another codec
//! wrote.

use answercache::agent::Controls;
use answercache::{Codec, Encoding, Source, TieredCache};
use serde::{Deserialize, Serialize};

use crate::support::*;

/// The answer as first shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V1 {
    text: String,
    tokens: u32,
}

/// A later release added fields, with defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V2 {
    text: String,
    tokens: u32,
    #[serde(default)]
    model: String,
    #[serde(default)]
    cached: Option<bool>,
}

/// A later release changed a field's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V3 {
    text: String,
    tokens: String,
}

/// The counters these tests pin, in one comparable value.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    hot_hits: u64,
    warm_hits: u64,
    misses: u64,
    decode_misses: u64,
    cost_saved: u64,
    loader_calls: u64,
}

fn counts(cache: &TieredCache) -> Counts {
    let s = cache.stats();
    Counts {
        hot_hits: s.hot_hits,
        warm_hits: s.warm_hits,
        misses: s.misses,
        decode_misses: s.decode_misses,
        cost_saved: s.cost_saved,
        loader_calls: s.loader_calls,
    }
}

#[allow(clippy::too_many_arguments)]
fn c(hot: u64, warm: u64, misses: u64, decode: u64, cost: u64, loads: u64) -> Counts {
    Counts {
        hot_hits: hot,
        warm_hits: warm,
        misses,
        decode_misses: decode,
        cost_saved: cost,
        loader_calls: loads,
    }
}

fn v1() -> V1 {
    V1 {
        text: "Paris".into(),
        tokens: 1234,
    }
}

fn v2_of_v1() -> V2 {
    V2 {
        text: "Paris".into(),
        tokens: 1234,
        model: String::new(),
        cached: None,
    }
}

fn v3_new() -> V3 {
    V3 {
        text: "Paris, France".into(),
        tokens: "one thousand".into(),
    }
}

#[tokio::test]
async fn json_added_default_field_reads_and_changed_type_misses_in_the_hot_tier() {
    let f = TestCache::new().await;
    assert!(f
        .set_with_controls("answer", &v1(), &Controls::new().cost(40))
        .await
        .unwrap());

    let got = f.get_answer::<V2>("answer").await.unwrap().unwrap();
    assert_eq!(
        got.value,
        v2_of_v1(),
        "old entry read with the default filled in"
    );
    assert_eq!((got.source, got.encoding), (Source::Hot, Encoding::Json));
    assert_eq!(counts(&f), c(1, 0, 0, 0, 40, 0));

    assert_eq!(
        f.get_answer::<V3>("answer").await.unwrap(),
        None,
        "u32 -> String"
    );
    assert_eq!(counts(&f), c(1, 0, 1, 1, 40, 0));
    assert_eq!(
        f.get::<String>("answer").await.unwrap(),
        None,
        "struct -> string"
    );
    assert_eq!(counts(&f), c(1, 0, 2, 2, 40, 0));
    assert_eq!(
        f.get::<Vec<V1>>("answer").await.unwrap(),
        None,
        "struct -> list"
    );
    assert_eq!(counts(&f), c(1, 0, 3, 3, 40, 0));

    // The entry is untouched by the misses.
    assert_eq!(f.get::<V1>("answer").await.unwrap(), Some(v1()));
    assert_eq!(counts(&f), c(2, 0, 3, 3, 80, 0));
}

#[tokio::test]
async fn json_added_default_field_reads_and_changed_type_misses_in_the_warm_tier() {
    let mut f = TestCache::new().await;
    f.set_with_controls("answer", &v1(), &Controls::new().cost(40))
        .await
        .unwrap();
    f.reopen().await;

    let got = f.get_answer::<V2>("answer").await.unwrap().unwrap();
    assert_eq!(got.value, v2_of_v1());
    assert_eq!((got.source, got.encoding), (Source::Warm, Encoding::Json));
    assert_eq!(counts(&f), c(0, 1, 0, 0, 40, 0));
    assert_eq!(f.get::<V3>("answer").await.unwrap(), None);
    assert_eq!(counts(&f), c(0, 1, 1, 1, 40, 0));

    // The changed type first, straight from the disk.
    f.reopen().await;
    assert_eq!(f.get_answer::<V3>("answer").await.unwrap(), None);
    assert_eq!(counts(&f), c(0, 0, 1, 1, 0, 0));
    // The old type still reads it (from whichever tier holds it now: one hit, its cost).
    assert_eq!(f.get::<V1>("answer").await.unwrap(), Some(v1()));
    let n = counts(&f);
    assert_eq!(
        (
            n.hot_hits + n.warm_hits,
            n.misses,
            n.decode_misses,
            n.cost_saved
        ),
        (1, 1, 1, 40)
    );
}

/// `get_or_insert` as the new type over an old entry: one miss (one decode miss), one load,
/// and the new value replaces the old one.
async fn load_over_old_entry(f: &mut TestCache, key: &str, before: Counts) {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let got = f
        .get_or_insert_answer(key, &Controls::new().cost(25), || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(v3_new())
        })
        .await
        .unwrap();
    assert_eq!(calls.into_inner(), 1);
    assert_eq!(got.value, v3_new());
    assert_eq!((got.source, got.encoding), (Source::Loaded, Encoding::Json));
    assert_eq!(
        counts(f),
        c(
            before.hot_hits,
            before.warm_hits,
            before.misses + 1,
            before.decode_misses + 1,
            before.cost_saved,
            before.loader_calls + 1
        ),
        "{key}: one decode miss, one miss, one load"
    );
    let b = counts(f);

    let got = f.get_answer::<V3>(key).await.unwrap().unwrap();
    assert_eq!(got.value, v3_new());
    assert_eq!(got.source, Source::Hot);
    assert_eq!(
        f.get::<V1>(key).await.unwrap(),
        None,
        "the old type now misses"
    );
    let again = f
        .get_or_insert_answer(key, &Controls::new().cost(999), must_not_load::<V3>)
        .await
        .unwrap();
    assert_eq!((again.value, again.source), (v3_new(), Source::Hot));
    assert_eq!(
        counts(f),
        c(
            b.hot_hits + 2,
            b.warm_hits,
            b.misses + 1,
            b.decode_misses + 1,
            b.cost_saved + 50,
            b.loader_calls
        )
    );
    assert_eq!(f.stats().joined, 0);
}

#[tokio::test]
async fn get_or_insert_as_a_changed_type_loads_once_and_replaces_the_entry() {
    let mut f = TestCache::new().await;
    f.set_with_controls("in-memory", &v1(), &Controls::new().cost(40))
        .await
        .unwrap();
    f.set_with_controls("on-disk", &v1(), &Controls::new().cost(40))
        .await
        .unwrap();
    // The old entry in the hot tier.
    load_over_old_entry(&mut f, "in-memory", c(0, 0, 0, 0, 0, 0)).await;

    // The old entry only on disk.
    f.reopen().await;
    load_over_old_entry(&mut f, "on-disk", c(0, 0, 0, 0, 0, 0)).await;

    // The new values are what the disk holds now.
    f.reopen().await;
    for key in ["in-memory", "on-disk"] {
        let got = f.get_answer::<V3>(key).await.unwrap().unwrap();
        assert_eq!((got.value, got.source), (v3_new(), Source::Warm), "{key}");
        assert_eq!(f.get::<V2>(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(counts(&f), c(0, 2, 2, 2, 50, 0));
}

/// The bincode shape of [`V1`] with a field added, default or not: bincode cannot tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V2Bin {
    text: String,
    tokens: u32,
    #[serde(default)]
    model: String,
}

#[tokio::test]
async fn bincode_added_field_is_a_miss_and_a_load_replaces_the_entry() {
    let mut f = TestCache::with(|b| b.codec(Codec::Bincode)).await;
    f.set_with_controls("answer", &v1(), &Controls::new().cost(7))
        .await
        .unwrap();
    assert_eq!(f.get_answer::<V2Bin>("answer").await.unwrap(), None);
    assert_eq!(counts(&f), c(0, 0, 1, 1, 0, 0));
    assert_eq!(f.get::<V3>("answer").await.unwrap(), None, "u32 -> String");
    assert_eq!(counts(&f), c(0, 0, 2, 2, 0, 0));
    let got = f.get_answer::<V1>("answer").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Hot, Encoding::Bincode)
    );
    assert_eq!(counts(&f), c(1, 0, 2, 2, 7, 0));

    f.reopen().await;
    assert_eq!(
        f.get::<V2Bin>("answer").await.unwrap(),
        None,
        "from the disk"
    );
    assert_eq!(counts(&f), c(0, 0, 1, 1, 0, 0));

    f.reopen().await;
    let new = V2Bin {
        text: "Paris".into(),
        tokens: 1234,
        model: "m-2".into(),
    };
    let loaded = f
        .get_or_insert_answer("answer", &Controls::new().cost(9), || {
            let new = new.clone();
            async move { Ok::<_, std::convert::Infallible>(new) }
        })
        .await
        .unwrap();
    assert_eq!(
        (&loaded.value, loaded.source, loaded.encoding),
        (&new, Source::Loaded, Encoding::Bincode)
    );
    assert_eq!(counts(&f), c(0, 0, 1, 1, 0, 1));
    let got = f.get_answer::<V2Bin>("answer").await.unwrap().unwrap();
    assert_eq!((&got.value, got.source), (&new, Source::Hot));
    assert_eq!(
        f.get::<V1>("answer").await.unwrap(),
        None,
        "trailing bytes: a miss"
    );
    assert_eq!(counts(&f), c(1, 0, 2, 2, 9, 1));

    f.reopen().await;
    let got = f.get_answer::<V2Bin>("answer").await.unwrap().unwrap();
    assert_eq!((&got.value, got.source), (&new, Source::Warm));
}

#[tokio::test]
async fn each_entry_is_read_with_the_codec_it_was_written_with() {
    let mut f = TestCache::with(|b| b.codec(Codec::Json)).await;
    f.set("json", &v1()).await.unwrap();

    f.reopen_with(|b| b.codec(Codec::Bincode)).await;
    let got = f.get_answer::<V1>("json").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Warm, Encoding::Json)
    );
    // Still JSON: an added default field reads it.
    assert_eq!(f.get::<V2>("json").await.unwrap(), Some(v2_of_v1()));
    f.set("bincode", &v1()).await.unwrap();
    let got = f.get_answer::<V1>("bincode").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Hot, Encoding::Bincode)
    );
    let loaded = f
        .get_or_insert_answer("loaded-bincode", &Controls::new(), || async {
            Ok::<_, std::convert::Infallible>(v1())
        })
        .await
        .unwrap();
    assert_eq!(loaded.encoding, Encoding::Bincode);
    assert_eq!(counts(&f), c(2, 1, 1, 0, 0, 1));

    f.reopen_with(|b| b.codec(Codec::Json)).await;
    let got = f.get_answer::<V1>("bincode").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Warm, Encoding::Bincode)
    );
    let got = f
        .get_or_insert_answer("loaded-bincode", &Controls::new(), must_not_load::<V1>)
        .await
        .unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Warm, Encoding::Bincode)
    );
    let got = f.get_answer::<V1>("json").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v1(), Source::Warm, Encoding::Json)
    );
    // A bincode entry is bincode whatever the cache's codec now: the added field misses.
    assert_eq!(f.get::<V2>("bincode").await.unwrap(), None);
    assert_eq!(counts(&f), c(0, 3, 1, 1, 0, 0));
    // And a JSON cache's new value of the key is JSON again.
    f.set("bincode", &v1()).await.unwrap();
    let got = f.get_answer::<V2>("bincode").await.unwrap().unwrap();
    assert_eq!((got.value, got.encoding), (v2_of_v1(), Encoding::Json));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_of_another_types_load_loads_its_own_type() {
    let f = TestCache::new().await;
    let (cost3, cost5) = (Controls::new().cost(3), Controls::new().cost(5));
    let old = f.get_or_insert_answer("k", &cost3, || async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>(v1())
    });
    let new = async {
        while f.loads_in_flight() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        f.get_or_insert_answer("k", &cost5, || async {
            Ok::<_, std::convert::Infallible>(v3_new())
        })
        .await
    };
    let (old, new) = tokio::join!(old, new);
    let (old, new) = (old.unwrap(), new.unwrap());
    assert_eq!((old.value, old.source), (v1(), Source::Loaded));
    assert_eq!((new.value, new.source), (v3_new(), Source::Loaded));
    // Two loads, each a miss: callers of different types never share a load.
    assert_eq!(counts(&f), c(0, 0, 2, 0, 0, 2));
    assert_eq!(f.stats().joined, 0);
    // The two loads ran side by side; the one that finished last (V1, after its second)
    // stored last, and its value is the entry now.
    assert_eq!(f.get::<V1>("k").await.unwrap(), Some(v1()));
    assert_eq!(f.get::<V3>("k").await.unwrap(), None);
    assert_eq!(counts(&f), c(1, 0, 3, 1, 3, 2));
}
