//! Self-tests of the harness, against raw Redis through the `redis` crate: before the shared
//! tier's scenarios trust a fault, the fault is shown to do what it says.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::server::{discover, parse_version, skip_or_fail, Listen, SKIP_MESSAGE};
use crate::support::*;

async fn ping(con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    redis::cmd("PING").query_async(con).await
}

async fn timed_ping(con: &mut MultiplexedConnection) -> (redis::RedisResult<String>, Duration) {
    let t = Instant::now();
    let r = ping(con).await;
    (r, t.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Discovery, skip, CI (no server needed).

#[test]
fn discovery_follows_env_then_path_then_check_rdb() {
    let dir = tempfile::tempdir().unwrap();
    let bin = |name: &str| {
        let p = dir.path().join(name);
        std::os::unix::fs::symlink("/bin/true", &p).unwrap();
        p
    };
    let path = Some(dir.path().as_os_str());
    // Nothing anywhere.
    assert_eq!(discover(None, None, Flavor::Any), None);
    assert_eq!(discover(None, path, Flavor::Any), None);
    // check-rdb last, started as redis-server.
    let check = bin("redis-check-rdb");
    let found = discover(None, path, Flavor::Any).unwrap();
    assert_eq!(
        (found.path, found.arg0),
        (check.clone(), Some("redis-server"))
    );
    // A server on PATH wins over check-rdb; valkey-server over redis-server.
    let redis = bin("redis-server");
    assert_eq!(discover(None, path, Flavor::Any).unwrap().path, redis);
    let valkey = bin("valkey-server");
    let found = discover(None, path, Flavor::Any).unwrap();
    assert_eq!((found.path, found.arg0), (valkey.clone(), None));
    // The environment wins over PATH; a check-rdb there is started as redis-server too.
    let found = discover(Some(check.as_os_str()), path, Flavor::Any).unwrap();
    assert_eq!((found.path, found.arg0), (check, Some("redis-server")));
    let found = discover(Some(redis.as_os_str()), path, Flavor::Any).unwrap();
    assert_eq!((found.path, found.arg0), (redis, None));
    // Valkey only: never redis-server, never the environment's choice.
    assert_eq!(discover(None, path, Flavor::Valkey).unwrap().path, valkey);
    std::fs::remove_file(&valkey).unwrap();
    assert_eq!(discover(None, path, Flavor::Valkey), None);
    let vcheck = bin("valkey-check-rdb");
    let found = discover(None, path, Flavor::Valkey).unwrap();
    assert_eq!((found.path, found.arg0), (vcheck, Some("redis-server")));
    // A file that is not executable is not a server.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let f = plain.join("redis-server");
    std::fs::write(&f, "").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(discover(None, Some(plain.as_os_str()), Flavor::Any), None);
}

#[test]
fn versions_parse() {
    assert_eq!(
        parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
        Some(("redis".to_owned(), (7, 0, 15)))
    );
    assert_eq!(
        parse_version("Valkey server v=8.0.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
        Some(("valkey".to_owned(), (8, 0, 1)))
    );
    assert_eq!(parse_version("nonsense"), None);
}

#[test]
fn a_missing_server_skips_outside_ci() {
    assert_eq!(skip_or_fail(false), SKIP_MESSAGE);
    assert_eq!(
        SKIP_MESSAGE,
        "SKIPPED: no redis-server (apt-get install redis-server)"
    );
}

#[test]
#[should_panic(expected = "CI=true and SKIPPED: no redis-server (apt-get install redis-server)")]
fn a_missing_server_fails_under_ci() {
    skip_or_fail(true);
}

// ---------------------------------------------------------------------------------------------
// The server process.

#[test]
fn starts_on_a_unix_socket_with_the_flags_of_section_13() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Listen::Unix(sock) = server.listen().clone() else {
        panic!("unix socket by default");
    };
    assert!(
        server.url().starts_with("redis+unix:///"),
        "{}",
        server.url()
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "--unixsocketperm 700");
    let logs = LogCapture::new();
    run(&logs, async {
        let mut con = server.admin().await;
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(b"v\x00\xff".as_slice())
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(server.get_raw("k").await, Some(b"v\x00\xff".to_vec()));
        assert_eq!(server.config_get("port").await, "0");
        assert_eq!(server.config_get("save").await, "");
        assert_eq!(server.config_get("appendonly").await, "no");
        assert_eq!(server.config_get("maxmemory").await, "0");
        assert_eq!(
            std::path::PathBuf::from(server.config_get("dir").await)
                .canonicalize()
                .unwrap(),
            server.dir().canonicalize().unwrap()
        );
        if server.version().0 >= 7 {
            // --enable-debug-command local: DEBUG answers on a local connection.
            let ok: String = server.cmd(&["DEBUG", "SLEEP", "0"]).await;
            assert_eq!(ok, "OK");
        }
        let (name, version, proto) = server.hello3().await;
        println!(
            "\nSHARED harness server={} hello3_server={name} hello3_version={version} proto={proto}",
            server.version_string()
        );
        assert_eq!(proto, 3);
        assert_eq!(name, server.name());
    });
}

#[test]
fn starts_on_tcp_on_loopback() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let addr = server.tcp_addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}/", addr.port()));
    let logs = LogCapture::new();
    run(&logs, async {
        let mut con = server.admin().await;
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        assert_eq!(server.config_get("port").await, addr.port().to_string());
        assert_eq!(server.config_get("bind").await, "127.0.0.1");
        assert_eq!(server.config_get("unixsocket").await, "");
    });
}

#[test]
fn two_tcp_servers_get_two_ports() {
    let _slot = shared_slot();
    let (Some(a), Some(b)) = (RedisServer::start_tcp(), RedisServer::start_tcp()) else {
        return;
    };
    assert_ne!(a.tcp_addr(), b.tcp_addr());
}

fn kill9_then_restart(server: RedisServer) {
    let server = Arc::new(server);
    let logs = LogCapture::new();
    run(&logs, async {
        let mut con = server
            .conn_with_timeout(Duration::from_secs(1))
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut con)
            .await
            .unwrap();
        let pid = server.pid();
        server.kill9();
        assert!(!server.is_running());
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped"
        );
        // The open connection breaks; a new one is refused.
        let e = ping(&mut con).await.unwrap_err();
        assert!(
            e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(),
            "{e:?}"
        );
        let e = server
            .conn_with_timeout(Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(e.is_io_error() || e.is_connection_refusal(), "{e:?}");
        restart_async(&server).await;
        assert_eq!(server.starts(), 2);
        assert_ne!(server.pid(), pid);
        // Same address, empty.
        let mut con = server
            .conn_with_timeout(Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        assert_eq!(server.get_raw("k").await, None);
        assert_eq!(server.dbsize().await, 0);
    });
}

#[test]
fn kill9_then_restart_on_the_same_socket_comes_back_empty() {
    let _slot = shared_slot();
    if let Some(server) = RedisServer::start() {
        kill9_then_restart(server);
    }
}

#[test]
fn kill9_then_restart_on_the_same_port_comes_back_empty() {
    let _slot = shared_slot();
    if let Some(server) = RedisServer::start_tcp() {
        kill9_then_restart(server);
    }
}

#[test]
fn sigstop_makes_a_client_time_out_and_sigcont_resumes() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let server = Arc::new(server);
    let logs = LogCapture::new();
    run(&logs, async {
        let timeout = Duration::from_millis(200);
        let mut con = server.conn_with_timeout(timeout).await.unwrap();
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        sigstop_async(&server).await;
        assert_eq!(server.proc_state(), 'T');
        let (r, took) = timed_ping(&mut con).await;
        let e = r.unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(150),
            "a stopped server holds the client until its timeout: {took:?}"
        );
        // A new connection is accepted by the kernel, but nothing answers.
        let mut con2 = server.conn_with_timeout(timeout).await;
        if let Ok(c) = con2.as_mut() {
            assert!(ping(c).await.unwrap_err().is_timeout());
        }
        sigcont_async(&server).await;
        assert_ne!(server.proc_state(), 'T');
        let mut con = server.conn_with_timeout(timeout).await.unwrap();
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        println!("\nSHARED harness sigstop_client_timeout_ms={}", ms3(took));
    });
}

#[test]
fn helpers_require_password_and_remove_it() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let mut old = server
            .conn_with_timeout(Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(ping(&mut old).await.unwrap(), "PONG");
        let killed = server.require_password("s3cret").await;
        assert!(killed >= 1, "the open client is killed: {killed}");
        // The killed connection fails; a new one without the password gets NOAUTH.
        assert!(ping(&mut old).await.is_err());
        let client = redis::Client::open(server.url()).unwrap();
        let mut fresh = client.get_multiplexed_async_connection().await.unwrap();
        let e = ping(&mut fresh).await.unwrap_err();
        assert!(e.to_string().contains("NOAUTH"), "{e}");
        // The admin helpers authenticate.
        assert_eq!(server.cmd::<String>(&["PING"]).await, "PONG");
        server.remove_password().await;
        let mut fresh = client.get_multiplexed_async_connection().await.unwrap();
        assert_eq!(ping(&mut fresh).await.unwrap(), "PONG");
    });
}

#[test]
fn helpers_debug_sleep_stalls_everyone() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    if server.version().0 < 7 {
        return;
    }
    let logs = LogCapture::new();
    run(&logs, async {
        let mut con = server
            .conn_with_timeout(Duration::from_secs(3))
            .await
            .unwrap();
        let started = Instant::now();
        let sleeping = server.debug_sleep(Duration::from_millis(600)).await;
        let (r, took) = timed_ping(&mut con).await;
        r.unwrap();
        let total = started.elapsed();
        sleeping.await.unwrap();
        // The PING waited for the rest of the sleep.
        assert!(
            total >= Duration::from_millis(580) && took >= Duration::from_millis(100),
            "a PING during DEBUG SLEEP waits: ping {took:?}, since the sleep began {total:?}"
        );
        assert!(total < Duration::from_millis(1500), "{total:?}");
    });
}

#[test]
fn helpers_client_pause_write_stalls_writes_only() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        server.set_raw("k", b"v").await;
        let mut reads = server
            .conn_with_timeout(Duration::from_secs(3))
            .await
            .unwrap();
        let mut writes = server
            .conn_with_timeout(Duration::from_secs(3))
            .await
            .unwrap();
        server.client_pause(Duration::from_millis(400), true).await;
        let t = Instant::now();
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut reads)
            .await
            .unwrap();
        let read = t.elapsed();
        assert_eq!(v.as_deref(), Some(&b"v"[..]));
        let t = Instant::now();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("w")
            .query_async(&mut writes)
            .await
            .unwrap();
        let write = t.elapsed();
        assert!(
            read < Duration::from_millis(100),
            "read during PAUSE WRITE: {read:?}"
        );
        assert!(
            write >= Duration::from_millis(250),
            "write during PAUSE WRITE: {write:?}"
        );
        println!(
            "\nSHARED harness client_pause_write read_ms={} write_ms={}",
            ms3(read),
            ms3(write)
        );
    });
}

#[test]
fn helpers_fill_to_oom_refuses_writes_and_serves_reads() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start() else {
        return;
    };
    if server.version().0 < 7 {
        return;
    }
    let logs = LogCapture::new();
    run(&logs, async {
        server.set_raw("before", b"v").await;
        server.fill_to_oom().await;
        assert_eq!(server.get_raw("before").await, Some(b"v".to_vec()));
        let e = server
            .try_cmd::<String>(&["SET", "after", "v"])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("OOM"), "{e}");
        server.config_set("maxmemory", "0").await;
        server.set_raw("after", b"v").await;
    });
}

// ---------------------------------------------------------------------------------------------
// The fault proxy.

/// A TCP server, a proxy in front of it, and a client through the proxy.
async fn through_proxy(
    server: &RedisServer,
    timeout: Duration,
) -> (FaultProxy, MultiplexedConnection) {
    let proxy = FaultProxy::start(server.tcp_addr()).await;
    let client = redis::Client::open(proxy.url()).unwrap();
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let con = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .unwrap();
    (proxy, con)
}

async fn pings(con: &mut MultiplexedConnection, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let (r, took) = timed_ping(con).await;
        assert_eq!(r.unwrap(), "PONG");
        v.push(took);
    }
    v
}

#[test]
fn proxy_latency_adds_the_configured_delay() {
    let _slot = exclusive_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let (proxy, mut con) = through_proxy(&server, Duration::from_secs(2)).await;
        let base = percentile(&mut pings(&mut con, 30).await, 50.0);
        let mut figures = Vec::new();
        for added in [Duration::from_millis(10), Duration::from_millis(50)] {
            proxy.set_latency(added);
            let mut s = pings(&mut con, 15).await;
            let min = *s.iter().min().unwrap();
            let p50 = percentile(&mut s, 50.0);
            assert!(min >= added, "+{added:?}: a round trip took {min:?}");
            assert!(
                p50 <= added + base + Duration::from_millis(20),
                "+{added:?}: p50 {p50:?} (base {base:?})"
            );
            figures.push(format!("plus{}ms_p50_ms={}", added.as_millis(), ms3(p50)));
        }
        proxy.set_latency(Duration::ZERO);
        let after = percentile(&mut pings(&mut con, 15).await, 50.0);
        assert!(after < Duration::from_millis(10), "latency off: {after:?}");
        // Pipelined requests are delayed, not serialized: 10 at once take about one delay.
        proxy.set_latency(Duration::from_millis(50));
        let t = Instant::now();
        let mut all = Vec::new();
        for _ in 0..10 {
            let mut c = con.clone();
            all.push(tokio::spawn(async move { ping(&mut c).await }));
        }
        for p in all {
            assert_eq!(p.await.unwrap().unwrap(), "PONG");
        }
        let ten = t.elapsed();
        assert!(
            ten < Duration::from_millis(150),
            "10 concurrent round trips at +50 ms took {ten:?}"
        );
        println!(
            "\nSHARED harness proxy_latency base_p50_ms={} {} ten_concurrent_ms={}",
            ms3(base),
            figures.join(" "),
            ms3(ten)
        );
    });
}

#[test]
fn proxy_blackhole_times_out_and_heals() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let timeout = Duration::from_millis(200);
        let (proxy, mut con) = through_proxy(&server, timeout).await;
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        proxy.set_blackhole(true);
        let (r, took) = timed_ping(&mut con).await;
        assert!(r.unwrap_err().is_timeout());
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(150),
            "{took:?}"
        );
        // A new connection is accepted and then hangs, like a stopped server.
        let client = redis::Client::open(proxy.url()).unwrap();
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        if let Ok(mut c) = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            assert!(ping(&mut c).await.unwrap_err().is_timeout());
        }
        proxy.set_blackhole(false);
        // What was held flows again: the connection answers once the stale reply is read.
        let healed = poll_until_async(Duration::from_secs(2), Duration::from_millis(10), || {
            let mut c = con.clone();
            async move { ping(&mut c).await.is_ok() }
        })
        .await;
        assert!(
            healed.is_some(),
            "the connection never answered after the blackhole"
        );
        let mut fresh = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .unwrap();
        assert_eq!(ping(&mut fresh).await.unwrap(), "PONG");
    });
}

#[test]
fn proxy_reset_after_n_bytes_breaks_the_connection() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        let (proxy, mut con) = through_proxy(&server, Duration::from_secs(1)).await;
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        proxy.cut_after(Some(64), Cut::Reset);
        let big = vec![b'x'; 1000];
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg("k")
            .arg(&big)
            .query_async(&mut con)
            .await;
        let e = r.unwrap_err();
        assert!(
            e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(),
            "{e:?}"
        );
        assert_eq!(proxy.cut_count(), 1);

        // On the wire: an RST (ECONNRESET), not a FIN.
        let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        raw.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        proxy.cut_after(Some(10), Cut::Reset);
        raw.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(2), raw.read(&mut buf)).await {
                Ok(Ok(0)) => panic!("a FIN where an RST was expected (read {got:?})"),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => break e,
                Err(_) => panic!("the reset never came"),
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

        // A FIN with Cut::Close.
        proxy.cut_after(None, Cut::Reset);
        let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.cut_after(Some(10), Cut::Close);
        raw.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut got))
            .await
            .expect("EOF in time")
            .expect("a FIN, not a reset");
        let _ = n;

        // Cleared: new connections work.
        proxy.clear();
        let client = redis::Client::open(proxy.url()).unwrap();
        let mut fresh = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(&big)
            .query_async(&mut fresh)
            .await
            .unwrap();
        assert_eq!(ping(&mut fresh).await.unwrap(), "PONG");
        assert!(proxy.accepted() >= 4);
    });
}

#[test]
fn proxy_bandwidth_limit_slows_transfers() {
    let _slot = shared_slot();
    let Some(server) = RedisServer::start_tcp() else {
        return;
    };
    let logs = LogCapture::new();
    run(&logs, async {
        server.set_raw("big", &vec![7u8; 200_000]).await;
        let (proxy, mut con) = through_proxy(&server, Duration::from_secs(5)).await;
        let get = |mut c: MultiplexedConnection| async move {
            let t = Instant::now();
            let v: Vec<u8> = redis::cmd("GET")
                .arg("big")
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(v.len(), 200_000);
            t.elapsed()
        };
        let free = get(con.clone()).await;
        proxy.set_bandwidth(Some(1_000_000));
        let limited = get(con.clone()).await;
        proxy.set_bandwidth(None);
        assert_eq!(ping(&mut con).await.unwrap(), "PONG");
        assert!(
            limited >= Duration::from_millis(180) && limited < Duration::from_millis(1000),
            "200 kB at 1 MB/s took {limited:?} (unlimited {free:?})"
        );
        println!(
            "\nSHARED harness proxy_bandwidth unlimited_ms={} at_1MBps_ms={}",
            ms3(free),
            ms3(limited)
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Logs, rows, values, allocations.

#[test]
fn log_capture_counts_this_runtimes_events_only() {
    let logs = LogCapture::new();
    run(&logs, async {
        let mut tasks = Vec::new();
        for i in 0..3 {
            tasks.push(tokio::spawn(async move {
                tracing::warn!(target: "answercache::shared", n = i, "shared breaker opened");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tracing::info!(target: "answercache::shared", "info");
        tracing::debug!(target: "answercache::shared", "debug: not recorded");
        tokio::task::spawn_blocking(|| tracing::info!(target: "answercache::cache", "blocking"))
            .await
            .unwrap();
        // A thread of nobody's: not counted.
        std::thread::spawn(|| tracing::warn!(target: "answercache::shared", "elsewhere"))
            .join()
            .unwrap();
    });
    assert_eq!(logs.crate_events().len(), 5, "{:#?}", logs.events());
    assert_eq!(logs.shared_events().len(), 4);
    assert_eq!(logs.crate_warnings().len(), 3);
    let w = &logs.crate_warnings()[0];
    assert!(w.line().contains("shared breaker opened"), "{}", w.line());
    assert!(w.field("n").is_some());
}

#[test]
fn row_prints_every_figure() {
    let row = Row {
        test: "T4 kill-9".into(),
        answered: 10,
        total: 10,
        timeout_gets: 2,
        max_added_latency: Duration::from_millis(201),
        fault_to_open: Some(Duration::from_millis(3)),
        recovery_to_closed: None,
        writes_dropped: 4,
        log_lines: 3,
        transitions: 3,
        ..Row::default()
    };
    assert_eq!(
        row.to_string(),
        "SHARED T4_kill-9 answered=10/10 caller_errors=0 wrong_answers=0 timeout_gets=2 \
         max_get_ms=201.0 fault_to_open_ms=3.0 recovery_to_closed_ms=- writes_dropped=4 \
         log_lines=3 transitions=3"
    );
    row.check_standard();
}

#[test]
#[should_panic(expected = "more log lines than transitions + 1")]
fn row_refuses_a_log_line_per_request() {
    Row {
        answered: 5,
        total: 5,
        log_lines: 5,
        transitions: 2,
        ..Row::default()
    }
    .check_standard();
}

#[test]
fn tally_and_percentiles() {
    let t = Tally::default();
    let th = Duration::from_millis(200);
    t.record(Outcome::Hit, Duration::from_millis(1), th);
    t.record(Outcome::Miss, Duration::from_millis(250), th);
    t.record(Outcome::Wrong, Duration::from_millis(2), th);
    t.record(Outcome::Error, Duration::from_millis(3), th);
    let row = t.row("x");
    assert_eq!(
        (
            row.answered,
            row.total,
            row.caller_errors,
            row.wrong_answers,
            row.timeout_gets
        ),
        (3, 4, 1, 1, 1)
    );
    assert_eq!(row.max_added_latency, Duration::from_millis(250));
    let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&mut s, 50.0), Duration::from_millis(50));
    assert_eq!(percentile(&mut s, 99.0), Duration::from_millis(99));
    assert_eq!(percentile(&mut s, 100.0), Duration::from_millis(100));
}

#[test]
fn values_name_their_key() {
    let v = value("k1", 7, 300);
    assert_eq!(v.len(), 300);
    assert_eq!(check_value("k1", &v), Ok(7));
    assert!(check_value("k2", &v).is_err());
    let mut torn = v.clone();
    torn[299] ^= 1;
    assert!(check_value("k1", &torn).is_err());
    assert!(check_value("k1", &v[..150]).is_err());
}

#[test]
fn peak_allocation_sees_this_threads_allocations() {
    let (v, peak) = alloc::peak_allocation(|| vec![1u8; 5 << 20]);
    assert!(peak >= 5 << 20, "{peak}");
    drop(v);
    let (_, peak) = alloc::peak_allocation(|| std::hint::black_box(vec![1u8; 100]).len());
    assert!(peak < 4096, "{peak}");
    // Another thread's allocations are not this thread's.
    let (_, peak) = alloc::peak_allocation(|| {
        std::thread::spawn(|| std::hint::black_box(vec![1u8; 8 << 20]).len())
            .join()
            .unwrap()
    });
    assert!(peak < 1 << 20, "{peak}");
}
