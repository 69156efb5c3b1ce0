//! The Redis of the replicas phase: the server `--redis URL` names, or a throwaway
//! `redis-server` (or `valkey-server`) found on `PATH`, started on a unix socket in a
//! temporary directory with no persistence, killed with `SIGKILL` mid-run, restarted empty on
//! the same socket, and killed at the end (also when the demo fails: [`Drop`]).
//!
//! Readiness is a raw `PING` over the socket (`*1\r\n$4\r\nPING\r\n` → `+PONG\r\n`): no
//! client library is needed to tell that the server answers.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BoxError;

/// The server binaries looked for on `PATH`, in order.
pub const SERVER_NAMES: [&str; 2] = ["redis-server", "valkey-server"];

/// How long a started server has to answer `PING`.
const READY_LIMIT: Duration = Duration::from_secs(5);

/// The first server binary of [`SERVER_NAMES`] on `PATH`.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    SERVER_NAMES
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running throwaway server on a unix socket.
pub struct Throwaway {
    bin: PathBuf,
    /// `redis 7.0.15` (from `--version`).
    version: String,
    socket: PathBuf,
    child: Option<Child>,
    /// The socket, the log and the working directory; removed on drop.
    dir: tempfile::TempDir,
}

impl Throwaway {
    /// Starts `bin` and waits for its `PONG`.
    pub fn start(bin: &Path) -> Result<Throwaway, BoxError> {
        let version = version(bin)?;
        let dir = tempfile::Builder::new()
            .prefix("answercache-demo-redis-")
            .tempdir()
            .map_err(|e| format!("cannot create a directory for the Redis server: {e}"))?;
        let mut server = Throwaway {
            bin: bin.to_path_buf(),
            version,
            socket: dir.path().join("redis.sock"),
            child: None,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis 7.0.15`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The binary that runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The URL the replicas connect with: `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), BoxError> {
        let _ = std::fs::remove_file(&self.socket);
        let d = self.dir.path();
        let child = Command::new(&self.bin)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&self.socket)
            .args(["--unixsocketperm", "700"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // A cache server, as the README advises: bounded, evicting.
            .args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"])
            .arg("--dir")
            .arg(d)
            .arg("--logfile")
            .arg(d.join("log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if ping(&self.socket) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "{} exited with {status} before answering PING; its log:\n{}",
                    self.bin.display(),
                    self.log_tail()
                )
                .into());
            }
            if start.elapsed() > READY_LIMIT {
                self.kill9();
                return Err(format!(
                    "{} did not answer PING within {READY_LIMIT:?}; its log:\n{}",
                    self.bin.display(),
                    self.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` and reap: what the server held is gone (no persistence).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same socket, and waits for its `PONG`.
    pub fn restart(&mut self) -> Result<(), BoxError> {
        self.kill9();
        self.spawn()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `redis-server --version` (`Redis server v=7.0.15 sha=…`) as `redis 7.0.15`.
fn version(bin: &Path) -> Result<String, BoxError> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text
        .split_whitespace()
        .next()
        .unwrap_or("server")
        .to_ascii_lowercase();
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("(unknown version)");
    Ok(format!("{name} {v}"))
}

/// Whether the server on `socket` answers `PING` with `PONG` within 200 ms.
fn ping(socket: &Path) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = UnixStream::connect(socket)?;
        let limit = Some(Duration::from_millis(200));
        s.set_read_timeout(limit)?;
        s.set_write_timeout(limit)?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    attempt().unwrap_or(false)
}

/// `url` without a password: `redis://user:secret@host/0` → `redis://user:***@host/0`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    // `?pass=` / `?password=` in a unix-socket URL.
    let tail = match tail.split_once('?') {
        Some((path, query)) if query.contains("pass") => format!("{path}?***"),
        _ => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://user:s3cret@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(redact("redis://:s3cret@cache"), "redis://:***@cache");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?pass=s3cret"),
            "redis+unix:///tmp/r.sock?***"
        );
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
