//! A throwaway Redis or Valkey server per test (SHARED_TIER.md §13): found on this machine,
//! started in a temporary directory on a unix socket (or a loopback TCP port), with no
//! persistence, killed and reaped on drop. The faults of §13's table are methods: `kill -9`,
//! `SIGSTOP`/`SIGCONT`, restart on the same socket or port, `CONFIG SET`, `requirepass` plus
//! `CLIENT KILL`, `DEBUG SLEEP`, `CLIENT PAUSE`, `DEBUG POPULATE`.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, Value};

use super::in_ci;

/// Where an explicit server binary is named.
pub const SERVER_ENV: &str = "ANSWERCACHE_REDIS_SERVER";

/// What a test prints, and passes, when no server can be found (outside CI).
pub const SKIP_MESSAGE: &str = "SKIPPED: no redis-server (apt-get install redis-server)";

/// How long a started server has to answer `PING`.
pub const READY_LIMIT: Duration = Duration::from_secs(5);

/// Which servers discovery may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// `ANSWERCACHE_REDIS_SERVER`, then `valkey-server`, `redis-server`, then `redis-check-rdb`
    /// and `valkey-check-rdb` started as `redis-server`.
    #[default]
    Any,
    /// `valkey-server`, then `valkey-check-rdb` started as `redis-server` (T15).
    Valkey,
}

/// A server binary and how to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBin {
    /// The file to execute.
    pub path: PathBuf,
    /// `argv[0]` when it is not the file's own name: a `*-check-rdb` binary runs a server when
    /// started as `redis-server`.
    pub arg0: Option<&'static str>,
}

impl ServerBin {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        if let Some(arg0) = self.arg0 {
            cmd.arg0(arg0);
        }
        cmd
    }

    /// `redis-server --version`: `(name, (major, minor, patch))`, name `redis` or `valkey`.
    pub fn version(&self) -> (String, (u32, u32, u32)) {
        let out = self
            .command()
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{} --version: {e}", self.path.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_version(&text)
            .unwrap_or_else(|| panic!("{} --version said {text:?}", self.path.display()))
    }
}

/// Parses `Redis server v=7.0.15 sha=...` / `Valkey server v=8.0.1 ...`.
pub fn parse_version(text: &str) -> Option<(String, (u32, u32, u32))> {
    let name = text.split_whitespace().next()?.to_ascii_lowercase();
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((name, (major, minor, patch)))
}

/// Discovery, with its inputs explicit (the value of [`SERVER_ENV`] and of `PATH`) so that
/// it can be tested without touching this process's environment.
pub fn discover(env: Option<&OsStr>, path: Option<&OsStr>, flavor: Flavor) -> Option<ServerBin> {
    if flavor == Flavor::Any {
        if let Some(p) = env.filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{SERVER_ENV}={} is not a file", p.display());
            let arg0 = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("check-rdb"))
                .then_some("redis-server");
            return Some(ServerBin { path: p, arg0 });
        }
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
    let (servers, checkers): (&[&str], &[&str]) = match flavor {
        Flavor::Any => (
            &["valkey-server", "redis-server"],
            &["redis-check-rdb", "valkey-check-rdb"],
        ),
        Flavor::Valkey => (&["valkey-server"], &["valkey-check-rdb"]),
    };
    for name in servers {
        if let Some(path) = find(name) {
            return Some(ServerBin { path, arg0: None });
        }
    }
    for name in checkers {
        if let Some(path) = find(name) {
            return Some(ServerBin {
                path,
                arg0: Some("redis-server"),
            });
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Discovery from this process's environment.
pub fn find_server(flavor: Flavor) -> Option<ServerBin> {
    let env = std::env::var_os(SERVER_ENV);
    let path = std::env::var_os("PATH");
    discover(env.as_deref(), path.as_deref(), flavor)
}

/// What a missing server means: under CI a failure (the shared tests must run there), else a
/// skip. Returns the message printed.
pub fn skip_or_fail(ci: bool) -> &'static str {
    assert!(!ci, "CI=true and {SKIP_MESSAGE}");
    println!("{SKIP_MESSAGE}");
    SKIP_MESSAGE
}

/// How the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket (`--port 0 --unixsocket`), the default: no port race.
    Unix(PathBuf),
    /// A loopback TCP port (for the fault proxy).
    Tcp(u16),
}

/// Start options.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Listen on a loopback TCP port instead of a unix socket.
    pub tcp: bool,
    /// Which servers may be picked.
    pub flavor: Flavor,
    /// More `--name value` arguments.
    pub extra_args: Vec<String>,
}

struct Proc {
    child: Option<Child>,
    password: Option<String>,
    starts: u32,
}

/// A running throwaway server.
pub struct RedisServer {
    bin: ServerBin,
    name: String,
    version: (u32, u32, u32),
    listen: Listen,
    extra_args: Vec<String>,
    proc: Mutex<Proc>,
    // Dropped last: the socket, the log and the working directory live here.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("bin", &self.bin)
            .field("version", &self.version_string())
            .field("listen", &self.listen)
            .finish()
    }
}

impl RedisServer {
    /// A server on a unix socket, or `None` when no server binary exists (printed as
    /// [`SKIP_MESSAGE`]; under `CI=true` a panic instead).
    pub fn start() -> Option<RedisServer> {
        Self::start_with(ServerOptions::default())
    }

    /// A server on a loopback TCP port (see [`start`](Self::start)).
    pub fn start_tcp() -> Option<RedisServer> {
        Self::start_with(ServerOptions {
            tcp: true,
            ..ServerOptions::default()
        })
    }

    /// A server started as `opts` says. With [`Flavor::Valkey`] a missing Valkey is a plain
    /// `None`, never a CI failure (CI installs Redis only).
    pub fn start_with(opts: ServerOptions) -> Option<RedisServer> {
        let Some(bin) = find_server(opts.flavor) else {
            if opts.flavor == Flavor::Any {
                skip_or_fail(in_ci());
            }
            return None;
        };
        Some(Self::start_bin(bin, opts))
    }

    /// Starts `bin` (panics if it does not come up).
    pub fn start_bin(bin: ServerBin, opts: ServerOptions) -> RedisServer {
        let (name, version) = bin.version();
        let mut errors = Vec::new();
        // A TCP port is picked by binding port 0 and closing: another process may take it
        // before the server binds it, so a failed start is retried on a new port.
        let attempts = if opts.tcp { 5 } else { 1 };
        for _ in 0..attempts {
            let dir = tempfile::Builder::new()
                .prefix("answercache-redis.")
                .tempdir()
                .expect("temp dir for the server");
            let listen = if opts.tcp {
                Listen::Tcp(free_port())
            } else {
                Listen::Unix(dir.path().join("r.sock"))
            };
            let server = RedisServer {
                bin: bin.clone(),
                name: name.clone(),
                version,
                listen,
                extra_args: opts.extra_args.clone(),
                proc: Mutex::new(Proc {
                    child: None,
                    password: None,
                    starts: 0,
                }),
                dir,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!("the redis server did not start: {errors:#?}");
    }

    fn args(&self) -> Vec<OsString> {
        let d = self.dir.path();
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        match &self.listen {
            Listen::Unix(sock) => {
                push("--port");
                push("0");
                push("--unixsocket");
                a.push(sock.as_os_str().to_owned());
                a.push("--unixsocketperm".into());
                a.push("700".into());
            }
            Listen::Tcp(port) => {
                push("--port");
                push(&port.to_string());
                push("--bind");
                push("127.0.0.1");
            }
        }
        for s in [
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
        ] {
            a.push(s.into());
        }
        a.push(d.as_os_str().to_owned());
        a.push("--logfile".into());
        a.push(d.join("log").into_os_string());
        if self.version.0 >= 7 {
            a.push("--enable-debug-command".into());
            a.push("local".into());
        }
        for s in &self.extra_args {
            a.push(s.into());
        }
        a
    }

    /// Spawns the process and polls `PING` until it answers ([`READY_LIMIT`]).
    fn spawn_and_wait(&self) -> Result<(), String> {
        let child = self
            .bin
            .command()
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.path.display()))?;
        {
            let mut p = self.proc.lock().expect("proc lock");
            p.child = Some(child);
            p.password = None;
            p.starts += 1;
        }
        let start = Instant::now();
        loop {
            if self.ping_sync(Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = {
                let mut p = self.proc.lock().expect("proc lock");
                let child = p.child.as_mut().expect("a child");
                child.try_wait().ok().flatten()
            };
            if let Some(status) = exited {
                self.proc.lock().expect("proc lock").child = None;
                return Err(format!(
                    "{} exited with {status} on {:?}; log:\n{}",
                    self.bin.path.display(),
                    self.listen,
                    self.log_tail()
                ));
            }
            if start.elapsed() > READY_LIMIT {
                self.kill9();
                return Err(format!(
                    "no PONG within {READY_LIMIT:?} on {:?}; log:\n{}",
                    self.listen,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping_sync(&self, timeout: Duration) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url_with_password())?;
        let mut con = client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        let pong: String = redis::cmd("PING").query(&mut con)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "PING did not say PONG",
            )))
        }
    }

    /// The last 40 lines of the server's log file.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `redis` or `valkey` (from `--version`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor, patch)` from `--version`.
    pub fn version(&self) -> (u32, u32, u32) {
        self.version
    }

    /// `redis 7.0.15`.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{} {a}.{b}.{c}", self.name)
    }

    /// The binary that was started.
    pub fn bin(&self) -> &ServerBin {
        &self.bin
    }

    /// How it listens.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// The server's working directory (its log is `log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP address (TCP servers only).
    pub fn tcp_addr(&self) -> std::net::SocketAddr {
        match self.listen {
            Listen::Tcp(port) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Listen::Unix(_) => panic!("a unix-socket server has no TCP address"),
        }
    }

    /// The URL a client (or `SharedConfig::redis`) connects with: `redis+unix:///…/r.sock` or
    /// `redis://127.0.0.1:PORT/`. No password in it, even after [`require_password`].
    ///
    /// [`require_password`]: Self::require_password
    pub fn url(&self) -> String {
        match &self.listen {
            Listen::Unix(p) => format!("redis+unix://{}", p.display()),
            Listen::Tcp(port) => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// [`url`](Self::url) with the password set by [`require_password`](Self::require_password).
    pub fn url_with_password(&self) -> String {
        let pw = self.proc.lock().expect("proc lock").password.clone();
        match (pw, &self.listen) {
            (None, _) => self.url(),
            (Some(pw), Listen::Unix(p)) => format!("redis+unix://{}?pass={pw}", p.display()),
            (Some(pw), Listen::Tcp(port)) => format!("redis://:{pw}@127.0.0.1:{port}/"),
        }
    }

    /// The server's process id (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.proc
            .lock()
            .expect("proc lock")
            .child
            .as_ref()
            .expect("the server is running")
            .id()
    }

    /// How many times a server process was started (1 + restarts).
    pub fn starts(&self) -> u32 {
        self.proc.lock().expect("proc lock").starts
    }

    /// Whether the process is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.proc.lock().expect("proc lock").child.is_some()
    }

    /// `kill -9` and reap: clients see a broken pipe, then connection refused. Data is gone
    /// (no persistence).
    pub fn kill9(&self) {
        let child = self.proc.lock().expect("proc lock").child.take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same socket or port, empty, and waits for `PONG`.
    /// Kills a running one first. Blocking (up to [`READY_LIMIT`]): from async code, call it
    /// through `spawn_blocking` or [`restart_async`](super::restart_async).
    pub fn restart(&self) {
        self.kill9();
        if let Listen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
        let mut errors = Vec::new();
        // The same TCP port may be refused for a moment; a few tries.
        for _ in 0..5 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
        }
        panic!("restart failed on {:?}: {errors:#?}", self.listen);
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a valid pid");
        rustix::process::kill_process(pid, sig).expect("signal the server");
    }

    /// The `State:` letter of `/proc/<pid>/stat` (`T` when stopped).
    pub fn proc_state(&self) -> char {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .unwrap_or('?')
    }

    /// `SIGSTOP`: the server hangs (clients block until their timeout). Returns once the
    /// kernel reports the process stopped.
    pub fn sigstop(&self) {
        self.signal(rustix::process::Signal::STOP);
        let start = Instant::now();
        while self.proc_state() != 'T' {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the server did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `SIGCONT`: the server resumes. Returns once the kernel reports it running.
    pub fn sigcont(&self) {
        self.signal(rustix::process::Signal::CONT);
        let start = Instant::now();
        while self.proc_state() == 'T' {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the server did not continue"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A client for the server (with the password, if one is required).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url_with_password()).expect("a valid URL")
    }

    /// A fresh multiplexed connection, with a response timeout.
    pub async fn conn_with_timeout(
        &self,
        timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        self.client()
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// A fresh admin connection (2 s timeouts; panics on failure).
    pub async fn admin(&self) -> MultiplexedConnection {
        self.conn_with_timeout(Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("admin connection to {:?}: {e}", self.listen))
    }

    /// Any command on a fresh admin connection: `server.cmd::<String>(&["PING"])`.
    pub async fn cmd<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_cmd(args)
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// [`cmd`](Self::cmd) returning the error.
    pub async fn try_cmd<T: FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut con = self.admin().await;
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query_async(&mut con).await
    }

    /// `CONFIG SET name value`.
    pub async fn config_set(&self, name: &str, value: &str) {
        let ok: String = self.cmd(&["CONFIG", "SET", name, value]).await;
        assert_eq!(ok, "OK", "CONFIG SET {name} {value}");
    }

    /// `CONFIG GET name`.
    pub async fn config_get(&self, name: &str) -> String {
        let pairs: Vec<String> = self.cmd(&["CONFIG", "GET", name]).await;
        pairs.get(1).cloned().unwrap_or_default()
    }

    /// `CONFIG SET requirepass pw`, then `CLIENT KILL TYPE normal` (existing connections stay
    /// authenticated until killed): every client then gets `NOAUTH` after reconnecting. The
    /// admin helpers authenticate from now on. Returns how many clients were killed.
    pub async fn require_password(&self, pw: &str) -> u64 {
        self.config_set("requirepass", pw).await;
        self.proc.lock().expect("proc lock").password = Some(pw.to_owned());
        self.cmd(&["CLIENT", "KILL", "TYPE", "normal"]).await
    }

    /// `CONFIG SET requirepass ""`: clients are accepted without a password again.
    pub async fn remove_password(&self) {
        self.config_set("requirepass", "").await;
        self.proc.lock().expect("proc lock").password = None;
    }

    /// `CLIENT KILL TYPE normal` (the admin connection survives: `SKIPME yes`). Returns how
    /// many were killed.
    pub async fn kill_clients(&self) -> u64 {
        self.cmd(&["CLIENT", "KILL", "TYPE", "normal"]).await
    }

    /// `DEBUG SLEEP <d>` from a connection of its own, in the background: every client stalls
    /// for `d`. Returns once the server is seen stalled (a `PING` on another connection
    /// went unanswered for 50 ms), with the task that ends when the sleep does.
    pub async fn debug_sleep(&self, d: Duration) -> tokio::task::JoinHandle<()> {
        let mut con = self
            .conn_with_timeout(d + Duration::from_secs(5))
            .await
            .expect("connection for DEBUG SLEEP");
        // Connected before the sleep: a connection made during it would wait for its end.
        let probe = self.admin().await;
        let secs = format!("{:.3}", d.as_secs_f64());
        let task = tokio::spawn(async move {
            let r: redis::RedisResult<String> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(secs)
                .query_async(&mut con)
                .await;
            r.expect("DEBUG SLEEP");
        });
        Self::wait_stalled(probe).await;
        task
    }

    /// Polls `con` with `PING`s (50 ms timeout each, 2 s at most) until one goes unanswered.
    pub async fn wait_stalled(mut con: MultiplexedConnection) {
        let start = Instant::now();
        loop {
            let ping = tokio::time::timeout(
                Duration::from_millis(50),
                redis::cmd("PING").query_async::<String>(&mut con),
            )
            .await;
            if ping.is_err() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the server never stalled"
            );
        }
    }

    /// `CLIENT PAUSE <d> WRITE` (reads served, writes stall) or `ALL`.
    pub async fn client_pause(&self, d: Duration, writes_only: bool) {
        let ms = d.as_millis().to_string();
        let mode = if writes_only { "WRITE" } else { "ALL" };
        let ok: String = self.cmd(&["CLIENT", "PAUSE", &ms, mode]).await;
        assert_eq!(ok, "OK");
    }

    /// `CLIENT UNPAUSE`.
    pub async fn client_unpause(&self) {
        let ok: String = self.cmd(&["CLIENT", "UNPAUSE"]).await;
        assert_eq!(ok, "OK");
    }

    /// `DEBUG POPULATE count prefix size`.
    pub async fn debug_populate(&self, count: u64, prefix: &str, size: u64) {
        let ok: String = self
            .cmd(&[
                "DEBUG",
                "POPULATE",
                &count.to_string(),
                prefix,
                &size.to_string(),
            ])
            .await;
        assert_eq!(ok, "OK");
    }

    /// `maxmemory 1mb`, `noeviction`, then `DEBUG POPULATE` until writes fail with OOM.
    pub async fn fill_to_oom(&self) {
        self.config_set("maxmemory-policy", "noeviction").await;
        self.config_set("maxmemory", "1mb").await;
        self.debug_populate(20_000, "filler", 100).await;
        let r: redis::RedisResult<String> = self.try_cmd(&["SET", "oom-probe", "x"]).await;
        let err = r.expect_err("a write must fail once memory is full");
        assert!(err.to_string().contains("OOM"), "{err}");
    }

    /// `HELLO 3`: the server's `(server, version, proto)` fields.
    pub async fn hello3(&self) -> (String, String, i64) {
        let v: Value = self.cmd(&["HELLO", "3"]).await;
        let mut server = String::new();
        let mut version = String::new();
        let mut proto = 0;
        let pairs: Vec<(Value, Value)> = match v {
            Value::Map(m) => m,
            Value::Array(a) => a
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect(),
            other => panic!("HELLO 3 answered {other:?}"),
        };
        for (k, v) in pairs {
            let k = String::from_redis_value(k).unwrap_or_default();
            match k.as_str() {
                "server" => server = String::from_redis_value(v).unwrap_or_default(),
                "version" => version = String::from_redis_value(v).unwrap_or_default(),
                "proto" => proto = i64::from_redis_value(v).unwrap_or_default(),
                _ => {}
            }
        }
        (server, version, proto)
    }

    /// `GET key` as raw bytes.
    pub async fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.cmd(&["GET", key]).await
    }

    /// `SET key bytes` (no TTL).
    pub async fn set_raw(&self, key: &str, value: &[u8]) {
        let mut con = self.admin().await;
        let ok: String = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut con)
            .await
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
        assert_eq!(ok, "OK");
    }

    /// `EXISTS key`.
    pub async fn exists(&self, key: &str) -> bool {
        let n: u64 = self.cmd(&["EXISTS", key]).await;
        n == 1
    }

    /// `DEL key`: whether it existed.
    pub async fn del(&self, key: &str) -> bool {
        let n: u64 = self.cmd(&["DEL", key]).await;
        n == 1
    }

    /// `PTTL key` (-2: no key, -1: no TTL).
    pub async fn pttl(&self, key: &str) -> i64 {
        self.cmd(&["PTTL", key]).await
    }

    /// `KEYS pattern`, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut k: Vec<String> = self.cmd(&["KEYS", pattern]).await;
        k.sort();
        k
    }

    /// `DBSIZE`.
    pub async fn dbsize(&self) -> u64 {
        self.cmd(&["DBSIZE"]).await
    }

    /// `FLUSHALL`.
    pub async fn flushall(&self) {
        let ok: String = self.cmd(&["FLUSHALL"]).await;
        assert_eq!(ok, "OK");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too.
        self.kill9();
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}
