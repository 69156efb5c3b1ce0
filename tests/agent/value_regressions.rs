//! The defects of issue 12, each reproduced with the API that existed before the fix (so the
//! same file, dropped into the old tree, fails there): a real chat completion and a
//! `serde_json::Value` did not decode; a value of another type was an error counted as a hit
//! with its cost; five concurrent full-bypass calls shared one load; a request key outlived its
//! namespace's invalidation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use answercache::agent::{Controls, RequestKey};
use async_openai::types::chat::CreateChatCompletionResponse;

use crate::support::{answer, Answer, TestCache};

/// A provider's answer, as OpenAI sends it (fields absent, null and nested).
const COMPLETION: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "Paris.", "refusal": null, "annotations": []},
    "logprobs": null,
    "finish_reason": "stop"
  }],
  "usage": {
    "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default"
}"#;

#[tokio::test]
async fn a_real_chat_completion_round_trips_from_memory_and_disk() {
    let mut f = TestCache::new().await;
    let completion: CreateChatCompletionResponse = serde_json::from_str(COMPLETION).unwrap();
    f.set("chat", &completion).await.unwrap();
    let hot: CreateChatCompletionResponse = f.get("chat").await.unwrap().unwrap();
    assert_eq!(hot, completion);
    f.reopen().await;
    let warm: CreateChatCompletionResponse = f.get("chat").await.unwrap().unwrap();
    assert_eq!(warm, completion);
    assert_eq!((f.stats().warm_hits, f.stats().misses), (1, 0));
}

#[tokio::test]
async fn a_json_value_round_trips() {
    let f = TestCache::new().await;
    let value: serde_json::Value = serde_json::from_str(COMPLETION).unwrap();
    f.set("v", &value).await.unwrap();
    assert_eq!(f.get::<serde_json::Value>("v").await.unwrap(), Some(value));
}

#[tokio::test]
async fn a_value_of_another_type_is_a_miss_never_a_hit_or_an_error() {
    let f = TestCache::new().await;
    f.set_with_controls("k", &answer("Paris", 9), &Controls::new().cost(9))
        .await
        .unwrap();
    let other: Option<Vec<u64>> = f.get("k").await.unwrap();
    assert_eq!(other, None);
    let s = f.stats();
    assert_eq!((s.hot_hits, s.misses, s.cost_saved), (0, 1, 0));
    // The entry is intact for its own type.
    assert_eq!(
        f.get::<Answer>("k").await.unwrap(),
        Some(answer("Paris", 9))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_full_bypass_calls_each_run_their_own_loader() {
    let f = TestCache::new().await;
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (cache, calls) = (f.cache.clone(), calls.clone());
            tokio::spawn(async move {
                let bypass = Controls::new().no_cache().no_store();
                cache
                    .get_or_insert_with_controls("sampled", &bypass, || async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, std::io::Error>(answer(&format!("sample {n}"), n))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut texts = Vec::new();
    for t in tasks {
        texts.push(t.await.unwrap().text);
    }
    texts.sort();
    assert_eq!(
        texts,
        ["sample 0", "sample 1", "sample 2", "sample 3", "sample 4"]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(f.get::<Answer>("sampled").await.unwrap(), None);
}

#[tokio::test]
async fn a_request_key_is_invalidated_by_its_namespace() {
    let f = TestCache::new().await;
    let key = RequestKey::builder("chat")
        .model("gpt-4o-mini")
        .message("user", "Capital of France?")
        .build()
        .unwrap();
    f.set(&key, &answer("Paris", 3)).await.unwrap();
    assert_eq!(
        f.get::<Answer>(&key).await.unwrap(),
        Some(answer("Paris", 3))
    );
    f.namespace("chat").unwrap().invalidate().await.unwrap();
    assert_eq!(f.get::<Answer>(&key).await.unwrap(), None);
}
