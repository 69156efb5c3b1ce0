//! T15, the scenarios again against Valkey, when a `valkey-server` (or `valkey-check-rdb`) is
//! installed (bookworm-backports 8.0.1, trixie 8.1.1): same results, and the server's name and
//! version from `HELLO 3` recorded. Without Valkey it prints why and passes, also under CI
//! (CI installs Redis only).

use crate::support::server::{find_server, Flavor};
use crate::support::*;

#[test]
fn t15_the_scenarios_against_valkey() {
    let _slot = shared_slot();
    if find_server(Flavor::Valkey).is_none() {
        println!("SKIPPED T15: no valkey-server (apt-get install valkey-server)");
        return;
    }
    let opts = || ServerOptions {
        flavor: Flavor::Valkey,
        ..ServerOptions::default()
    };
    let server = RedisServer::start_with(opts()).expect("valkey");
    let logs = LogCapture::new();
    let (name, version, proto) = run(&logs, server.hello3());
    println!("\nSHARED T15 server={name} version={version} proto={proto}");
    assert_eq!(name, "valkey");
    drop(server);
    crate::t01_sharing::scenario(opts());
    crate::t02_agent::scenario(opts());
    crate::t04_kill::scenario(opts());
    crate::t05_sigstop::scenario(opts());
    crate::t06_slow::debug_sleep(opts());
    crate::t06_slow::pause_reads_only(opts());
    crate::t06_slow::pause_reads_and_writes(opts());
    crate::t07_oom::scenario(opts());
    crate::t08_auth::scenario(opts());
    crate::t09_hostile::scenario(opts());
    crate::t10_proxy::scenario(opts());
    crate::t11_namespaces::scenario(opts());
    crate::t14_startup::scenario(opts());
}
