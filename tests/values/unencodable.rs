//! Values JSON cannot carry (a NaN, an infinity): `set` refuses them with `Error::Encode` and
//! changes nothing; a loader's such value is returned to its caller and not stored
//! (`unencodable`); under bincode they round-trip.

use answercache::agent::Controls;
use answercache::{Codec, Encoding, Error, Source, MAX_JSON_DEPTH};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::support::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scored {
    label: String,
    score: Option<f64>,
}

fn scored(score: f64) -> Scored {
    Scored {
        label: "relevance".into(),
        score: Some(score),
    }
}

/// Exact equality, floats by their bits.
fn same(a: &Scored, b: &Scored) -> bool {
    a.label == b.label && a.score.map(f64::to_bits) == b.score.map(f64::to_bits)
}

#[tokio::test]
async fn json_refuses_non_finite_floats_and_keeps_the_previous_value() {
    let mut f = TestCache::new().await;
    f.set("k", &1.5f64).await.unwrap();
    f.set("s", &scored(0.25)).await.unwrap();
    assert_eq!(f.stats().sets, 2);

    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = f.set("k", &x).await.unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{x}: {err:?}");
    }
    let err = f.set("s", &scored(f64::INFINITY)).await.unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");
    let err = f.set("new", &vec![0.5f32, f32::NAN]).await.unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");
    let err = f
        .set_with_controls("s", &scored(f64::NAN), &Controls::new().cost(3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");

    assert_eq!(f.stats().sets, 2, "nothing was stored");
    assert_eq!(f.get::<f64>("k").await.unwrap(), Some(1.5));
    let s: Scored = f.get("s").await.unwrap().unwrap();
    assert!(same(&s, &scored(0.25)), "{s:?}");
    assert_eq!(f.get::<Vec<f32>>("new").await.unwrap(), None);
    f.reopen().await;
    assert_eq!(f.get::<f64>("k").await.unwrap(), Some(1.5));
    let s: Scored = f.get("s").await.unwrap().unwrap();
    assert!(same(&s, &scored(0.25)), "{s:?}");
    assert_eq!(f.get::<Vec<f32>>("new").await.unwrap(), None);
}

#[tokio::test]
async fn a_loaded_value_json_cannot_carry_is_returned_and_not_stored() {
    let mut f = TestCache::new().await;
    let a = f
        .get_or_insert_answer("nan", &Controls::new(), || async {
            Ok::<_, std::io::Error>(f64::NAN)
        })
        .await
        .unwrap();
    assert!(a.value.is_nan());
    assert_eq!(a.value.to_bits(), f64::NAN.to_bits());
    assert_eq!(a.source, Source::Loaded);
    let s = f.stats();
    assert_eq!(
        (s.unencodable, s.sets, s.loader_calls, s.misses),
        (1, 0, 1, 1)
    );
    assert_eq!(f.get::<f64>("nan").await.unwrap(), None, "not stored");

    // The next call loads again (nothing was stored).
    let a = f
        .get_or_insert_answer("nan", &Controls::new(), || async {
            Ok::<_, std::io::Error>(f64::NAN)
        })
        .await
        .unwrap();
    assert!(a.value.is_nan());
    assert_eq!((f.stats().unencodable, f.stats().loader_calls), (2, 2));

    let a = f
        .get_or_insert_with("scored", || async {
            Ok::<_, std::io::Error>(scored(f64::INFINITY))
        })
        .await
        .unwrap();
    assert!(same(&a, &scored(f64::INFINITY)));
    assert_eq!(f.stats().unencodable, 3);
    assert_eq!(
        f.get::<Scored>("scored").await.unwrap().map(|s| s.score),
        None
    );

    // Over a stored value (no_cache: load and replace): the old value stays.
    f.set("k", &1.5f64).await.unwrap();
    let a = f
        .get_or_insert_answer("k", &Controls::new().no_cache(), || async {
            Ok::<_, std::io::Error>(f64::NEG_INFINITY)
        })
        .await
        .unwrap();
    assert_eq!((a.value, a.source), (f64::NEG_INFINITY, Source::Loaded));
    assert_eq!(f.get::<f64>("k").await.unwrap(), Some(1.5));
    let s = f.stats();
    assert_eq!((s.unencodable, s.sets), (4, 1));

    f.reopen().await;
    assert_eq!(f.get::<f64>("nan").await.unwrap(), None);
    assert_eq!(f.get::<f64>("k").await.unwrap(), Some(1.5));
    assert!(f.get::<Scored>("scored").await.unwrap().is_none());
}

#[tokio::test]
async fn the_first_unencodable_load_counts_once() {
    let f = TestCache::new().await;
    let got: f64 = f
        .get_or_insert_with("k", || async { Ok::<_, std::io::Error>(f64::NAN) })
        .await
        .unwrap();
    assert!(got.is_nan());
    let s = f.stats();
    assert_eq!((s.unencodable, s.sets, s.hot_entries), (1, 0, 0));
}

#[tokio::test]
async fn under_bincode_non_finite_floats_round_trip() {
    let mut f = TestCache::with(|b| b.codec(Codec::Bincode)).await;
    f.set("nan", &f64::NAN).await.unwrap();
    f.set("inf", &scored(f64::INFINITY)).await.unwrap();
    let a = f
        .get_or_insert_answer("loaded", &Controls::new(), || async {
            Ok::<_, std::io::Error>(scored(f64::NEG_INFINITY))
        })
        .await
        .unwrap();
    assert_eq!((a.source, a.encoding), (Source::Loaded, Encoding::Bincode));
    let a = f
        .get_or_insert_answer("loaded", &Controls::new(), must_not_load::<Scored>)
        .await
        .unwrap();
    assert!(same(&a.value, &scored(f64::NEG_INFINITY)));
    assert_eq!(a.source, Source::Hot);
    let n = f.get_answer::<f64>("nan").await.unwrap().unwrap();
    assert_eq!(n.value.to_bits(), f64::NAN.to_bits());
    assert_eq!((n.source, n.encoding), (Source::Hot, Encoding::Bincode));
    let s = f.stats();
    assert_eq!((s.unencodable, s.sets), (0, 3));

    f.reopen().await;
    let n = f.get_answer::<f64>("nan").await.unwrap().unwrap();
    assert_eq!(n.value.to_bits(), f64::NAN.to_bits());
    assert_eq!((n.source, n.encoding), (Source::Warm, Encoding::Bincode));
    let i = f.get_answer::<Scored>("inf").await.unwrap().unwrap();
    assert!(same(&i.value, &scored(f64::INFINITY)));
    assert_eq!(i.source, Source::Warm);
    let l = f.get_answer::<Scored>("loaded").await.unwrap().unwrap();
    assert!(same(&l.value, &scored(f64::NEG_INFINITY)));
    assert_eq!(l.source, Source::Warm);
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| Value::Array(vec![inner]))
}

#[tokio::test]
async fn json_stores_nesting_up_to_its_limit_and_refuses_deeper() {
    let mut f = TestCache::new().await;
    let deepest = nested(MAX_JSON_DEPTH);
    f.set("deep", &deepest).await.unwrap();
    let err = f
        .set("deep", &nested(MAX_JSON_DEPTH + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");
    let a = f
        .get_or_insert_answer("deeper", &Controls::new(), || async {
            Ok::<_, std::io::Error>(nested(MAX_JSON_DEPTH + 1))
        })
        .await
        .unwrap();
    assert_eq!(
        (&a.value, a.source),
        (&nested(MAX_JSON_DEPTH + 1), Source::Loaded)
    );
    let s = f.stats();
    assert_eq!((s.unencodable, s.sets), (1, 1));
    f.reopen().await;
    let got = f.get_answer::<Value>("deep").await.unwrap().unwrap();
    assert_eq!((&got.value, got.source), (&deepest, Source::Warm));
    assert_eq!(f.get::<Value>("deeper").await.unwrap(), None);
}

/// A tool call whose arguments may be JSON `null` (`Some(Value::Null)`), or absent (`None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolChoice {
    name: String,
    arguments: Option<Value>,
}

/// A `Some` whose content JSON writes as `null` reads back as `None`: JSON cannot carry it,
/// like a NaN (which serde_json would also write as `null`). Storing it would serve a wrong
/// value as a hit, so `set` must refuse it and a loaded one must not be stored.
#[tokio::test]
async fn json_never_serves_a_some_that_it_wrote_as_null() {
    let f = TestCache::new().await;
    f.set("oo", &Some(Some(1u8))).await.unwrap();
    let err = f.set("oo", &Some(None::<u8>)).await;
    assert!(
        matches!(err, Err(Error::Encode(_))),
        "Some(None) stored: {err:?}"
    );
    assert_eq!(
        f.get::<Option<Option<u8>>>("oo").await.unwrap(),
        Some(Some(Some(1))),
        "the previous value is still served"
    );

    let call = ToolChoice {
        name: "f".into(),
        arguments: Some(Value::Null),
    };
    let err = f.set("tool", &call).await;
    assert!(
        matches!(err, Err(Error::Encode(_))),
        "Some(Null) stored: {err:?}"
    );
    assert_eq!(
        f.get::<ToolChoice>("tool").await.unwrap(),
        None,
        "nothing stored"
    );

    let loaded = f
        .get_or_insert_answer("loaded", &Controls::new(), || async {
            Ok::<_, std::io::Error>(Some(None::<u8>))
        })
        .await
        .unwrap();
    assert_eq!((loaded.value, loaded.source), (Some(None), Source::Loaded));
    let again = f
        .get_or_insert_answer("loaded", &Controls::new(), || async {
            Ok::<_, std::io::Error>(Some(None::<u8>))
        })
        .await
        .unwrap();
    assert_eq!(again.value, Some(None), "a wrong value served as a hit");
    let s = f.stats();
    assert_eq!((s.unencodable, s.sets), (2, 1));
}
