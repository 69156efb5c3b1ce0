//! The bincode codec (`Builder::codec(Codec::Bincode)`, and every typed value of a version-1
//! file) against the promise "a value that does not decode as the requested type is a miss
//! ... never a value built from the wrong bytes (every byte must be consumed; every field type
//! checked)" and "a changed field type misses and reloads". bincode has no field names, no
//! type tags and no depth limit: schema changes that users make every day decode, silently,
//! into other values, and a hostile entry can overflow the reader's stack.

use std::process::Command;

use answercache::agent::Controls;
use answercache::{Codec, Encoding, Source};
use serde::{Deserialize, Serialize};

use crate::support::*;

async fn bincode_cache() -> TestCache {
    open_with(|b| b.codec(Codec::Bincode)).await
}

/// What a service stored yesterday, and the same struct after a change in today's build.
mod v1 {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Usage {
        pub model: String,
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
    }
}

/// `u64` token counts became `i64` (to allow a negative correction). With bincode, 5 decodes
/// as -3 (zigzag): a wrong value served as a hit, not a miss.
#[tokio::test]
async fn bincode_unsigned_to_signed_field_change_serves_a_wrong_value() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Usage {
        model: String,
        prompt_tokens: i64,
        completion_tokens: i64,
    }
    let mut f = bincode_cache().await;
    f.set(
        "usage",
        &v1::Usage {
            model: "gpt-4o-mini".into(),
            prompt_tokens: 5,
            completion_tokens: 120,
        },
    )
    .await
    .unwrap();
    f.reopen().await; // today's build
    let got = f.get_answer::<Usage>("usage").await.unwrap();
    let s = f.stats();
    assert!(
        got.as_ref().map(|a| &a.value)
            == Some(&Usage {
                model: "gpt-4o-mini".into(),
                prompt_tokens: 5,
                completion_tokens: 120
            })
            || (got.is_none() && (s.decode_misses, s.misses) == (1, 1)),
        "the changed type must read the same numbers or miss; it read {:?} as a {:?} hit",
        got.as_ref().map(|a| &a.value),
        got.as_ref().map(|a| a.source)
    );
}

/// Two fields of the same type swapped places in the struct (a refactor that keeps every
/// name and type). bincode reads them positionally: the values are swapped, silently.
#[tokio::test]
async fn bincode_reordered_fields_serve_swapped_values() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Usage {
        model: String,
        completion_tokens: u64,
        prompt_tokens: u64,
    }
    let mut f = bincode_cache().await;
    f.set(
        "usage",
        &v1::Usage {
            model: "gpt-4o-mini".into(),
            prompt_tokens: 5,
            completion_tokens: 120,
        },
    )
    .await
    .unwrap();
    f.reopen().await;
    let got: Option<Usage> = f.get("usage").await.unwrap();
    assert!(
        got.is_none()
            || got
                == Some(Usage {
                    model: "gpt-4o-mini".into(),
                    completion_tokens: 120,
                    prompt_tokens: 5
                }),
        "read {got:?}: prompt and completion tokens swapped"
    );
}

/// A variant added in the middle of an enum (`ContentFilter` before `Length`). bincode
/// stores the variant's index: yesterday's `Length` is today's `ContentFilter`.
#[tokio::test]
async fn bincode_inserted_enum_variant_remaps_old_entries() {
    mod old {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum FinishReason {
            Stop,
            Length,
        }
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum FinishReason {
        Stop,
        ContentFilter,
        Length,
    }
    let mut f = bincode_cache().await;
    f.set("finish", &old::FinishReason::Length).await.unwrap();
    f.reopen().await;
    let got: Option<FinishReason> = f.get("finish").await.unwrap();
    assert!(
        got.is_none() || got == Some(FinishReason::Length),
        "yesterday's Length reads back as {got:?}"
    );
}

/// Variants reordered (alphabetized) in a new build, in a list: a conversation's roles.
/// Yesterday's `[User, Assistant, User, Assistant]` decodes as `[Assistant, User, Assistant,
/// User]`: every element is a valid value of the new type, and the list holds the same
/// variants, only each in the other's place. A check that compares a list's elements
/// without their order cannot see it.
#[tokio::test]
async fn bincode_reordered_variants_in_a_list_serve_a_permuted_list() {
    mod old {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum Role {
            User,
            Assistant,
        }
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Role {
        Assistant,
        User,
    }
    let mut f = bincode_cache().await;
    let history = vec![
        old::Role::User,
        old::Role::Assistant,
        old::Role::User,
        old::Role::Assistant,
    ];
    f.set("roles", &history).await.unwrap();
    f.reopen().await;
    let got: Option<Vec<Role>> = f.get("roles").await.unwrap();
    assert!(
        got.is_none()
            || got
                == Some(vec![
                    Role::User,
                    Role::Assistant,
                    Role::User,
                    Role::Assistant
                ]),
        "yesterday's [User, Assistant, User, Assistant] reads back as {got:?}"
    );
}

/// `get_or_insert` after the same change: the loader must run (a miss) or the old numbers
/// come back; a hit with another value is neither.
#[tokio::test]
async fn bincode_get_or_insert_after_a_type_change_serves_the_wrong_value_as_a_hit() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Usage {
        model: String,
        prompt_tokens: i64,
        completion_tokens: i64,
    }
    let mut f = bincode_cache().await;
    f.set(
        "usage",
        &v1::Usage {
            model: "m".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
        },
    )
    .await
    .unwrap();
    f.reopen().await;
    let fresh = Usage {
        model: "m".into(),
        prompt_tokens: 1,
        completion_tokens: 2,
    };
    let v = fresh.clone();
    let got = f
        .get_or_insert_answer("usage", &Controls::new(), || async move {
            Ok::<_, std::convert::Infallible>(v)
        })
        .await
        .unwrap();
    assert_eq!(
        got.value, fresh,
        "served {:?} from {:?} ({})",
        got.value, got.source, got.encoding
    );
}

/// Control: a bincode value read as its own type, and a type of another width, behave.
#[tokio::test]
async fn bincode_same_type_reads_and_an_added_field_misses() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Usage2 {
        model: String,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_tokens: u64,
    }
    let mut f = bincode_cache().await;
    let v = v1::Usage {
        model: "m".into(),
        prompt_tokens: 1,
        completion_tokens: 2,
    };
    f.set("usage", &v).await.unwrap();
    f.reopen().await;
    let got = f.get_answer::<v1::Usage>("usage").await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.source, got.encoding),
        (v, Source::Warm, Encoding::Bincode)
    );
    assert_eq!(f.get::<Usage2>("usage").await.unwrap(), None);
    let c = counts(&f.stats());
    assert_eq!(
        (c.warm, c.hot, c.misses, c.decode_misses),
        (1, 0, 1, 1),
        "{c:?}"
    );
}

/// A reply thread stored as a linked list: what a chat history looks like as a Rust type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Thread {
    End,
    Reply(Box<Thread>),
}

const CHILD_ENV: &str = "ANSWERCACHE_ADVERSARY3_CHILD";

/// Hostile input: a planted bincode entry (flags code 2, checksum-valid) of 200 000 bytes that
/// nests 200 000 levels deep, read as a recursive type. The JSON reader stops at 128 levels
/// (a miss); bincode has no limit, so the read recurses until the thread's stack overflows
/// and the process aborts. Run in a child process: the child must exit normally, having
/// read a miss.
#[test]
fn bincode_deep_planted_entry_must_not_abort_the_reader() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "bincode_codec::child_reads_a_deep_bincode_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child: read None"),
        "the reader process died: {:?}\nstderr tail: {}",
        out.status,
        stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    );
}

/// The child of the test above (skipped unless started by it).
#[test]
#[ignore = "run as a child process by bincode_deep_planted_entry_must_not_abort_the_reader"]
fn child_reads_a_deep_bincode_entry() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = dir();
        let root = dir.root().to_owned();
        let mut bytes = vec![1u8; 200_000]; // Reply(Reply(Reply(...
        bytes.push(0); // End
        plant_v2(&root, b"thread", &bytes, 2, 0);
        // The JSON twin: 200 000 nested arrays, recorded as JSON.
        let json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        plant_v2(&root, b"json-thread", json.as_bytes(), 1, 0);
        let f = dir.open_cache(|b| b).await;
        let j: Option<serde_json::Value> = f.get("json-thread").await.unwrap();
        println!("child: json read {:?}", j.is_some());
        let got: Option<Thread> = f.get("thread").await.unwrap();
        println!("child: read {:?}", got.map(|_| "a thread"));
    });
}
