//! `get` shows a value by the encoding its entry records: every value set through the
//! library's typed API with the default (JSON) codec is printed as the JSON it is stored as,
//! whatever its Rust type; a bincode value cannot be read without its Rust type, so `get`
//! says so (exit 2) unless `--raw` (its bytes) or `--json` (in hex) is asked for; an entry of
//! format version 1 (encoding unrecorded) is printed as its stored bytes, even when those
//! bytes happen to read as JSON. Values are stored by a `TieredCache` in this process, closed
//! before the binary runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use answercache::warm::format::{self, EntryMeta, FLAG_GZIP};
use answercache::{Codec, TieredCache};
use async_openai::types::embeddings::{CreateEmbeddingResponse, Embedding, EmbeddingUsage};
use serde::Serialize;
use serde_json::{json, Value};

use crate::support::{answercache, arg, doc, entry_path, entry_rel, file_len, header, JsonExt};

/// Opens a cache on `dir` with `codec`, runs `fill`, and closes it (every write on disk).
fn with_cache<F>(dir: &Path, codec: Codec, fill: F)
where
    F: AsyncFnOnce(&TieredCache),
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = TieredCache::builder(dir)
            .codec(codec)
            .build()
            .await
            .unwrap();
        fill(&cache).await;
        cache.close().await.unwrap();
    });
}

#[test]
fn a_json_codec_value_is_printed_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_cache(d, Codec::Json, async |cache| {
        cache.set("k", &json!({"a": [1, 2.5, "x"]})).await.unwrap();
    });

    let got = answercache(&["get", arg(d), "k"]);
    got.expect_code(0);
    // The JSON text the codec stored, and a newline.
    assert_eq!(got.out(), "{\"a\":[1,2.5,\"x\"]}\n");
    assert_eq!(got.stderr, "");
    let printed: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(printed, json!({"a": [1, 2.5, "x"]}));

    // `--raw`: the bytes the JSON codec stored.
    let raw = answercache(&["get", arg(d), "k", "--raw"]);
    raw.expect_code(0);
    assert_eq!(raw.stdout, br#"{"a":[1,2.5,"x"]}"#);

    let got = answercache(&["--json", "get", arg(d), "k"]);
    got.expect_code(0);
    assert_eq!(
        doc(&got),
        json!({
            "key": "k",
            "found": true,
            "encoding": "json",
            "value_format": "json",
            "value": {"a": [1, 2.5, "x"]},
            "value_bytes": 17,
            "file": entry_rel(d, "k"),
            "file_bytes": file_len(d, "k"),
            "created_ms": header(d, "k").meta.created_ms,
            "expires_ms": 0,
            "notes": [],
        })
    );

    // The directory's encodings.
    let stats = doc(&answercache(&["--json", "stats", arg(d)]));
    assert_eq!(stats.at("entries_by_encoding"), &json!({"json": 1}));
}

#[test]
fn struct_fields_are_printed_in_their_declared_order() {
    #[derive(serde::Serialize)]
    struct Answer {
        text: &'static str,
        finish_reason: &'static str,
        tokens: u32,
        logprob: f32,
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_cache(d, Codec::Json, async |cache| {
        let answer = Answer {
            text: "Paris",
            finish_reason: "stop",
            tokens: 3,
            logprob: -0.25,
        };
        cache.set("capital?", &answer).await.unwrap();
    });
    let got = answercache(&["get", arg(d), "capital?"]);
    got.expect_code(0);
    assert_eq!(
        got.out(),
        "{\"text\":\"Paris\",\"finish_reason\":\"stop\",\"tokens\":3,\"logprob\":-0.25}\n"
    );
}

#[test]
fn a_bincode_value_is_shown_only_as_its_bytes_and_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_cache(d, Codec::Bincode, async |cache| {
        cache.set("embedding", &vec![0.5f32, -1.0]).await.unwrap();
    });
    // The value's 8-byte shape, then bincode 2, standard configuration: the length as a
    // varint, then each f32 little-endian.
    let shape = format::bincode_shape(&vec![0.5f32, -1.0])
        .unwrap()
        .to_le_bytes();
    let embedding: Vec<u8> = [
        &shape[..],
        &[0x02, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0xbf],
    ]
    .concat();

    // Asked for as text: no bytes on the terminal, exit 2, and why.
    let message = "\"embedding\": stored with the bincode codec (17 B): bincode bytes name no type or field, so the value cannot be shown without the Rust type that wrote it; --raw prints its stored bytes, --json shows them in hex";
    let got = answercache(&["get", arg(d), "embedding"]);
    got.expect_code(2);
    assert!(got.stdout.is_empty());
    assert_eq!(got.stderr, format!("error: {message}\n"));
    // `--raw`: the stored bytes.
    let got = answercache(&["get", arg(d), "embedding", "--raw"]);
    got.expect_code(0);
    assert_eq!(got.stdout, embedding);
    assert_eq!(got.stderr, "");
    let got = answercache(&["--json", "get", arg(d), "embedding"]);
    got.expect_code(0);
    assert_eq!(
        doc(&got),
        json!({
            "key": "embedding",
            "found": true,
            "encoding": "bincode",
            "value_format": "hex",
            "value_hex": format!("{}020000003f000080bf", shape.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            "value_bytes": 17,
            "file": entry_rel(d, "embedding"),
            "file_bytes": file_len(d, "embedding"),
            "created_ms": header(d, "embedding").meta.created_ms,
            "expires_ms": 0,
            "notes": [],
        })
    );

    let stats = answercache(&["stats", arg(d)]);
    stats.expect_code(0);
    assert_eq!(
        crate::support::cells(&stats.out(), "encodings")[1],
        "bincode 1"
    );
}

#[test]
fn a_version_1_entry_is_shown_as_its_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Written before encodings were recorded: typed values were bincode then, so even bytes
    // that read as JSON are not taken for JSON.
    let value = br#"{"b": 1, "a": 2}"#;
    let meta = EntryMeta {
        created_ms: 1_000,
        expires_ms: 0,
        cost: 0,
        encoding: Default::default(),
    };
    let payload = format::deflate(value, 3).unwrap();
    let file = format::assemble(b"old", value.len() as u64, &payload, meta, 1, FLAG_GZIP);
    let path = entry_path(d, "old");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &file).unwrap();

    let got = answercache(&["get", arg(d), "old"]);
    got.expect_code(0);
    assert_eq!(got.stdout, value);
    let got = answercache(&["--json", "get", arg(d), "old"]);
    got.expect_code(0);
    assert_eq!(
        doc(&got),
        json!({
            "key": "old",
            "found": true,
            "encoding": "unrecorded",
            "value_format": "text",
            "value": r#"{"b": 1, "a": 2}"#,
            "value_bytes": 16,
            "file": entry_rel(d, "old"),
            "file_bytes": file.len(),
            "created_ms": 1_000,
            "expires_ms": 0,
            "notes": [],
        })
    );
    let stats = doc(&answercache(&["--json", "stats", arg(d)]));
    assert_eq!(stats.at("entries_by_encoding"), &json!({"unrecorded": 1}));
}

/// Typed values of many shapes, each set through the typed API with the JSON codec.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Step {
    ToolCall {
        name: String,
        args: BTreeMap<String, Value>,
    },
    Answer {
        text: String,
        citations: Vec<u32>,
    },
}

#[derive(Serialize)]
struct Turn {
    id: u64,
    step: Step,
    parent: Option<u64>,
    score: f64,
    tags: Vec<String>,
}

fn turn() -> Turn {
    Turn {
        id: u64::MAX,
        step: Step::ToolCall {
            name: "get_weather".into(),
            args: BTreeMap::from([
                ("city".to_owned(), json!("Paris")),
                ("days".to_owned(), json!(3)),
            ]),
        },
        parent: None,
        score: 0.1 + 0.2,
        tags: vec!["a \"quoted\" tag".into(), "line\nbreak".into()],
    }
}

fn answer() -> Step {
    Step::Answer {
        text: "Paris \u{1F980}".into(),
        citations: vec![1, 2],
    }
}

/// A real client type (async-openai's embeddings response).
fn embedding() -> CreateEmbeddingResponse {
    CreateEmbeddingResponse {
        object: "list".into(),
        model: "text-embedding-3-small".into(),
        data: vec![Embedding {
            index: 0,
            object: "embedding".into(),
            embedding: vec![0.5, -0.0, f32::MIN_POSITIVE, 1e-45],
        }],
        usage: EmbeddingUsage {
            prompt_tokens: 5,
            total_tokens: 5,
        },
    }
}

#[test]
fn every_typed_json_value_is_printed_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = vec![Some(1u8), None];
    // Each key, and the bytes serde_json writes for its Rust value: what the JSON codec stores.
    let want: Vec<(&str, Vec<u8>)> = vec![
        ("turn", serde_json::to_vec(&turn()).unwrap()),
        ("answer", serde_json::to_vec(&answer()).unwrap()),
        ("embedding", serde_json::to_vec(&embedding()).unwrap()),
        ("string", serde_json::to_vec("just text").unwrap()),
        ("number", serde_json::to_vec(&-12.5f64).unwrap()),
        ("none", serde_json::to_vec(&Option::<u32>::None).unwrap()),
        ("list", serde_json::to_vec(&list).unwrap()),
    ];
    with_cache(d, Codec::Json, async |cache| {
        cache.set("turn", &turn()).await.unwrap();
        cache.set("answer", &answer()).await.unwrap();
        let hour = Duration::from_secs(3600);
        cache
            .set_with_ttl("embedding", &embedding(), hour)
            .await
            .unwrap();
        cache.set("string", "just text").await.unwrap();
        cache.set("number", &-12.5f64).await.unwrap();
        cache.set("none", &Option::<u32>::None).await.unwrap();
        // The loader path of the typed API.
        let loaded: Vec<Option<u8>> = cache
            .get_or_insert_with("list", || async {
                Ok::<_, std::io::Error>(vec![Some(1u8), None])
            })
            .await
            .unwrap();
        assert_eq!(loaded, list);
    });
    for (key, bytes) in &want {
        // Exactly the stored JSON text, and a newline.
        let got = answercache(&["get", arg(d), key]);
        got.expect_code(0);
        assert_eq!(got.stderr, "", "{key}");
        assert_eq!(got.stdout, [&bytes[..], b"\n"].concat(), "{key}");
        let raw = answercache(&["get", arg(d), key, "--raw"]);
        raw.expect_code(0);
        assert_eq!(&raw.stdout, bytes, "{key}");
        // `--json` embeds it as a JSON value.
        let doc = doc(&answercache(&["--json", "get", arg(d), key]));
        let value: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(doc.at("encoding"), "json", "{key}");
        assert_eq!(doc.at("value_format"), "json", "{key}");
        assert_eq!(doc.at("value"), &value, "{key}");
    }
    // u64::MAX and 0.1 + 0.2 to the last digit; the enum's tag; the embedding's subnormal.
    let turn = answercache(&["get", arg(d), "turn"]).out();
    assert!(
        turn.starts_with("{\"id\":18446744073709551615,\"step\":{\"type\":\"tool_call\","),
        "{turn}"
    );
    assert!(turn.contains("\"score\":0.30000000000000004,"), "{turn}");
    let emb = answercache(&["get", arg(d), "embedding"]).out();
    assert!(emb.contains("[0.5,-0.0,1.1754944e-38,1e-45]"), "{emb}");

    // `ls` lists every one as a JSON value with its key.
    let ls = doc(&answercache(&["--json", "ls", arg(d)]));
    let mut listed: Vec<(&str, &str)> = ls
        .at("entries")
        .items()
        .iter()
        .map(|e| (e.at("key").str(), e.at("encoding").str()))
        .collect();
    listed.sort_unstable();
    let mut keys: Vec<(&str, &str)> = want.iter().map(|(k, _)| (*k, "json")).collect();
    keys.sort_unstable();
    assert_eq!(listed, keys);
}
