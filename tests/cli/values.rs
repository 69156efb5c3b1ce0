//! `get` shows a value by the encoding its entry records: a JSON value (set through the
//! library with the default codec) is printed as JSON; a bincode value, and an entry of format
//! version 1 (encoding unrecorded), as its stored bytes, even when those bytes happen to read as
//! JSON. Values are stored by a `TieredCache` in this process, closed before the binary runs.

use std::path::Path;

use answercache::warm::format::{self, EntryMeta, FLAG_GZIP};
use answercache::{Codec, TieredCache};
use serde_json::json;

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
fn a_bincode_value_is_shown_as_its_stored_bytes() {
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

    let got = answercache(&["get", arg(d), "embedding"]);
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
