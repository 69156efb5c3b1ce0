//! Core behaviour of the tiered cache, end to end.

mod smoke {
    use tiercache::TieredCache;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_close_reopen_get() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TieredCache::builder(dir.path()).min_free_bytes(0).build().await.unwrap();
        for i in 0..100u32 {
            cache.set(format!("k{i}"), &format!("value {i}")).await.unwrap();
        }
        cache.close().await.unwrap();
        let s = cache.stats();
        assert_eq!(s.writes_ok, 100);
        let cache = TieredCache::builder(dir.path()).min_free_bytes(0).build().await.unwrap();
        for i in 0..100u32 {
            let v: Option<String> = cache.get(format!("k{i}")).await.unwrap();
            assert_eq!(v, Some(format!("value {i}")));
        }
        let s = cache.stats();
        assert_eq!((s.warm_hits, s.hot_hits, s.misses), (100, 0, 0));
        assert!(cache.remove("k1").await.unwrap());
        assert_eq!(cache.get::<String>("k1").await.unwrap(), None);
        cache.close().await.unwrap();
        let cache = TieredCache::builder(dir.path()).min_free_bytes(0).build().await.unwrap();
        assert_eq!(cache.get::<String>("k1").await.unwrap(), None);
        assert_eq!(cache.get::<String>("k2").await.unwrap(), Some("value 2".into()));
        cache.close().await.unwrap();
    }
}
