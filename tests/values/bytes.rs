//! Raw provider bytes end to end: the HTTP body a loader returns is stored as it is and comes
//! back byte for byte from both tiers; a typed `get` parses it as JSON; the bytes of a typed
//! JSON value are exactly its JSON text.

use answercache::agent::Controls;
use answercache::{Codec, Encoding, Source};
use async_openai::types::chat::CreateChatCompletionResponse;

use crate::support::*;

fn parsed() -> CreateChatCompletionResponse {
    serde_json::from_str(CHAT_COMPLETION_JSON).unwrap()
}

async fn must_not_load_bytes() -> Result<String, &'static str> {
    Err("this loader must not run: the body is cached")
}

#[tokio::test]
async fn a_raw_provider_body_comes_back_identical_and_parses() {
    for codec in [Codec::Json, Codec::Bincode] {
        let mut f = TestCache::with(|b| b.codec(codec)).await;
        let body = CHAT_COMPLETION_JSON.to_string();
        let loaded = f
            .get_or_insert_bytes("req-1", &Controls::new(), || {
                let body = body.clone();
                async move { Ok::<_, std::io::Error>(body) }
            })
            .await
            .unwrap();
        assert_eq!(
            &loaded.value[..],
            CHAT_COMPLETION_JSON.as_bytes(),
            "{codec:?}"
        );
        assert_eq!(
            (loaded.source, loaded.encoding),
            (Source::Loaded, Encoding::Raw)
        );

        let hot = f
            .get_or_insert_bytes("req-1", &Controls::new(), must_not_load_bytes)
            .await
            .unwrap();
        assert_eq!(&hot.value[..], CHAT_COMPLETION_JSON.as_bytes());
        assert_eq!((hot.source, hot.encoding), (Source::Hot, Encoding::Raw));
        let got = f.get_bytes_answer("req-1").await.unwrap().unwrap();
        assert_eq!(&got.value[..], CHAT_COMPLETION_JSON.as_bytes());
        assert_eq!((got.source, got.encoding), (Source::Hot, Encoding::Raw));

        // A typed read parses the body as JSON, whatever the cache's codec.
        let typed = f
            .get_answer::<CreateChatCompletionResponse>("req-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(typed.value, parsed(), "{codec:?}");
        assert_eq!((typed.source, typed.encoding), (Source::Hot, Encoding::Raw));
        let as_value: serde_json::Value = f.get("req-1").await.unwrap().unwrap();
        assert_eq!(
            as_value,
            serde_json::from_str::<serde_json::Value>(CHAT_COMPLETION_JSON).unwrap()
        );

        f.reopen().await;
        let warm = f.get_bytes_answer("req-1").await.unwrap().unwrap();
        assert_eq!(
            &warm.value[..],
            CHAT_COMPLETION_JSON.as_bytes(),
            "{codec:?}"
        );
        assert_eq!((warm.source, warm.encoding), (Source::Warm, Encoding::Raw));
        let hot = f
            .get_or_insert_bytes("req-1", &Controls::new(), must_not_load_bytes)
            .await
            .unwrap();
        assert_eq!(&hot.value[..], CHAT_COMPLETION_JSON.as_bytes());
        assert_eq!((hot.source, hot.encoding), (Source::Hot, Encoding::Raw));

        f.reopen().await;
        let warm = f
            .get_or_insert_bytes("req-1", &Controls::new(), must_not_load_bytes)
            .await
            .unwrap();
        assert_eq!(&warm.value[..], CHAT_COMPLETION_JSON.as_bytes());
        assert_eq!((warm.source, warm.encoding), (Source::Warm, Encoding::Raw));

        f.reopen().await;
        let typed = f
            .get_answer::<CreateChatCompletionResponse>("req-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(typed.value, parsed(), "{codec:?}: typed read from the disk");
        assert_eq!(
            (typed.source, typed.encoding),
            (Source::Warm, Encoding::Raw)
        );
        let s = f.stats();
        assert_eq!((s.warm_hits, s.decode_misses, s.loader_calls), (1, 0, 0));
    }
}

#[tokio::test]
async fn the_bytes_of_a_typed_json_value_are_its_json_text() {
    let mut f = TestCache::new().await;
    let value = parsed();
    let json = serde_json::to_vec(&value).unwrap();
    f.set("typed", &value).await.unwrap();
    let got = f.get_bytes_answer("typed").await.unwrap().unwrap();
    assert_eq!(&got.value[..], &json[..]);
    assert_eq!((got.source, got.encoding), (Source::Hot, Encoding::Json));
    let loaded = f
        .get_or_insert_answer("loaded", &Controls::new(), || async {
            Ok::<_, std::io::Error>(parsed())
        })
        .await
        .unwrap();
    assert_eq!(loaded.source, Source::Loaded);
    assert_eq!(
        f.get_bytes("loaded").await.unwrap().as_deref(),
        Some(&json[..])
    );
    // A bytes loader over a typed entry: the entry's bytes, as they are.
    let b = f
        .get_or_insert_bytes("typed", &Controls::new(), must_not_load_bytes)
        .await
        .unwrap();
    assert_eq!(
        (&b.value[..], b.source, b.encoding),
        (&json[..], Source::Hot, Encoding::Json)
    );

    f.reopen().await;
    let got = f.get_bytes_answer("typed").await.unwrap().unwrap();
    assert_eq!(&got.value[..], &json[..]);
    assert_eq!((got.source, got.encoding), (Source::Warm, Encoding::Json));
    assert_eq!(
        f.get_bytes("loaded").await.unwrap().as_deref(),
        Some(&json[..])
    );
    // Those bytes, set back as raw bytes, read back as the same typed value.
    f.set_bytes("copy", &got.value).await.unwrap();
    assert_eq!(
        f.get::<CreateChatCompletionResponse>("copy").await.unwrap(),
        Some(value)
    );
}

#[tokio::test]
async fn raw_bytes_that_are_not_json_are_a_decode_miss_for_a_typed_get() {
    let mut f = TestCache::new().await;
    let body: &[u8] = b"\xff\x00<html>502 Bad Gateway</html>";
    let a = f
        .get_or_insert_bytes("gateway", &Controls::new(), || async {
            Ok::<_, std::io::Error>(body)
        })
        .await
        .unwrap();
    assert_eq!((&a.value[..], a.source), (body, Source::Loaded));
    assert_eq!(f.get::<serde_json::Value>("gateway").await.unwrap(), None);
    let s = f.stats();
    assert_eq!((s.decode_misses, s.misses, s.hot_hits), (1, 2, 0));
    // The bytes are still there for a bytes read.
    let b = f.get_bytes_answer("gateway").await.unwrap().unwrap();
    assert_eq!(
        (&b.value[..], b.source, b.encoding),
        (body, Source::Hot, Encoding::Raw)
    );

    // A typed get_or_insert over it: one decode miss, one load, the typed value replaces it.
    let typed = f
        .get_or_insert_answer("gateway", &Controls::new(), || async {
            Ok::<_, std::io::Error>(parsed())
        })
        .await
        .unwrap();
    assert_eq!(
        (typed.source, typed.encoding),
        (Source::Loaded, Encoding::Json)
    );
    let s = f.stats();
    assert_eq!((s.decode_misses, s.misses, s.loader_calls), (2, 3, 2));
    f.reopen().await;
    let got = f
        .get_answer::<CreateChatCompletionResponse>("gateway")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (parsed(), Source::Warm, Encoding::Json)
    );
}
