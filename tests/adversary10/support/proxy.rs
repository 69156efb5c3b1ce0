//! An in-process TCP fault proxy, toxiproxy-style (SHARED_TIER.md §13: this kernel has no
//! `netem`): it listens on a loopback port and forwards each connection to the server, with
//! faults switched at run time that apply to new and existing connections alike:
//!
//! - **latency**: every chunk from the server to the client is delivered `latency` after it
//!   arrived, so each round trip gains `latency` (a delay, not a throughput limit: chunks in
//!   flight overlap);
//! - **blackhole**: nothing is forwarded in either direction, and nothing is read (TCP keeps
//!   the bytes, as a partitioned network would); when lifted, what was held flows again, in
//!   order, as after a partition heals;
//! - **reset / close after N bytes**: a connection that has forwarded N bytes (both
//!   directions, counted from when the rule was set or the connection was made) is cut, with
//!   an RST (`SO_LINGER` 0) or a FIN, on both sides;
//! - **bandwidth**: at most this many bytes per second in each direction.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How a connection is cut after N bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `SO_LINGER` 0 and close: an RST (the peer sees "connection reset").
    Reset,
    /// A plain close: a FIN (the peer sees EOF).
    Close,
}

/// The faults in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Added to each server-to-client chunk (so to each round trip).
    pub latency: Duration,
    /// Forward nothing, read nothing.
    pub blackhole: bool,
    /// Cut each connection after this many bytes.
    pub cut_after: Option<(u64, Cut)>,
    /// Bytes per second in each direction.
    pub bandwidth: Option<u64>,
    /// Bumped whenever `cut_after` is set, so that connections count from then.
    epoch: u64,
}

/// The running proxy. Dropping it stops it and cuts every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<AtomicU64>,
    cut: Arc<AtomicU64>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.faults.borrow())
            .finish()
    }
}

const CHUNK: usize = 16 * 1024;

impl FaultProxy {
    /// A proxy on `127.0.0.1:0` in front of `upstream`, with no fault. Must be called within
    /// a tokio runtime (its tasks run there).
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (faults, _) = watch::channel(Faults::default());
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicU64::new(0));
        let accept_task = {
            let faults = faults.clone();
            let tasks = tasks.clone();
            let accepted = accepted.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let rx = faults.subscribe();
                    let cut = cut.clone();
                    let t = tokio::spawn(connection(client, upstream, rx, cut));
                    let mut tasks = tasks.lock().expect("tasks");
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(t);
                }
            })
        };
        FaultProxy {
            addr,
            upstream,
            faults,
            tasks,
            accepted,
            cut,
            accept_task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT/` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections cut by [`cut_after`](Self::cut_after) so far.
    pub fn cut_count(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
    }

    /// Each round trip gains `d` (zero: none).
    pub fn set_latency(&self, d: Duration) {
        self.faults.send_modify(|f| f.latency = d);
    }

    /// Blackhole on or off.
    pub fn set_blackhole(&self, on: bool) {
        self.faults.send_modify(|f| f.blackhole = on);
    }

    /// Cut every connection once it has forwarded `n` more bytes (`None`: never).
    pub fn cut_after(&self, n: Option<u64>, how: Cut) {
        self.faults.send_modify(|f| {
            f.cut_after = n.map(|n| (n, how));
            f.epoch += 1;
        });
    }

    /// At most `bytes_per_sec` in each direction (`None`: unlimited).
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.faults.send_modify(|f| f.bandwidth = bytes_per_sec);
    }

    /// No fault at all.
    pub fn clear(&self) {
        self.faults.send_modify(|f| {
            let epoch = f.epoch + 1;
            *f = Faults {
                epoch,
                ..Faults::default()
            };
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }
}

/// One direction's chunks, each stamped with its arrival, and when the bandwidth limit lets
/// the next one go.
#[derive(Default)]
struct Lane {
    queue: VecDeque<(Instant, Vec<u8>)>,
    free_at: Option<Instant>,
    /// The source sent EOF.
    eof: bool,
    /// EOF passed on to the destination.
    shut: bool,
}

impl Lane {
    /// When the head chunk is due (`None`: nothing to send, or blackholed).
    fn due(&self, f: &Faults, latency: Duration) -> Option<Instant> {
        if f.blackhole {
            return None;
        }
        let (at, _) = self.queue.front()?;
        let due = *at + latency;
        Some(self.free_at.map_or(due, |free| due.max(free)))
    }
}

enum Event {
    ClientReadable,
    ServerReadable,
    UpDue,
    DownDue,
    Changed,
}

/// Bytes per read: about 10 reads a second at a bandwidth limit.
fn read_limit(f: &Faults) -> usize {
    match f.bandwidth.filter(|r| *r > 0) {
        Some(rate) => ((rate / 10).max(1) as usize).min(CHUNK),
        None => CHUNK,
    }
}

/// Reads what `from` has into `lane`.
fn read_into(from: &TcpStream, buf: &mut [u8], lane: &mut Lane) -> Result<(), ()> {
    match from.try_read(buf) {
        Ok(0) => {
            lane.eof = true;
            Ok(())
        }
        Ok(n) => {
            lane.queue.push_back((Instant::now(), buf[..n].to_vec()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(_) => Err(()),
    }
}

/// One connection, both directions in one task that owns both sockets: a cut can then close
/// them exactly as told (a FIN, or `SO_LINGER` 0 and an RST), which split halves cannot (a
/// dropped write half sends a FIN first).
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    cut_count: Arc<AtomicU64>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // The server is down: the client sees its connection closed.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut epoch = faults.borrow().epoch;
    // Bytes forwarded (both directions) since the cut rule was set.
    let mut counted: u64 = 0;
    let (mut up, mut down) = (Lane::default(), Lane::default());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let f = *faults.borrow();
        if f.epoch != epoch {
            epoch = f.epoch;
            counted = 0;
        }
        // EOF travels once everything before it has.
        if up.eof && up.queue.is_empty() && !up.shut {
            let _ = server.shutdown().await;
            up.shut = true;
        }
        if down.eof && down.queue.is_empty() && !down.shut {
            let _ = client.shutdown().await;
            down.shut = true;
        }
        if up.shut && down.shut {
            return;
        }
        // Nothing is read while blackholed (the peers' bytes wait in TCP buffers), and at
        // most 64 chunks wait per direction.
        let read_client = !f.blackhole && !up.eof && up.queue.len() < 64;
        let read_server = !f.blackhole && !down.eof && down.queue.len() < 64;
        let up_due = up.due(&f, Duration::ZERO);
        let down_due = down.due(&f, f.latency);
        let far = Instant::now() + Duration::from_secs(3600);
        let event = tokio::select! {
            r = client.readable(), if read_client => {
                if r.is_err() { return; }
                Event::ClientReadable
            }
            r = server.readable(), if read_server => {
                if r.is_err() { return; }
                Event::ServerReadable
            }
            () = tokio::time::sleep_until(up_due.unwrap_or(far)), if up_due.is_some() => Event::UpDue,
            () = tokio::time::sleep_until(down_due.unwrap_or(far)), if down_due.is_some() => Event::DownDue,
            r = faults.changed() => {
                if r.is_err() { return; }
                Event::Changed
            }
        };
        let limit = read_limit(&f);
        let (lane, to) = match event {
            Event::Changed => continue,
            Event::ClientReadable => {
                if read_into(&client, &mut buf[..limit], &mut up).is_err() {
                    return;
                }
                continue;
            }
            Event::ServerReadable => {
                if read_into(&server, &mut buf[..limit], &mut down).is_err() {
                    return;
                }
                continue;
            }
            Event::UpDue => (&mut up, &mut server),
            Event::DownDue => (&mut down, &mut client),
        };
        let Some((_, mut chunk)) = lane.queue.pop_front() else {
            continue;
        };
        let mut cut = None;
        if let Some((limit, how)) = f.cut_after {
            let room = limit.saturating_sub(counted);
            if room < chunk.len() as u64 {
                chunk.truncate(room as usize);
                cut = Some(how);
            }
        }
        counted += chunk.len() as u64;
        if !chunk.is_empty() && to.write_all(&chunk).await.is_err() {
            return;
        }
        if let Some(how) = cut {
            cut_count.fetch_add(1, Ordering::Relaxed);
            if how == Cut::Reset {
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
            }
            // Both sockets close here: an RST with linger 0, else a FIN.
            return;
        }
        if let Some(rate) = f.bandwidth.filter(|r| *r > 0) {
            let secs = chunk.len() as f64 / rate as f64;
            lane.free_at = Some(Instant::now() + Duration::from_secs_f64(secs));
        }
    }
}
