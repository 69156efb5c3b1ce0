//! T14, start-up with Redis down: `build()` returns within 1 s whatever Redis does (nothing
//! listening on the socket, nothing on a TCP port, a stopped server, a blackholed proxy); the
//! tier starts Open; the cache serves from its local tiers with no error; the tier joins when
//! Redis appears (Closed, and writes land). Configuration errors are `Error::Config`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use answercache::{BreakerState, Error, SharedConfig, TieredCache};

use crate::support::cache::*;
use crate::support::*;

const PREFIX: &str = "t14";
const PROMPT: Duration = Duration::from_secs(1);

/// Builds a cache on `url` and checks the promptness and the local service.
async fn build_while_down(url: &str) -> (Replica, Duration) {
    let t = Instant::now();
    let r = replica(config(url, PREFIX)).await;
    let took = t.elapsed();
    assert!(took <= PROMPT, "build() waited {took:?} for Redis ({url})");
    assert_ne!(r.shared_state(), Some(BreakerState::Closed));
    assert!(r.shared_state().is_some());
    r.set_bytes("local", b"served locally").await.unwrap();
    let t = Instant::now();
    let v = r.get_bytes("local").await.unwrap();
    assert_eq!(v.as_deref(), Some(&b"served locally"[..]));
    assert!(t.elapsed() < TIMEOUT, "a local hit waited on Redis");
    assert_eq!(r.get_bytes("absent").await.unwrap(), None);
    (r, took)
}

#[test]
fn t14_startup_with_redis_down_then_joining() {
    let _slot = shared_slot();
    scenario(ServerOptions::default());
}

pub fn scenario(opts: ServerOptions) {
    let Some(server) = RedisServer::start_with(opts) else {
        return;
    };
    let server = Arc::new(server);
    let logs = LogCapture::new();
    run(&logs, async {
        // Nothing on the socket.
        server.kill9();
        let (r, took_socket) = build_while_down(&server.url()).await;
        restart_async(&server).await;
        let t_up = Instant::now();
        wait_state(&r, BreakerState::Closed, Duration::from_secs(3))
            .await
            .expect("the tier joins once Redis is up");
        let joined = t_up.elapsed();
        r.set_bytes("after", b"shared now").await.unwrap();
        r.flush().await.unwrap();
        assert!(server.exists(&entry_key(PREFIX, b"after")).await);
        r.close().await.unwrap();

        // A stopped server: connects are accepted, nothing answers.
        sigstop_async(&server).await;
        let (r, took_stopped) = build_while_down(&server.url()).await;
        sigcont_async(&server).await;
        wait_state(&r, BreakerState::Closed, Duration::from_secs(3))
            .await
            .expect("joins after SIGCONT");
        r.close().await.unwrap();

        // Nothing on a TCP port; a blackholed proxy.
        let (r, took_tcp) =
            build_while_down(&format!("redis://127.0.0.1:{}/", server::free_port())).await;
        r.close().await.unwrap();
        let tcp = RedisServer::start_tcp().expect("a TCP server");
        let proxy = FaultProxy::start(tcp.tcp_addr()).await;
        proxy.set_blackhole(true);
        let (r, took_blackhole) = build_while_down(&proxy.url()).await;
        proxy.set_blackhole(false);
        wait_state(&r, BreakerState::Closed, Duration::from_secs(3))
            .await
            .expect("joins after the blackhole");
        r.close().await.unwrap();
        println!(
            "\nSHARED T14 build_ms socket_down={} stopped={} tcp_down={} blackholed={} \
             joined_after_restart_ms={}",
            ms3(took_socket),
            ms3(took_stopped),
            ms3(took_tcp),
            ms3(took_blackhole),
            ms3(joined)
        );
        println!("SHARED T14 warnings={}", logs.crate_warnings().len());
    });
}

fn config_error(r: answercache::Result<TieredCache>) -> bool {
    matches!(r, Err(Error::Config(_)))
}

#[test]
fn t14_configuration_errors() {
    assert!(matches!(
        SharedConfig::redis("not a url"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        SharedConfig::redis("http://example/"),
        Err(Error::Config(_))
    ));
    for ok in [
        "redis://127.0.0.1:6379/0",
        "valkey://127.0.0.1:6379/",
        "redis+unix:///tmp/r.sock",
        "unix:///tmp/r.sock",
    ] {
        assert!(SharedConfig::redis(ok).is_ok(), "{ok}");
    }
    // Debug never prints a password.
    let cfg = SharedConfig::redis("redis://:hunter2secret@127.0.0.1:6379/").unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2secret"), "{cfg:?}");
    let logs = LogCapture::new();
    run(&logs, async {
        let dir = tempfile::tempdir().unwrap();
        let url = "redis://127.0.0.1:1/";
        let base = || SharedConfig::redis(url).unwrap();
        let bad = [
            ("zero timeout", base().timeout(Duration::ZERO)),
            ("zero queue", base().write_queue_bytes(0)),
            ("empty prefix", base().prefix("")),
            ("prefix with a space", base().prefix("a b")),
        ];
        for (what, cfg) in bad {
            let r = local_builder(dir.path()).shared(cfg).build().await;
            assert!(config_error(r), "{what}: not Error::Config");
        }
        let r = local_builder(dir.path())
            .shared_single_flight(true)
            .build()
            .await;
        assert!(config_error(r), "single flight without a shared tier");
        // No shared tier: no state, zero figures.
        let c = local_builder(dir.path()).build().await.unwrap();
        assert_eq!(c.shared_state(), None);
        let s = c.stats();
        assert_eq!(
            (s.shared_state, s.shared_hits, s.shared_misses),
            (None, 0, 0)
        );
        c.close().await.unwrap();
    });
}
