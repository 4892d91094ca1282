//! Rank 0 in the rendezvous: listen, collect every peer's hello, then answer all.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::deadline::{left, PER_PEER_IO, REPLY_GRACE};
use super::env::LaunchEnv;
use super::error::{list_ranks, BootstrapError};
use super::wire::{
    encode_ok, encode_other_job, encode_refusal, encode_refusal_as, read_hello, write_by, Hello,
    HelloError, MAX_PAYLOAD, PROTOCOL_V1, PROTOCOL_VERSION,
};

/// Listen on the first of `addrs` that can be bound (rank 0).
pub fn bind(
    env: &LaunchEnv,
    addrs: &[SocketAddr],
) -> Result<(TcpListener, SocketAddr), BootstrapError> {
    let mut first_err: Option<(SocketAddr, std::io::Error)> = None;
    for &a in addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok((l, a)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                return Err(BootstrapError::AddressInUse {
                    addr: a,
                    origin: env.port_origin,
                });
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some((a, e));
                }
            }
        }
    }
    match first_err {
        Some((addr, source)) => Err(BootstrapError::Bind { addr, source }),
        None => Err(BootstrapError::Resolve {
            addr: env.master_addr.clone(),
            detail: "no addresses".into(),
        }),
    }
}

/// Best effort: tell a peer why it is refused (it fails at once instead of timing out).
fn refuse(s: &mut TcpStream, message: &str) {
    send_refusal(s, &encode_refusal(message));
}

/// Best effort: send an encoded refusal.
fn send_refusal(s: &mut TcpStream, reply: &[u8]) {
    let _ = write_by(s, reply, Duration::from_millis(500));
}

/// Whether the peer of `s` still holds its end open (no end of stream or error pending).
fn is_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match s.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
    };
    open && s.set_nonblocking(false).is_ok()
}

/// A connection and its hello, as a reader thread hands it to rank 0.
type Arrival = (TcpStream, SocketAddr, Result<Hello, HelloError>);

/// Rank 0: collect every peer's hello (of job `job_id` and exchange `tag`), then answer all.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    world_size: usize,
    job_id: &str,
    tag: u64,
    mine: Vec<u8>,
    started: Instant,
    deadline: Instant,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error(addr, "setting up rank 0's listener", e))?;
    let (tx, rx) = mpsc::channel::<Arrival>();
    let mut peers = Peers::new(world_size);
    loop {
        // Hellos read by the per-connection threads.
        while let Ok((s, from, hello)) = rx.try_recv() {
            peers.admit(s, from, hello, job_id)?;
        }
        if peers.arrived == world_size {
            break;
        }
        if Instant::now() >= deadline {
            return Err(peers.missing(addr, started));
        }
        match listener.accept() {
            Ok((stream, from)) => {
                let conn_deadline = (Instant::now() + PER_PEER_IO).min(deadline);
                let expected = (job_id.to_string(), tag);
                if spawn_reader(stream, from, conn_deadline, expected, tx.clone()).is_err() {
                    // Could not start a reader: the connection is dropped; the rank retries.
                    peers.ignored += 1;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::sleep(Duration::from_millis(5).min(left(deadline)));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                let err = io_error(addr, "accepting connections", e);
                return Err(peers.give_up("rank 0 could not accept connections", err));
            }
        }
    }
    peers.answer(addr, mine)
}

/// An I/O error of rank 0's end (`addr`).
fn io_error(addr: SocketAddr, during: &'static str, source: std::io::Error) -> BootstrapError {
    BootstrapError::Io {
        during,
        peer: addr.to_string(),
        source,
    }
}

/// Read the hello of a new connection on a thread of its own (a slow peer cannot hold up the
/// others), bounded by `conn_deadline`, and send it to rank 0's loop. `expected` is this
/// exchange's (job id, tag): a hello for another stops being read there.
fn spawn_reader(
    stream: TcpStream,
    from: SocketAddr,
    conn_deadline: Instant,
    expected: (String, u64),
    tx: mpsc::Sender<Arrival>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("symmem-bootstrap-peer".into())
        .spawn(move || {
            let mut stream = stream;
            let hello = match stream.set_nonblocking(false) {
                Ok(()) => {
                    let _ = stream.set_nodelay(true);
                    read_hello(&mut stream, conn_deadline, &expected.0, expected.1)
                }
                Err(_) => Err(HelloError::Io),
            };
            let _ = tx.send((stream, from, hello));
        })
        .map(drop)
}

/// A peer that arrived: its connection, its address and its contribution.
struct Slot {
    stream: TcpStream,
    from: SocketAddr,
    payload: Vec<u8>,
}

/// The peers rank 0 heard from, by rank (slot 0 is rank 0 itself and stays empty).
struct Peers {
    slots: Vec<Option<Slot>>,
    /// Ranks arrived, rank 0 included.
    arrived: usize,
    /// Connections that were not peers of this exchange.
    ignored: usize,
}

impl Peers {
    fn new(world_size: usize) -> Self {
        Peers {
            slots: (0..world_size).map(|_| None).collect(),
            arrived: 1,
            ignored: 0,
        }
    }

    fn world_size(&self) -> usize {
        self.slots.len()
    }

    /// Take one hello: a peer fills its slot; strays, other jobs, other exchanges and a second
    /// connection for a rank already connected are ignored (counted; all but strays are told
    /// why); a peer of this job that does not fit this exchange fails it.
    fn admit(
        &mut self,
        mut s: TcpStream,
        from: SocketAddr,
        hello: Result<Hello, HelloError>,
        job_id: &str,
    ) -> Result<(), BootstrapError> {
        let world_size = self.world_size();
        let hello = match hello {
            Ok(h) => h,
            Err(HelloError::Stray) | Err(HelloError::Io) => {
                self.ignored += 1;
                return Ok(());
            }
            Err(HelloError::Version(v)) => {
                let detail = format!("{from} speaks bootstrap protocol version {v}, rank 0 speaks {PROTOCOL_VERSION}: run the same symmem version on every rank");
                // A version 1 peer reads a refusal in its own version (same layout), and so
                // fails with this message instead of a version error of its own.
                let reply_version = if v == PROTOCOL_V1 {
                    PROTOCOL_V1
                } else {
                    PROTOCOL_VERSION
                };
                send_refusal(&mut s, &encode_refusal_as(reply_version, &detail));
                let err = BootstrapError::Protocol {
                    peer: from.to_string(),
                    detail: detail.clone(),
                };
                return Err(self.give_up(&detail, err));
            }
            Err(HelloError::OtherJob) => {
                send_refusal(&mut s, &encode_other_job(job_id));
                self.ignored += 1;
                return Ok(());
            }
            Err(HelloError::OtherTag) => {
                refuse(&mut s, "rank 0 is running another exchange on this port (its tag differs): the ranks are out of step");
                self.ignored += 1;
                return Ok(());
            }
            Err(HelloError::TooLarge(len)) => {
                let detail = format!(
                    "{from} sent a contribution of {len} bytes, over the limit of {MAX_PAYLOAD}"
                );
                return Err(self.protocol_failure(&mut s, from, detail));
            }
        };
        let r = hello.rank as usize;
        if hello.world_size as usize != world_size || r == 0 || r >= world_size {
            let detail = format!(
                "{from} says it is rank {} of {}, but rank 0 has world size {world_size}: every rank must be started with the same WORLD_SIZE and a distinct rank in 1..{world_size}",
                hello.rank, hello.world_size
            );
            return Err(self.protocol_failure(&mut s, from, detail));
        }
        match &self.slots[r] {
            // A rank that connects again after its first connection closed (it retried)
            // replaces it; while the first is open the second is refused.
            Some(first) if is_open(&first.stream) => {
                let message = format!("rank {r} of this job is already connected from {}: two processes were started as rank {r} (check the launcher's rank variables), or another job with the same job id shares this port (give each job its own port, or its own SYMMEM_JOB_ID)", first.from);
                refuse(&mut s, &message);
                self.ignored += 1;
                return Ok(());
            }
            Some(_) => {}
            None => self.arrived += 1,
        }
        self.slots[r] = Some(Slot {
            stream: s,
            from,
            payload: hello.payload,
        });
        Ok(())
    }

    /// Refuse `s` with `detail`, then fail the exchange with a protocol error about `from`.
    fn protocol_failure(
        &mut self,
        s: &mut TcpStream,
        from: SocketAddr,
        detail: String,
    ) -> BootstrapError {
        refuse(s, &detail);
        self.give_up(
            &detail,
            BootstrapError::Protocol {
                peer: from.to_string(),
                detail: detail.clone(),
            },
        )
    }

    /// Fail: tell every connected peer `message`, then return `err`.
    fn give_up(&mut self, message: &str, err: BootstrapError) -> BootstrapError {
        for slot in self.slots.iter_mut().flatten() {
            refuse(&mut slot.stream, message);
        }
        err
    }

    /// The deadline passed: fail naming the ranks that never arrived.
    fn missing(&mut self, addr: SocketAddr, started: Instant) -> BootstrapError {
        let world_size = self.world_size();
        let missing: Vec<usize> = (1..world_size)
            .filter(|&r| self.slots[r].is_none())
            .collect();
        let message = format!(
            "rank 0 gave up after {:?}: rank(s) {} never arrived",
            started.elapsed(),
            list_ranks(&missing)
        );
        let err = BootstrapError::PeersMissing {
            addr,
            waited: started.elapsed(),
            missing,
            arrived: self.arrived,
            world_size,
            ignored: self.ignored,
        };
        self.give_up(&message, err)
    }

    /// Every peer arrived: answer each with every rank's contribution (rank 0's is `mine`).
    fn answer(self, addr: SocketAddr, mine: Vec<u8>) -> Result<Vec<Vec<u8>>, BootstrapError> {
        let world_size = self.world_size();
        let mut all = Vec::with_capacity(world_size);
        all.push(mine);
        let mut streams = Vec::with_capacity(world_size - 1);
        for p in self.slots.into_iter().skip(1) {
            // Every slot 1.. is filled once `arrived == world_size`.
            let Some(Slot {
                stream: s, payload, ..
            }) = p
            else {
                return Err(BootstrapError::Protocol {
                    peer: addr.to_string(),
                    detail: "internal: a rank slot is empty".into(),
                });
            };
            all.push(payload);
            streams.push(s);
        }
        let reply = encode_ok(&all);
        let reply_deadline = Instant::now() + REPLY_GRACE;
        let mut failed: Option<BootstrapError> = None;
        for (i, mut s) in streams.into_iter().enumerate() {
            if let Err(e) = write_by(&mut s, &reply, left(reply_deadline)) {
                failed.get_or_insert(BootstrapError::Io {
                    during: "sending the exchange result",
                    peer: format!("rank {}", i + 1),
                    source: e,
                });
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }
}
