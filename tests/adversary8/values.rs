//! The values real users store, through the shared tier from one replica to another:
//! provider chat-completion bodies as typed values, `serde_json::Value`, empty values,
//! entries exactly at `max_entry_bytes` and one byte over, keys with NUL bytes and keys at
//! the key-length limit.

use answercache::warm::format::{self, EntryMeta};
use answercache::Encoding;
use async_openai::types::chat::CreateChatCompletionResponse;

use crate::fixture::CHAT_COMPLETION_JSON;
use crate::support::cache::*;
use crate::support::*;
use crate::util::*;

#[test]
fn chat_completions_and_json_values_cross_replicas_intact() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8val", 3);
        let a = replica(cfg.clone()).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        let resp: CreateChatCompletionResponse =
            serde_json::from_str(CHAT_COMPLETION_JSON).unwrap();
        let json: serde_json::Value = serde_json::from_str(CHAT_COMPLETION_JSON).unwrap();
        a.set("typed", &resp).await.unwrap();
        a.set("json", &json).await.unwrap();
        a.set_bytes("body", CHAT_COMPLETION_JSON).await.unwrap();
        a.set_bytes("empty", b"").await.unwrap();
        a.flush().await.unwrap();
        let got: CreateChatCompletionResponse = b.get("typed").await.unwrap().unwrap();
        assert_eq!(got, resp);
        let got: serde_json::Value = b.get("json").await.unwrap().unwrap();
        assert_eq!(got, json);
        assert_eq!(
            b.get_bytes("body").await.unwrap().as_deref(),
            Some(CHAT_COMPLETION_JSON.as_bytes())
        );
        // The raw body read as the typed response too (README: a typed get reads it as JSON).
        let got: CreateChatCompletionResponse = b.get("body").await.unwrap().unwrap();
        assert_eq!(got, resp);
        assert_eq!(
            b.get_bytes("empty").await.unwrap().as_deref(),
            Some(&b""[..])
        );
        let s = b.stats();
        assert_eq!(
            (s.shared_hits, s.shared_misses, s.shared_corrupted),
            (4, 0, 0)
        );
        // A shared hit is not shared again.
        b.flush().await.unwrap();
        assert_eq!(b.stats().shared_writes_ok, 0);
        assert_eq!(a.stats().shared_writes_ok, 4);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Incompressible bytes whose entry file under `key` is exactly `target` bytes long (level 3,
/// as the cache writes), found by search.
fn value_with_file_len(key: &[u8], target: usize) -> Vec<u8> {
    let meta = EntryMeta {
        created_ms: 1,
        expires_ms: 0,
        cost: 0,
        encoding: Encoding::Raw,
    };
    let mut noise = vec![0u8; target];
    blake3::Hasher::new()
        .update(b"noise")
        .finalize_xof()
        .fill(&mut noise);
    for len in (0..target).rev() {
        let file = format::encode(key, &noise[..len], meta, 3).unwrap();
        if file.len() == target {
            return noise[..len].to_vec();
        }
        if file.len() < target {
            break;
        }
    }
    panic!("no value length gives a {target}-byte entry file");
}

#[test]
fn entries_exactly_at_max_entry_bytes_are_shared_one_over_are_not() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        const MAX: usize = 8192;
        let cfg = cfg(&server, "a8max", 3).max_entry_bytes(MAX);
        let a = replica_with(Some(cfg.clone()), |r| local_builder(r).compression_level(3)).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        let at = value_with_file_len(b"at", MAX);
        let over = value_with_file_len(b"over", MAX + 1);
        a.set_bytes("at", &at).await.unwrap();
        a.set_bytes("over", &over).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(
            server
                .get_raw(&entry_key("a8max", b"at"))
                .await
                .map(|v| v.len()),
            Some(MAX)
        );
        assert!(!server.exists(&entry_key("a8max", b"over")).await);
        assert_eq!(b.get_bytes("at").await.unwrap().as_deref(), Some(&at[..]));
        assert_eq!(b.get_bytes("over").await.unwrap(), None);
        let s = a.stats();
        assert_eq!(
            (
                s.shared_writes_ok,
                by(&s.shared_writes_dropped_by_reason, "too_large")
            ),
            (1, 1)
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn keys_with_nul_bytes_and_at_the_length_limit() {
    let _slot = shared_slot();
    let Some(server) = server() else { return };
    let logs = LogCapture::new();
    run(&logs, async {
        let cfg = cfg(&server, "a8keys", 3);
        let a = replica(cfg.clone()).await;
        let b = replica(cfg.clone()).await;
        wait_closed(&a).await;
        wait_closed(&b).await;
        let nul: &[u8] = b"\0q\0with\0nuls\0";
        let nul2: &[u8] = b"\0q\0with\0nuls\0\0";
        let mut long = vec![b'x'; 16 << 10];
        long[0] = 0;
        let mut long2 = long.clone();
        *long2.last_mut().unwrap() = b'y';
        a.set_bytes(nul, "nul").await.unwrap();
        a.set_bytes(nul2, "nul2").await.unwrap();
        a.set_bytes(long.as_slice(), "long").await.unwrap();
        a.set_bytes(long2.as_slice(), "long2").await.unwrap();
        a.flush().await.unwrap();
        for (k, v) in [
            (nul, "nul"),
            (nul2, "nul2"),
            (&long[..], "long"),
            (&long2[..], "long2"),
        ] {
            assert_eq!(b.get_bytes(k).await.unwrap().as_deref(), Some(v.as_bytes()));
            // The Redis key name carries only the hash: no byte of the key.
            let name = entry_key("a8keys", k);
            assert_eq!(name.len(), "a8keys:v1:e:".len() + 64);
        }
        assert_eq!(b.stats().shared_hits, 4);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
