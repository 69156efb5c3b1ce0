//! The JSON codec's promise: it round-trips what serde does, and a value it cannot carry is
//! refused by `set` with `Error::Encode` (nothing changed), "never stored as something that
//! reads back wrong or never". Each test stores a real-shaped value and accepts exactly two
//! outcomes: refused (and nothing stored), or read back equal, from the hot tier and from the
//! disk after a restart.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use answercache::agent::Controls;
use answercache::{Encoding, Error, Source, MAX_JSON_DEPTH};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::support::*;

/// `set` either refuses `v` (Error::Encode, the key untouched) or stores something that reads
/// back equal to `v`, from memory and, after a restart, from the disk.
async fn carried_or_refused<V>(f: &mut TestCache, key: &str, v: &V)
where
    V: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match f.set(key, v).await {
        Err(Error::Encode(_)) => {
            assert_eq!(
                f.get_bytes(key).await.unwrap(),
                None,
                "{key}: refused, yet something was stored"
            );
            return;
        }
        Err(e) => panic!("{key}: set failed with {e}"),
        Ok(()) => {}
    }
    let text = String::from_utf8_lossy(&f.get_bytes(key).await.unwrap().unwrap()).into_owned();
    let hot = f.get_answer::<V>(key).await.unwrap();
    assert_eq!(
        hot.as_ref().map(|a| (&a.value, a.source)),
        Some((v, Source::Hot)),
        "{key}: set accepted {v:?} (stored as the JSON text {text}), and the hot tier reads it \
         back as {:?}",
        hot.as_ref().map(|a| &a.value)
    );
    f.reopen().await;
    let warm = f.get_answer::<V>(key).await.unwrap();
    assert_eq!(
        warm.as_ref().map(|a| (&a.value, a.source)),
        Some((v, Source::Warm)),
        "{key}: after a restart the disk reads back {:?}",
        warm.as_ref().map(|a| &a.value)
    );
}

/// A tool call's result as an agent stores it: `output` is what the tool returned, `None` if
/// the tool was not run. A tool that ran and returned JSON `null` ("no preference stored")
/// is `Some(Value::Null)`: a different answer from "not run".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolResult {
    call_id: String,
    output: Option<Value>,
}

/// Defect: `Some(Value::Null)` is written as `null`, which reads back as `None`. The JSON
/// codec neither refuses it nor carries it: the cached answer says "the tool was not run".
#[tokio::test]
async fn json_tool_result_some_null_reads_back_as_none() {
    let mut f = open().await;
    let v = ToolResult {
        call_id: "call_FthC9qRpsL5kBpwwyw6c7j4k".into(),
        output: Some(Value::Null),
    };
    carried_or_refused(&mut f, "tool-result", &v).await;
}

/// The same family: `Option<Option<T>>` (a PATCH-style "set to null" against "leave as is")
/// and `Option<()>`.
#[tokio::test]
async fn json_double_option_some_none_reads_back_as_none() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Patch {
        #[serde(default)]
        max_tokens: Option<Option<u32>>,
    }
    let mut f = open().await;
    carried_or_refused(
        &mut f,
        "patch",
        &Patch {
            max_tokens: Some(None),
        },
    )
    .await;
}

/// The other side of refusing `Some(null)`: the standard "double option" pattern (what
/// `serde_with::rust::double_option` does, for PATCH-style tool arguments: absent = leave
/// as is, `null` = clear, a value = set) does round-trip through serde_json, because its
/// `Deserialize` reads `null` as `Some(None)`.
///
/// Decision (lead): refused. `set` sees only `Serialize`, and the same `Some(None)` written as
/// `null` reads back as `None` for a plain `Option<Option<_>>`; a refusal (`Error::Encode`,
/// nothing stored; the bincode codec carries it) is safe where storing is wrong for the
/// common case. This test pins the documented refusal, and that serde_json itself would carry
/// this one type.
#[tokio::test]
async fn json_double_option_pattern_that_serde_round_trips_is_refused_not_mangled() {
    fn double_option<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Patch {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "double_option"
        )]
        max_tokens: Option<Option<u32>>,
    }
    let clear = Patch {
        max_tokens: Some(None),
    };
    // serde_json itself round-trips it.
    let text = serde_json::to_string(&clear).unwrap();
    assert_eq!(serde_json::from_str::<Patch>(&text).unwrap(), clear);
    let f = open().await;
    let stored = f.set("patch", &clear).await;
    assert!(matches!(stored, Err(Error::Encode(_))), "{stored:?}");
    assert_eq!(f.get_bytes("patch").await.unwrap(), None);
}

/// The loader side of the same defect: a loaded `Some(Value::Null)` is not counted
/// unencodable and not returned uncached; it is stored, and the next caller is served a
/// different value from the hot tier (`None`) than the one the leader got.
#[tokio::test]
async fn json_loaded_some_null_is_served_back_as_none() {
    let f = open().await;
    let load = || async {
        Ok::<_, std::convert::Infallible>(ToolResult {
            call_id: "call_1".into(),
            output: Some(Value::Null),
        })
    };
    let first = f
        .get_or_insert_answer("tool", &Controls::new(), load)
        .await
        .unwrap();
    assert_eq!(first.value.output, Some(Value::Null));
    let second = f
        .get_or_insert_answer("tool", &Controls::new(), load)
        .await
        .unwrap();
    assert_eq!(
        second.value,
        first.value,
        "the second caller was served {:?} from {:?} ({}): not the value the loader returned \
         (stats: {:?})",
        second.value,
        second.source,
        second.encoding,
        counts(&f.stats())
    );
}

/// A ledger amount in nano-dollars, `u128` (the README lists `u128` as carried), in an
/// internally tagged enum (listed too). serde buffers internally tagged enums, and its buffer
/// has no 128-bit integers: the stored JSON never reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Billing {
    Charged { request_id: String, nano_usd: u128 },
    Free { request_id: String },
}

#[tokio::test]
async fn json_u128_in_an_internally_tagged_enum_never_reads_back() {
    let mut f = open().await;
    let v = Billing::Charged {
        request_id: "req_1".into(),
        nano_usd: 1_250_000,
    };
    carried_or_refused(&mut f, "billing", &v).await;
}

/// With `get_or_insert`, the same value is a permanent miss: every call runs the loader (the
/// cache silently never hits), and each load replaces the entry with another unreadable one.
#[tokio::test]
async fn json_u128_in_a_tagged_enum_makes_every_get_or_insert_load() {
    let f = open().await;
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let got = f
            .get_or_insert_with("billing", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Billing::Charged {
                    request_id: "req_1".into(),
                    nano_usd: 7,
                })
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            Billing::Charged {
                request_id: "req_1".into(),
                nano_usd: 7
            }
        );
    }
    let s = f.stats();
    // The JSON codec refuses 128-bit integers: each call loads, returns its value, stores
    // nothing, and says so (`unencodable`), instead of storing what never reads back.
    assert_eq!(
        (calls.load(Ordering::SeqCst), s.unencodable),
        (3, 3),
        "got {} loads ({:?}, unencodable {})",
        calls.load(Ordering::SeqCst),
        counts(&s),
        s.unencodable
    );
    assert_eq!(f.get_bytes("billing").await.unwrap(), None);
}

/// An untagged amount: exact (`u128`) or approximate (`f64`). `Exact(5)` is written as `5`,
/// which serde's buffer cannot give back as a `u128`, so it reads back as `Approx(5.0)`: a
/// wrong value of another variant, served as a hit.
#[tokio::test]
async fn json_untagged_u128_reads_back_as_another_variant() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Exact(u128),
        Approx(f64),
    }
    let mut f = open().await;
    carried_or_refused(&mut f, "amount", &Amount::Exact(5)).await;
}

/// Retrieval scores keyed by document id (a map with integer keys: listed as carried) inside
/// an internally tagged tool output: the keys come back from serde's buffer as strings, which
/// do not parse as `u32` there. Stored, never read back.
///
/// Decision (lead): `set` cannot see that the map sits in a buffered enum, so it stores the
/// value; every read is a counted decode miss (never a wrong value, never an error), and
/// `get_or_insert_*`, which can decode, refuses to cache it (`unencodable`) instead of loading
/// on every call without saying why. README ("Values") says so.
#[tokio::test]
async fn json_integer_keyed_map_in_a_tagged_enum_is_a_counted_miss_and_not_cached_by_loads() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "tool", rename_all = "snake_case")]
    enum ToolOutput {
        Retrieval { by_doc: BTreeMap<u32, f32> },
    }
    let f = open().await;
    let v = ToolOutput::Retrieval {
        by_doc: [(17, 0.82), (4096, 0.5)].into_iter().collect(),
    };
    f.set("retrieval", &v).await.unwrap();
    assert_eq!(f.get::<ToolOutput>("retrieval").await.unwrap(), None);
    let s = f.stats();
    assert_eq!((s.decode_misses, s.misses, s.hot_hits), (1, 1, 0));
    let load = || async { Ok::<_, std::convert::Infallible>(v.clone()) };
    assert_eq!(f.get_or_insert_with("loaded", load).await.unwrap(), v);
    assert_eq!(f.get_or_insert_with("loaded", load).await.unwrap(), v);
    let s = f.stats();
    assert_eq!((s.unencodable, s.loader_calls), (2, 2));
    assert_eq!(f.get_bytes("loaded").await.unwrap(), None);
}

/// Control: what the README lists, in the plain (unbuffered) positions, reads back exactly.
#[tokio::test]
async fn json_listed_shapes_outside_serde_buffers_read_back_exactly() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Ledger {
        nano_usd: u128,
        delta: i128,
        by_doc: BTreeMap<u32, String>,
        by_flag: BTreeMap<bool, u8>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
        extra: Value,
    }
    let mut f = open().await;
    let v = Ledger {
        nano_usd: u128::MAX,
        delta: i128::MIN,
        by_doc: [(0, "a".into()), (u32::MAX, "b".into())]
            .into_iter()
            .collect(),
        by_flag: [(false, 0), (true, 1)].into_iter().collect(),
        note: None,
        extra: json!({"nested": [1, -2, 3.5, null, {"k": [true, "\u{1F980}"]}], "big": u64::MAX}),
    };
    carried_or_refused(&mut f, "ledger", &v).await;
}

/// A `serde_json::Value` of every shape, at random, with any finite float bit pattern and
/// deep nesting: read back text-identical (so floats bit for bit) from both tiers.
#[tokio::test]
async fn json_random_values_of_every_shape_read_back_bit_exact() {
    fn gen(r: &mut Rng, depth: usize) -> Value {
        let pick = if depth == 0 { r.below(6) } else { r.below(8) };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(r.below(2) == 0),
            2 => json!(r.next_u64()),
            3 => json!(r.next_u64() as i64),
            4 => json!(finite_f64(r)),
            5 => {
                let n = r.below(12);
                let s: String = (0..n)
                    .map(|_| match r.below(6) {
                        0 => '"',
                        1 => '\\',
                        2 => '\u{0}',
                        3 => '\u{2028}',
                        4 => '\u{1F980}',
                        _ => char::from(b'a' + r.below(26) as u8),
                    })
                    .collect();
                Value::String(s)
            }
            6 => Value::Array((0..r.below(4)).map(|_| gen(r, depth - 1)).collect()),
            _ => Value::Object(
                (0..r.below(4))
                    .map(|i| (format!("k{i}\u{e9}"), gen(r, depth - 1)))
                    .collect(),
            ),
        }
    }
    let mut f = open().await;
    let mut r = Rng::new(0x5EED_0001);
    let mut values = Vec::new();
    for i in 0..300 {
        let mut v = gen(&mut r, 6);
        // A few values nested to the deepest level the codec promises.
        if i % 50 == 0 {
            for _ in 0..(MAX_JSON_DEPTH - 7) {
                v = Value::Array(vec![v]);
            }
        }
        let key = format!("value-{i}");
        f.set(&key, &v).await.unwrap();
        values.push((key, serde_json::to_string(&v).unwrap()));
    }
    for (key, text) in &values {
        let got: Value = f.get(key).await.unwrap().unwrap();
        assert_eq!(&serde_json::to_string(&got).unwrap(), text, "{key} (hot)");
    }
    f.reopen().await;
    for (key, text) in &values {
        let got = f.get_answer::<Value>(key).await.unwrap().unwrap();
        assert_eq!((got.source, got.encoding), (Source::Warm, Encoding::Json));
        assert_eq!(
            &serde_json::to_string(&got.value).unwrap(),
            text,
            "{key} (warm)"
        );
    }
}

/// Nesting at the limit through every container kind (externally, internally and adjacently
/// tagged enums, struct variants, maps): the deepest value `set` accepts reads back; one level
/// more is refused. Read on a multi-thread runtime's worker (a 2 MiB stack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_deepest_accepted_values_read_back_and_one_more_level_is_refused() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Ext {
        Leaf,
        Node(Box<Ext>),
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "t")]
    enum Internal {
        Leaf,
        Node { child: Box<Internal> },
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        Leaf,
        Node(Box<Adjacent>),
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Leaf(u8),
        Node(Vec<Untagged>),
    }

    /// Finds the deepest `n` that `set` accepts (binary search over 1..=400), checks it reads
    /// back from both tiers, and that `n + 1` is an `Error::Encode`.
    async fn deepest<V>(f: &mut TestCache, name: &str, make: impl Fn(usize) -> V)
    where
        V: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let (mut lo, mut hi) = (1usize, 400usize);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            match f.set(format!("{name}-probe"), &make(mid)).await {
                Ok(()) => lo = mid,
                Err(Error::Encode(_)) => hi = mid - 1,
                Err(e) => panic!("{e}"),
            }
        }
        let key = format!("{name}-deepest");
        f.set(&key, &make(lo)).await.unwrap();
        assert!(matches!(
            f.set(format!("{name}-over"), &make(lo + 1)).await,
            Err(Error::Encode(_))
        ));
        let got: Option<V> = f.get(&key).await.unwrap();
        assert!(
            got.as_ref() == Some(&make(lo)),
            "{name}: the deepest accepted value ({lo} levels) does not read back from memory"
        );
        f.reopen().await;
        let got: Option<V> = f.get(&key).await.unwrap();
        assert!(
            got.as_ref() == Some(&make(lo)),
            "{name}: the deepest accepted value ({lo} levels) does not read back from disk"
        );
    }

    let mut f = open().await;
    deepest(&mut f, "ext", |n| {
        (0..n).fold(Ext::Leaf, |c, _| Ext::Node(Box::new(c)))
    })
    .await;
    deepest(&mut f, "internal", |n| {
        (0..n).fold(Internal::Leaf, |c, _| Internal::Node { child: Box::new(c) })
    })
    .await;
    deepest(&mut f, "adjacent", |n| {
        (0..n).fold(Adjacent::Leaf, |c, _| Adjacent::Node(Box::new(c)))
    })
    .await;
    deepest(&mut f, "untagged", |n| {
        (0..n).fold(Untagged::Leaf(1), |c, _| Untagged::Node(vec![c]))
    })
    .await;
    deepest(&mut f, "map", |n| {
        (0..n).fold(Value::Null, |c, i| json!({ format!("k{i}"): c }))
    })
    .await;
}
