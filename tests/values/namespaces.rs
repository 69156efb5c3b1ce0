//! A `RequestKey` is stored in its namespace whichever handle stores it: the cache and the
//! namespace handle address the same entry, and the namespace's invalidation drops it, in
//! memory and across a restart. A request key of another namespace is refused by a handle.

use answercache::agent::{Controls, RequestKey};
use answercache::{Error, Source};

use crate::support::*;

fn chat_key() -> RequestKey {
    RequestKey::builder("chat")
        .model("m")
        .message("user", "q")
        .build()
        .unwrap()
}

fn other_key() -> RequestKey {
    RequestKey::builder("other")
        .model("m")
        .message("user", "q")
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_cache_and_the_namespace_handle_store_a_request_key_in_the_same_entry() {
    let f = TestCache::new().await;
    let rk = chat_key();
    let ns = f.namespace("chat").unwrap();

    f.set(&rk, &"from the cache").await.unwrap();
    assert_eq!(
        ns.get::<String>(&rk).await.unwrap().as_deref(),
        Some("from the cache")
    );
    ns.set(&rk, &"from the handle").await.unwrap();
    assert_eq!(
        f.get::<String>(&rk).await.unwrap().as_deref(),
        Some("from the handle")
    );
    assert_eq!(
        ns.get::<String>(&rk).await.unwrap().as_deref(),
        Some("from the handle")
    );
    // By value and by reference alike.
    assert_eq!(
        f.get::<String>(rk.clone()).await.unwrap().as_deref(),
        Some("from the handle")
    );

    // get_or_insert through either finds it.
    let a = f
        .get_or_insert_answer(&rk, &Controls::new(), must_not_load::<String>)
        .await
        .unwrap();
    assert_eq!(
        (a.value.as_str(), a.source),
        ("from the handle", Source::Hot)
    );
    let a = ns
        .get_or_insert_answer(&rk, &Controls::new(), must_not_load::<String>)
        .await
        .unwrap();
    assert_eq!(
        (a.value.as_str(), a.source),
        ("from the handle", Source::Hot)
    );

    // Not the plain key of the same text, which lives outside every namespace.
    assert_eq!(f.get::<String>(rk.as_str()).await.unwrap(), None);
    f.set(rk.as_str(), &"plain").await.unwrap();
    assert_eq!(
        f.get::<String>(&rk).await.unwrap().as_deref(),
        Some("from the handle")
    );
}

#[tokio::test]
async fn invalidating_the_namespace_drops_request_keys_stored_by_either_handle() {
    let mut f = TestCache::new().await;
    let rk = chat_key();
    let rk2 = RequestKey::builder("chat")
        .model("m")
        .message("user", "another question")
        .build()
        .unwrap();
    let other = other_key();
    let ns = f.namespace("chat").unwrap();
    f.set(&rk, &"via cache").await.unwrap();
    ns.set(&rk2, &"via handle").await.unwrap();
    f.set(&other, &"other namespace").await.unwrap();
    f.set("plain", &"outside").await.unwrap();
    // One of them only on disk when the namespace is invalidated.
    f.reopen().await;
    let ns = f.namespace("chat").unwrap();
    assert_eq!(
        f.get::<String>(&rk).await.unwrap().as_deref(),
        Some("via cache")
    );

    ns.invalidate().await.unwrap();
    for k in [&rk, &rk2] {
        assert_eq!(f.get::<String>(k).await.unwrap(), None, "{k}");
        assert_eq!(ns.get::<String>(k).await.unwrap(), None, "{k}");
        assert_eq!(f.get_bytes(k).await.unwrap(), None, "{k}");
        let fresh = f.namespace("chat").unwrap();
        assert_eq!(
            fresh.get::<String>(k).await.unwrap(),
            None,
            "{k}: a new handle"
        );
    }
    assert_eq!(
        f.get::<String>(&other).await.unwrap().as_deref(),
        Some("other namespace")
    );
    assert_eq!(
        f.get::<String>("plain").await.unwrap().as_deref(),
        Some("outside")
    );

    // After a restart, still gone; the rest still there.
    f.reopen().await;
    let ns = f.namespace("chat").unwrap();
    for k in [&rk, &rk2] {
        assert_eq!(f.get::<String>(k).await.unwrap(), None, "{k} after reopen");
        assert_eq!(ns.get::<String>(k).await.unwrap(), None, "{k} after reopen");
    }
    assert_eq!(
        f.get::<String>(&other).await.unwrap().as_deref(),
        Some("other namespace")
    );
    assert_eq!(
        f.get::<String>("plain").await.unwrap().as_deref(),
        Some("outside")
    );

    // The key is usable again: a load stores under the new generation, through either handle.
    let a = f
        .get_or_insert_answer(&rk, &Controls::new(), || async {
            Ok::<_, std::io::Error>("reloaded".to_string())
        })
        .await
        .unwrap();
    assert_eq!((a.value.as_str(), a.source), ("reloaded", Source::Loaded));
    assert_eq!(
        ns.get::<String>(&rk).await.unwrap().as_deref(),
        Some("reloaded")
    );
    f.reopen().await;
    let ns = f.namespace("chat").unwrap();
    let a = ns.get_answer::<String>(&rk).await.unwrap().unwrap();
    assert_eq!((a.value.as_str(), a.source), ("reloaded", Source::Warm));
    assert_eq!(ns.get::<String>(&rk2).await.unwrap(), None);
}

#[tokio::test]
async fn a_request_key_of_another_namespace_is_refused_by_a_handle() {
    let f = TestCache::new().await;
    let ns = f.namespace("chat").unwrap();
    let other = other_key();
    f.set(&other, &"other's value").await.unwrap();

    assert!(matches!(
        ns.get::<String>(&other).await,
        Err(Error::Config(_))
    ));
    assert!(matches!(ns.set(&other, &"x").await, Err(Error::Config(_))));
    assert!(matches!(ns.get_bytes(&other).await, Err(Error::Config(_))));
    let r = ns
        .get_or_insert_answer(&other, &Controls::new(), || async {
            Ok::<_, std::io::Error>("must not be stored".to_string())
        })
        .await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    match ns.get::<String>(&other).await {
        Err(e @ Error::Config(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("\"other\"") && text.contains("\"chat\""),
                "the error names both namespaces: {text}"
            );
        }
        r => panic!("expected Error::Config, got {r:?}"),
    }
    // Nothing was changed.
    assert_eq!(
        f.get::<String>(&other).await.unwrap().as_deref(),
        Some("other's value")
    );
    assert_eq!(f.stats().loader_calls, 0);
    // Its own handle takes it.
    let own = f.namespace("other").unwrap();
    assert_eq!(
        own.get::<String>(&other).await.unwrap().as_deref(),
        Some("other's value")
    );
}
