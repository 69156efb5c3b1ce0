//! Hostile and old files: entries planted with every encoding code, version-1 files holding
//! JSON, raw entries holding bincode, JSON that parses as another type, and a directory
//! written by the previous version of the crate (format 1, committed under
//! `fixtures/v1-cache`). Each read must be the value with its recorded encoding, or a counted
//! miss with the file left alone, or (reserved code) a quarantined corruption: never an
//! error, never a wrong value.

use std::path::Path;

use answercache::agent::Controls;
use answercache::testing::copy_dir;
use answercache::{Codec, Encoding, Source};
use serde::{Deserialize, Serialize};

use crate::support::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    text: String,
    tokens: u64,
}

fn answer() -> Answer {
    Answer {
        text: "Paris".into(),
        tokens: 5,
    }
}

/// What `get_bytes` returns for `v` set through a cache with the bincode codec.
async fn bincode_entry_bytes<V: Serialize>(v: &V) -> Vec<u8> {
    let f = open_with(|b| b.codec(Codec::Bincode)).await;
    f.set("v", v).await.unwrap();
    f.get_bytes("v").await.unwrap().unwrap().to_vec()
}

/// FORMAT.md, "Value and its encoding": code 2 holds "bincode 2 over serde, standard
/// configuration" after the value's 8-byte shape, and version-1 typed values bincode alone. The
/// bytes of a bincode entry must be exactly that (another implementation, or a fixture, must be
/// able to write one).
#[tokio::test]
async fn a_bincode_entry_holds_what_format_md_says() {
    // The value's shape (u64 LE, `format::bincode_shape`), then bincode 2.
    let shape = answercache::warm::format::bincode_shape(&answer()).unwrap();
    assert_eq!(
        bincode_entry_bytes(&answer()).await,
        [&shape.to_le_bytes()[..], &bincode_of(&answer())].concat()
    );
}

/// Every code of a version-2 file, holding the bytes its code says.
#[tokio::test]
async fn planted_files_of_every_encoding_read_with_their_recorded_codec() {
    let dir = dir();
    let root = dir.root().to_owned();
    let json = serde_json::to_vec(&answer()).unwrap();
    let bin = bincode_of(&answer());
    // The bytes a bincode entry holds, as this build writes them.
    let bin_v2 = bincode_entry_bytes(&answer()).await;
    plant_v2(&root, b"raw", &json, 0, 11);
    plant_v2(&root, b"json", &json, 1, 12);
    plant_v2(&root, b"bincode", &bin_v2, 2, 13);
    plant_v2(&root, b"reserved", &json, 3, 14);
    plant_v1(&root, b"v1", &bin, 15);
    let f = dir.open_cache(|b| b).await;
    for (key, encoding, cost) in [
        ("raw", Encoding::Raw, 11),
        ("json", Encoding::Json, 12),
        ("bincode", Encoding::Bincode, 13),
        ("v1", Encoding::Unrecorded, 15),
    ] {
        let before = counts(&f.stats());
        let got = f.get_answer::<Answer>(key).await.unwrap();
        assert_eq!(
            got.map(|a| (a.value, a.source, a.encoding)),
            Some((answer(), Source::Warm, encoding)),
            "{key}"
        );
        let after = counts(&f.stats());
        assert_eq!(
            (
                after.warm - before.warm,
                after.cost_saved - before.cost_saved
            ),
            (1, cost),
            "{key}"
        );
        // Promoted with its encoding.
        let again = f.get_answer::<Answer>(key).await.unwrap().unwrap();
        assert_eq!(
            (again.source, again.encoding),
            (Source::Hot, encoding),
            "{key}"
        );
        let bytes = f.get_bytes_answer(key).await.unwrap().unwrap();
        assert_eq!(bytes.encoding, encoding, "{key}");
    }
    // The reserved code is a corruption: a miss, quarantined, never served as bytes either.
    assert_eq!(f.get::<Answer>("reserved").await.unwrap(), None);
    assert_eq!(f.get_bytes("reserved").await.unwrap(), None);
    let s = f.stats();
    assert_eq!(
        s.corrupted_by_reason.get("flags").copied(),
        Some(1),
        "{s:?}"
    );
    assert_eq!(s.decode_misses, 0);
    assert!(!entry_path(&root, b"reserved").exists());
}

/// Bytes that are not what the recorded code says: a miss each (counted once, the file left
/// in place, the bytes still there for `get_bytes`), never an error, never a hit.
#[tokio::test]
async fn planted_files_that_lie_about_their_encoding_are_counted_misses() {
    let dir = dir();
    let root = dir.root().to_owned();
    let json = serde_json::to_vec(&answer()).unwrap();
    let bin = bincode_of(&answer());
    plant_v2(&root, b"json-holding-bincode", &bin, 1, 9);
    plant_v2(&root, b"raw-holding-bincode", &bin, 0, 9);
    plant_v2(&root, b"bincode-holding-json", &json, 2, 9);
    // An older `set_bytes` of a provider body: version 1 reads typed values as bincode.
    plant_v1(&root, b"v1-holding-json", &json, 9);
    let f = dir.open_cache(|b| b).await;
    let keys = [
        "json-holding-bincode",
        "raw-holding-bincode",
        "bincode-holding-json",
        "v1-holding-json",
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(f.get::<Answer>(*key).await.unwrap(), None, "{key}");
        let c = counts(&f.stats());
        let n = i as u64 + 1;
        assert_eq!(
            (c.hot, c.warm, c.misses, c.decode_misses, c.cost_saved),
            (0, 0, n, n, 0),
            "{key}: {c:?}"
        );
        assert!(entry_path(&root, key.as_bytes()).exists(), "{key}");
    }
    // Their bytes, unchanged, for get_bytes (a hit each, with their cost).
    assert_eq!(
        &f.get_bytes("json-holding-bincode").await.unwrap().unwrap()[..],
        &bin[..]
    );
    assert_eq!(
        &f.get_bytes("v1-holding-json").await.unwrap().unwrap()[..],
        &json[..]
    );
    // A load as the requested type replaces each (one miss, one load), then hits.
    for key in keys {
        let got = f
            .get_or_insert_answer(key, &Controls::new(), || async {
                Ok::<_, std::convert::Infallible>(answer())
            })
            .await
            .unwrap();
        assert_eq!((got.value, got.source), (answer(), Source::Loaded), "{key}");
        let got = f.get_answer::<Answer>(key).await.unwrap().unwrap();
        assert_eq!((got.source, got.encoding), (Source::Hot, Encoding::Json));
    }
    let s = f.stats();
    assert_eq!(
        (s.loader_calls, s.decode_misses),
        (4, 8),
        "{:?}",
        counts(&s)
    );
}

/// JSON that parses as a different type: a typed read of a raw provider body as the wrong
/// struct misses; as `serde_json::Value` it is the body.
#[tokio::test]
async fn raw_json_of_another_shape_misses_and_reads_as_a_value() {
    let f = open().await;
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":null}"#;
    f.set_bytes("body", body).await.unwrap();
    assert_eq!(f.get::<Answer>("body").await.unwrap(), None);
    assert_eq!(f.get::<Vec<u8>>("body").await.unwrap(), None);
    let v = f
        .get_answer::<serde_json::Value>("body")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.value["id"].as_str(), v.source, v.encoding),
        (Some("chatcmpl-1"), Source::Hot, Encoding::Raw)
    );
    let c = counts(&f.stats());
    assert_eq!((c.hot, c.misses, c.decode_misses), (1, 2, 2), "{c:?}");
}

/// The request key the previous version stored under (printed by the program that wrote the
/// fixture), and the namespace generation it drew.
const OLD_RK: &str = "chat/v1/494ae1aa4fe795ffc5bd78fae37535da158c62ca9e231b66691cdc2b60cb37e5";
const OLD_GENERATION: u64 = 0xfce6_ae76_5acf_101a;

/// A directory written by the previous version (format 1, bincode values, a bincode namespace
/// record): every typed value, the raw body, the namespace record and the entries of the
/// namespace (a plain key and a request key) still read, as "unrecorded"; a namespace
/// invalidation drops them for every handle, also after a restart.
#[tokio::test]
async fn a_directory_written_by_the_previous_version_still_reads() {
    let dir = dir();
    let root = dir.root().to_owned();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adversary3/fixtures/v1-cache"),
        &root,
    )
    .unwrap();
    let mut f = dir.open_cache(|b| b).await;
    let got = f.get_answer::<Answer>("typed").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (answer(), Source::Warm, Encoding::Unrecorded)
    );
    assert_eq!(f.get::<u32>("n53").await.unwrap(), Some(53));
    let emb: Vec<f32> = f.get("embedding").await.unwrap().unwrap();
    assert_eq!(
        emb.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        [0.25f32, -0.5, 1e-45].map(f32::to_bits)
    );
    assert_eq!(
        &f.get_bytes("raw-body").await.unwrap().unwrap()[..],
        br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#
    );
    let ns = f.namespace("chat").unwrap();
    assert_eq!(ns.generation().await.unwrap(), OLD_GENERATION);
    assert_eq!(
        ns.get::<Answer>("plain-in-ns").await.unwrap(),
        Some(Answer {
            text: "in ns".into(),
            tokens: 7
        })
    );
    let rk = ns
        .request_key_builder()
        .model("gpt-4o-mini")
        .message("user", "Capital of France?")
        .build()
        .unwrap();
    assert_eq!(rk.as_str(), OLD_RK);
    let via_rk = Answer {
        text: "Paris via rk".into(),
        tokens: 9,
    };
    assert_eq!(ns.get::<Answer>(&rk).await.unwrap(), Some(via_rk.clone()));
    assert_eq!(f.get::<Answer>(&rk).await.unwrap(), Some(via_rk));
    let c = counts(&f.stats());
    assert_eq!((c.misses, c.decode_misses), (0, 0), "{c:?}");

    // The old values, replaced by this version, are JSON now; the old type still reads.
    f.set("typed", &answer()).await.unwrap();
    f.reopen().await;
    let got = f.get_answer::<Answer>("typed").await.unwrap().unwrap();
    assert_eq!((got.value, got.encoding), (answer(), Encoding::Json));

    let ns = f.namespace("chat").unwrap();
    assert_eq!(ns.generation().await.unwrap(), OLD_GENERATION);
    let g = ns.invalidate().await.unwrap();
    assert_ne!(g, OLD_GENERATION);
    assert_eq!(f.get::<Answer>(&rk).await.unwrap(), None);
    assert_eq!(ns.get::<Answer>("plain-in-ns").await.unwrap(), None);
    f.reopen().await;
    let ns = f.namespace("chat").unwrap();
    assert_eq!(ns.generation().await.unwrap(), g);
    assert_eq!(f.get::<Answer>(&rk).await.unwrap(), None);
    assert_eq!(ns.get::<Answer>(&rk).await.unwrap(), None);
}

/// The same directory opened with the bincode codec and read typed through `get_or_insert`:
/// hits, no load.
#[tokio::test]
async fn the_previous_versions_values_are_hits_for_get_or_insert_under_either_codec() {
    for codec in [Codec::Json, Codec::Bincode] {
        let dir = dir();
        let root = dir.root().to_owned();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adversary3/fixtures/v1-cache"),
            &root,
        )
        .unwrap();
        let f = dir.open_cache(|b| b.codec(codec)).await;
        let got = f
            .get_or_insert_answer("typed", &Controls::new(), || async {
                Err::<Answer, _>("must not load")
            })
            .await
            .unwrap();
        assert_eq!(
            (got.value, got.source, got.encoding),
            (answer(), Source::Warm, Encoding::Unrecorded),
            "{codec:?}"
        );
    }
}
