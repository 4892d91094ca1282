//! The exchanges the ranks call: the NCCL unique id and a small all-gather, over one rendezvous.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::client::client;
use super::deadline::{deadline_after, left};
use super::env::{host, validate, LaunchEnv};
use super::error::BootstrapError;
use super::server::{bind, serve};
use super::wire::{tag_hash, MAX_PAYLOAD, UNIQUE_ID_BYTES};

/// Share rank 0's NCCL unique id with every rank over TCP (see the module docs): rank 0 calls
/// `make_id` (after it could listen) and serves the id; the others fetch it. Returns the id on
/// every rank. All ranks must call it with the same world size, address and job id
/// ([`LaunchEnv::job_id`]: rank 0 refuses a rank of another job). Each waits at most
/// about `timeout` (a rank already connected to rank 0 waits up to 2 s more for rank 0's
/// answer, which names the missing ranks when rank 0 gives up). With a world size of 1,
/// returns `make_id()` without any network.
///
/// Errors: [`BootstrapError::AddressInUse`], [`BootstrapError::Bind`], [`BootstrapError::Resolve`]
/// (rank 0's listening address); [`BootstrapError::PeersMissing`] (rank 0: some ranks never
/// arrived); [`BootstrapError::ConnectTimeout`], [`BootstrapError::NoReply`],
/// [`BootstrapError::Refused`], [`BootstrapError::JobMismatch`] (other ranks);
/// [`BootstrapError::Protocol`],
/// [`BootstrapError::Io`], [`BootstrapError::InvalidId`].
pub fn exchange_unique_id(
    env: &LaunchEnv,
    make_id: impl FnOnce() -> [u8; UNIQUE_ID_BYTES],
    timeout: Duration,
) -> Result<[u8; UNIQUE_ID_BYTES], BootstrapError> {
    validate(env)?;
    if env.world_size == 1 {
        return Ok(make_id());
    }
    let is_root = env.rank == 0;
    let all = rendezvous(
        env,
        "nccl-unique-id",
        move || {
            if is_root {
                make_id().to_vec()
            } else {
                Vec::new()
            }
        },
        timeout,
    )?;
    let first = all.into_iter().next().unwrap_or_default();
    let len = first.len();
    <[u8; UNIQUE_ID_BYTES]>::try_from(first).map_err(|_| BootstrapError::InvalidId { len })
}

/// A small host-side all-gather over the same TCP bootstrap: every rank contributes `mine` (at
/// most [`MAX_PAYLOAD`] bytes) and gets every rank's contribution, indexed by rank. `tag` names
/// the exchange (ranks with different tags do not meet); consecutive exchanges may reuse the
/// same port.
///
/// Errors: as [`exchange_unique_id`] (except `InvalidId`), plus
/// [`BootstrapError::PayloadTooLarge`].
pub fn all_gather_bytes(
    env: &LaunchEnv,
    tag: &str,
    mine: &[u8],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    validate(env)?;
    if mine.len() > MAX_PAYLOAD {
        return Err(BootstrapError::PayloadTooLarge {
            len: mine.len(),
            max: MAX_PAYLOAD,
        });
    }
    if env.world_size == 1 {
        return Ok(vec![mine.to_vec()]);
    }
    rendezvous(env, tag, || mine.to_vec(), timeout)
}

/// Rank 0 listens and serves, every other rank connects as a client (after `MASTER_ADDR` is
/// resolved, within the same deadline).
fn rendezvous(
    env: &LaunchEnv,
    tag: &str,
    mine: impl FnOnce() -> Vec<u8>,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let started = Instant::now();
    let deadline = deadline_after(timeout);
    let addrs = resolve(env, deadline)?;
    if env.rank == 0 {
        let (listener, addr) = bind(env, &addrs)?;
        let mine = mine();
        if mine.len() > MAX_PAYLOAD {
            return Err(BootstrapError::PayloadTooLarge {
                len: mine.len(),
                max: MAX_PAYLOAD,
            });
        }
        serve(
            listener,
            addr,
            env.world_size,
            env.job_id(),
            tag_hash(tag),
            mine,
            started,
            deadline,
        )
    } else {
        let mine = mine();
        client(env, &addrs, tag_hash(tag), &mine, started, deadline)
    }
}

/// Resolve `MASTER_ADDR`, in a helper thread so that a slow resolver cannot outlast the
/// deadline.
fn resolve(env: &LaunchEnv, deadline: Instant) -> Result<Vec<SocketAddr>, BootstrapError> {
    let host = host(env).to_string();
    let port = env.master_port;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let spawned = std::thread::Builder::new()
        .name("symmem-resolve".into())
        .spawn(move || {
            let r = (h.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(BootstrapError::Resolve {
            addr: host,
            detail: format!("could not start a resolver thread: {e}"),
        });
    }
    match rx.recv_timeout(left(deadline)) {
        Ok(Ok(list)) if !list.is_empty() => Ok(list),
        Ok(Ok(_)) => Err(BootstrapError::Resolve {
            addr: host,
            detail: "no addresses".into(),
        }),
        Ok(Err(e)) => Err(BootstrapError::Resolve {
            addr: host,
            detail: e.to_string(),
        }),
        Err(_) => Err(BootstrapError::Resolve {
            addr: host,
            detail: "name resolution did not finish before the timeout".into(),
        }),
    }
}
