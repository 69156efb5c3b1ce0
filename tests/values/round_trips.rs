//! Every value shape through every path: `set` then `get` (hot), a reopen (warm, then hot),
//! `get_or_insert` (loaded, then hot; warm after a reopen) and a caller joining another's
//! load. Equality is exact: floats bit for bit, integers to the last digit.

use std::collections::BTreeMap;

use answercache::{Codec, Encoding, Error};
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionResponse, FinishReason, ServiceTier,
};
use async_openai::types::embeddings::{CreateEmbeddingResponse, Embedding, EmbeddingUsage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use answercache::workload::Rng;

use crate::support::*;

fn chat_completion() -> CreateChatCompletionResponse {
    serde_json::from_str(CHAT_COMPLETION_JSON).unwrap()
}

#[allow(
    deprecated,
    reason = "system_fingerprint is deprecated upstream, still sent"
)]
#[test]
fn the_provider_body_parses_into_every_field() {
    // The fixture is what the tests below claim it is: nothing of the body was dropped.
    let r = chat_completion();
    assert_eq!(r.id, "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    assert_eq!(r.system_fingerprint.as_deref(), Some("fp_fc9f1d7035"));
    assert_eq!(r.service_tier, Some(ServiceTier::Default));
    assert_eq!(r.choices.len(), 2);
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.choices[0].logprobs, None);
    let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    match &calls[0] {
        ChatCompletionMessageToolCalls::Function(c) => {
            assert_eq!(c.function.name, "get_current_weather");
            assert_eq!(
                c.function.arguments,
                r#"{"location":"Paris, France","unit":"celsius"}"#
            );
        }
        other => panic!("expected a function call, got {other:?}"),
    }
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Let me look up the weather in Paris \u{2014} one moment. \"Quoted\", tab\there, line\nbreak, emoji \u{1F980}.")
    );
    let usage = r.usage.as_ref().unwrap();
    assert_eq!((usage.prompt_tokens, usage.total_tokens), (82, 146));
    assert_eq!(
        usage.prompt_tokens_details.as_ref().unwrap().cached_tokens,
        Some(64)
    );
    assert_eq!(
        usage
            .completion_tokens_details
            .as_ref()
            .unwrap()
            .rejected_prediction_tokens,
        Some(0)
    );
    let e: CreateEmbeddingResponse = serde_json::from_str(EMBEDDING_JSON).unwrap();
    assert_eq!(e.data[1].embedding[4].to_bits(), 1); // the smallest subnormal
    assert_eq!(e.data[0].embedding[5].to_bits(), (-0.0f32).to_bits());
}

/// An embeddings response of two 1536-dimension vectors, as a provider would send it.
fn big_embedding_response() -> CreateEmbeddingResponse {
    CreateEmbeddingResponse {
        object: "list".into(),
        model: "text-embedding-3-small".into(),
        data: (0..2)
            .map(|i| Embedding {
                index: i,
                object: "embedding".into(),
                embedding: embedding(0x5EED + u64::from(i)),
            })
            .collect(),
        usage: EmbeddingUsage {
            prompt_tokens: 17,
            total_tokens: 17,
        },
    }
}

#[tokio::test(start_paused = true)]
async fn provider_responses_round_trip_through_every_path() {
    let mut f = TestCache::new().await;
    let chat = chat_completion();
    let emb: CreateEmbeddingResponse = serde_json::from_str(EMBEDDING_JSON).unwrap();
    let big = big_embedding_response();
    check_fresh(&f, "chat", &chat, Encoding::Json).await;
    check_joined(&f, "chat", &chat, Encoding::Json).await;
    check_fresh(&f, "emb", &emb, Encoding::Json).await;
    check_joined(&f, "emb", &emb, Encoding::Json).await;
    check_fresh(&f, "emb-1536", &big, Encoding::Json).await;
    check_joined(&f, "emb-1536", &big, Encoding::Json).await;
    f.reopen().await;
    check_reopened(&f, "chat", &chat, Encoding::Json).await;
    check_reopened(&f, "emb", &emb, Encoding::Json).await;
    check_reopened(&f, "emb-1536", &big, Encoding::Json).await;
    // The vectors inside, bit for bit (PartialEq on f32 would take -0.0 for 0.0).
    let back: CreateEmbeddingResponse = f.get("emb-1536/set").await.unwrap().unwrap();
    for (a, b) in back.data.iter().zip(&big.data) {
        assert_eq!(Bits(a.embedding.clone()), Bits(b.embedding.clone()));
    }
    let back: CreateEmbeddingResponse = f.get("emb/set").await.unwrap().unwrap();
    assert_eq!(
        Bits(back.data[0].embedding.clone()),
        Bits(emb.data[0].embedding.clone())
    );
    assert_eq!(
        Bits(back.data[1].embedding.clone()),
        Bits(emb.data[1].embedding.clone())
    );
}

#[tokio::test(start_paused = true)]
async fn an_embeddings_response_round_trips_under_bincode() {
    let mut f = TestCache::with(|b| b.codec(Codec::Bincode)).await;
    let big = big_embedding_response();
    check_fresh(&f, "emb-1536", &big, Encoding::Bincode).await;
    check_joined(&f, "emb-1536", &big, Encoding::Bincode).await;
    f.reopen().await;
    check_reopened(&f, "emb-1536", &big, Encoding::Bincode).await;
    let back: CreateEmbeddingResponse = f.get("emb-1536/load").await.unwrap().unwrap();
    assert_eq!(
        Bits(back.data[1].embedding.clone()),
        Bits(big.data[1].embedding.clone())
    );
}

/// `depth` arrays nested in one another around `null`: `[[[...null...]]]`.
fn nested_arrays(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// `depth` objects nested in one another: `{"k":{"k":...{"k":"bottom"}}}`.
fn nested_objects(depth: usize) -> Value {
    (0..depth).fold(
        json!("bottom"),
        |inner, i| json!({ format!("level-{i}"): inner }),
    )
}

/// Every JSON shape, each as a value of its own.
fn json_values() -> Vec<(&'static str, Value)> {
    vec![
        ("null", Value::Null),
        ("true", json!(true)),
        ("false", json!(false)),
        ("zero", json!(0)),
        ("u64-max", json!(u64::MAX)),
        ("i64-min", json!(i64::MIN)),
        ("i64-max", json!(i64::MAX)),
        ("minus-one", json!(-1)),
        ("float", json!(0.1)),
        ("negative-float", json!(-2.5e-8)),
        ("huge-float", json!(1e300)),
        ("tiny-float", json!(5e-324)),
        ("f64-max", json!(f64::MAX)),
        ("f64-min", json!(f64::MIN)),
        ("pi", json!(std::f64::consts::PI)),
        ("empty-string", json!("")),
        (
            "escapes",
            json!("quote \" backslash \\ slash / newline \n return \r tab \t backspace \u{8} formfeed \u{c} unit-sep \u{1f} del \u{7f}"),
        ),
        ("nul", json!("before\u{0}after\u{0}")),
        (
            "unicode",
            json!("é ß 日本語 العربية 🦀👩‍👩‍👧 \u{200b}zero-width \u{feff}bom \u{ffff} \u{10ffff}"),
        ),
        ("empty-array", json!([])),
        ("empty-object", json!({})),
        ("nested-empties", json!([[], {}, [[]], [{}], {"a": []}, {"b": {}}])),
        (
            "mixed",
            json!({
                "": "empty key",
                "ключ 🔑": [1, -1, 1.5, null, true, "s", {"x": [u64::MAX, i64::MIN]}],
                "nul\u{0}key": {"deep": {"deeper": [[[]]]}},
                "numbers": [0, -0.0, 1e-7, 123_456_789.123_456_79, 9007199254740993u64],
            }),
        ),
        ("arrays-100-deep", nested_arrays(100)),
        ("objects-100-deep", nested_objects(100)),
    ]
}

#[tokio::test(start_paused = true)]
async fn every_json_shape_round_trips_through_every_path() {
    let mut f = TestCache::new().await;
    let values = json_values();
    for (name, v) in &values {
        check_fresh(&f, name, v, Encoding::Json).await;
        check_joined(&f, name, v, Encoding::Json).await;
    }
    // All of them in one value, too.
    let all = Value::Object(
        values
            .iter()
            .filter(|(name, _)| !name.ends_with("-deep"))
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    );
    check_fresh(&f, "all", &all, Encoding::Json).await;
    f.reopen().await;
    for (name, v) in &values {
        check_reopened(&f, name, v, Encoding::Json).await;
    }
    check_reopened(&f, "all", &all, Encoding::Json).await;
    // Numbers keep their kind and bits, not merely a value that compares equal.
    let n: Value = f.get("u64-max/set").await.unwrap().unwrap();
    assert_eq!(n.as_u64(), Some(u64::MAX));
    let n: Value = f.get("i64-min/set").await.unwrap().unwrap();
    assert_eq!(n.as_i64(), Some(i64::MIN));
    let n: Value = f.get("tiny-float/set").await.unwrap().unwrap();
    assert_eq!(n.as_f64().map(f64::to_bits), Some(1)); // 5e-324: the smallest subnormal
    let n: Value = f.get("huge-float/set").await.unwrap().unwrap();
    assert_eq!(n.as_f64().map(f64::to_bits), Some(1e300f64.to_bits()));
    let n: Value = f.get("pi/set").await.unwrap().unwrap();
    assert_eq!(
        n.as_f64().map(f64::to_bits),
        Some(std::f64::consts::PI.to_bits())
    );
}

/// One of several shapes, told apart by their content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Flag(bool),
    Count(u64),
    Ratio(f64),
    Text(String),
    Pair(String, i64),
    Message { role: String, content: String },
    List(Vec<Untagged>),
    Nothing,
}

/// A tool call or a message, tagged inside the object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Internal {
    Message {
        role: String,
        content: Option<String>,
    },
    ToolCall(ToolCall),
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolCall {
    id: String,
    name: String,
    arguments: Value,
}

/// A stream event, tagged next to its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
enum Adjacent {
    Delta(String),
    Usage { prompt: u32, completion: u32 },
    Pair(i8, u16),
    Done,
}

/// A record whose optional fields are left out when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sparse {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    retries: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

#[tokio::test(start_paused = true)]
async fn enums_and_sparse_structs_round_trip_through_every_path() {
    let mut f = TestCache::new().await;
    let untagged = vec![
        Untagged::Flag(false),
        Untagged::Count(u64::MAX),
        Untagged::Ratio(-0.125),
        Untagged::Text("text".into()),
        Untagged::Pair("p".into(), i64::MIN),
        Untagged::Message {
            role: "user".into(),
            content: "hi".into(),
        },
        Untagged::List(vec![Untagged::Count(1), Untagged::Text("x".into())]),
        Untagged::Nothing,
    ];
    let internal = [
        Internal::Message {
            role: "assistant".into(),
            content: None,
        },
        Internal::Message {
            role: "assistant".into(),
            content: Some("Paris".into()),
        },
        Internal::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris", "days": [1, 2.5, null]}),
        }),
        Internal::Done,
    ];
    let adjacent = [
        Adjacent::Delta("Par".into()),
        Adjacent::Usage {
            prompt: 12,
            completion: u32::MAX,
        },
        Adjacent::Pair(-128, 65535),
        Adjacent::Done,
    ];
    let absent = Sparse {
        id: "absent".into(),
        note: None,
        tags: vec![],
        meta: BTreeMap::new(),
        retries: 0,
    };
    let present = Sparse {
        id: "present".into(),
        note: Some("".into()), // present, if empty: must not come back as None
        tags: vec!["a".into(), "".into()],
        meta: BTreeMap::from([("k".into(), 0), ("".into(), u32::MAX)]),
        retries: 3,
    };
    // The absent fields are really left out of the stored JSON.
    assert_eq!(
        serde_json::to_string(&absent).unwrap(),
        r#"{"id":"absent"}"#
    );
    for (i, v) in untagged.iter().enumerate() {
        check_fresh(&f, &format!("untagged-{i}"), v, Encoding::Json).await;
        check_joined(&f, &format!("untagged-{i}"), v, Encoding::Json).await;
    }
    for (i, v) in internal.iter().enumerate() {
        check_fresh(&f, &format!("internal-{i}"), v, Encoding::Json).await;
        check_joined(&f, &format!("internal-{i}"), v, Encoding::Json).await;
    }
    for (i, v) in adjacent.iter().enumerate() {
        check_fresh(&f, &format!("adjacent-{i}"), v, Encoding::Json).await;
        check_joined(&f, &format!("adjacent-{i}"), v, Encoding::Json).await;
    }
    for v in [&absent, &present] {
        check_fresh(&f, &v.id, v, Encoding::Json).await;
        check_joined(&f, &v.id, v, Encoding::Json).await;
    }
    check_fresh(&f, "untagged-all", &untagged, Encoding::Json).await;
    f.reopen().await;
    for (i, v) in untagged.iter().enumerate() {
        check_reopened(&f, &format!("untagged-{i}"), v, Encoding::Json).await;
    }
    for (i, v) in internal.iter().enumerate() {
        check_reopened(&f, &format!("internal-{i}"), v, Encoding::Json).await;
    }
    for (i, v) in adjacent.iter().enumerate() {
        check_reopened(&f, &format!("adjacent-{i}"), v, Encoding::Json).await;
    }
    for v in [&absent, &present] {
        check_reopened(&f, &v.id, v, Encoding::Json).await;
    }
    check_reopened(&f, "untagged-all", &untagged, Encoding::Json).await;
    // What is stored is the JSON with the absent fields left out.
    assert_eq!(
        f.get_bytes("absent/set").await.unwrap().as_deref(),
        Some(&br#"{"id":"absent"}"#[..])
    );
}

#[tokio::test(start_paused = true)]
async fn embeddings_round_trip_bit_exact_under_both_codecs() {
    let vectors = [
        ("seeded", Bits(embedding(42))),
        ("seeded-2", Bits(embedding(0xDEAD_BEEF))),
        ("any-bits", {
            let mut rng = Rng::new(7);
            Bits((0..1536).map(|_| any_finite_f32(&mut rng)).collect())
        }),
        ("empty", Bits(vec![])),
    ];
    for (codec, encoding) in [
        (Codec::Bincode, Encoding::Bincode),
        (Codec::Json, Encoding::Json),
    ] {
        let mut f = TestCache::with(|b| b.codec(codec)).await;
        for (name, v) in &vectors {
            check_fresh(&f, name, v, encoding).await;
            check_joined(&f, name, v, encoding).await;
        }
        f.reopen().await;
        for (name, v) in &vectors {
            check_reopened(&f, name, v, encoding).await;
        }
        // Read as a plain Vec<f32> too, the type a service would ask for.
        let plain: Vec<f32> = f.get("seeded/set").await.unwrap().unwrap();
        assert_eq!(Bits(plain), vectors[0].1, "{codec:?}");
        if codec == Codec::Bincode {
            // Compact: the 8-byte shape, a 3-byte length, 1536 floats of 4 bytes.
            let bytes = f.get_bytes("seeded/set").await.unwrap().unwrap();
            assert_eq!(bytes.len(), 8 + 3 + 1536 * 4);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn wide_integers_round_trip_under_both_codecs() {
    // JSON refuses every 128-bit integer, whatever its value (serde's buffered enums cannot
    // read one back, and an untagged enum reads it as another variant): nothing is stored.
    {
        let f = TestCache::with(|b| b.codec(Codec::Json)).await;
        for v in [0u128, u128::from(u64::MAX) + 1, u128::MAX] {
            assert!(matches!(f.set("wide", &v).await, Err(Error::Encode(_))));
        }
        for v in [0i128, i128::from(i64::MIN) - 1] {
            assert!(matches!(f.set("wide", &v).await, Err(Error::Encode(_))));
        }
        assert_eq!(f.get_bytes("wide").await.unwrap(), None);
    }
    let u = [0u128, 1, u128::from(u64::MAX) + 1, u128::MAX];
    let i = [0i128, -1, i128::from(i64::MIN) - 1, i128::MIN, i128::MAX];
    for (codec, encoding) in [(Codec::Bincode, Encoding::Bincode)] {
        let mut f = TestCache::with(|b| b.codec(codec)).await;
        for (n, v) in u.iter().enumerate() {
            check_fresh(&f, &format!("u128-{n}"), v, encoding).await;
            check_joined(&f, &format!("u128-{n}"), v, encoding).await;
        }
        for (n, v) in i.iter().enumerate() {
            check_fresh(&f, &format!("i128-{n}"), v, encoding).await;
            check_joined(&f, &format!("i128-{n}"), v, encoding).await;
        }
        let both = (u128::MAX, i128::MIN);
        check_fresh(&f, "both", &both, encoding).await;
        f.reopen().await;
        for (n, v) in u.iter().enumerate() {
            check_reopened(&f, &format!("u128-{n}"), v, encoding).await;
        }
        for (n, v) in i.iter().enumerate() {
            check_reopened(&f, &format!("i128-{n}"), v, encoding).await;
        }
        check_reopened(&f, "both", &both, encoding).await;
    }
}

/// A record with flattened extra fields and maps keyed by integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WithExtra {
    id: String,
    by_index: BTreeMap<u64, String>,
    by_offset: BTreeMap<i64, f64>,
    maybe_maybe: Option<Option<u8>>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[tokio::test(start_paused = true)]
async fn flattened_fields_integer_keyed_maps_and_nested_options_round_trip() {
    let mut f = TestCache::new().await;
    let values = [
        WithExtra {
            id: "a".into(),
            by_index: BTreeMap::from([(0, "zero".into()), (u64::MAX, "max".into())]),
            by_offset: BTreeMap::from([(i64::MIN, -0.5), (-1, 1e-300), (7, f64::MAX)]),
            maybe_maybe: Some(Some(0)),
            extra: BTreeMap::from([
                ("x-request-id".into(), json!("req_123")),
                ("nested".into(), json!({"a": [1, {"b": null}]})),
            ]),
        },
        WithExtra {
            id: "b".into(),
            by_index: BTreeMap::new(),
            by_offset: BTreeMap::new(),
            maybe_maybe: None,
            extra: BTreeMap::new(),
        },
    ];
    for v in &values {
        check_fresh(&f, &v.id, v, Encoding::Json).await;
        check_joined(&f, &v.id, v, Encoding::Json).await;
    }
    f.reopen().await;
    for v in &values {
        check_reopened(&f, &v.id, v, Encoding::Json).await;
    }
}
