//! A rank other than 0 in the rendezvous: connect (retrying), send the hello, read the answer.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::deadline::{left, ANSWER_GRACE, PER_PEER_IO};
use super::env::LaunchEnv;
use super::error::BootstrapError;
use super::wire::{encode_hello, read_reply, write_by, Refusal, ReplyError};

/// A rank other than 0: connect (retrying), send the hello, read the answer.
pub fn client(
    env: &LaunchEnv,
    addrs: &[SocketAddr],
    tag: u64,
    mine: &[u8],
    started: Instant,
    deadline: Instant,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let hello = encode_hello(
        env.job_id(),
        tag,
        env.rank as u32,
        env.world_size as u32,
        mine,
    );
    let mut attempts = 0usize;
    let mut last_error = String::from("none");
    let mut backoff = Duration::from_millis(20);
    loop {
        for &a in addrs {
            if Instant::now() >= deadline {
                break;
            }
            attempts += 1;
            let mut s =
                match TcpStream::connect_timeout(&a, left(deadline).min(Duration::from_secs(2))) {
                    Ok(s) => s,
                    Err(e) => {
                        last_error = format!("{a}: {e}");
                        continue;
                    }
                };
            let _ = s.set_nodelay(true);
            if let Err(e) = write_by(&mut s, &hello, left(deadline).min(PER_PEER_IO)) {
                last_error = format!("{a}: sending the hello: {e}");
                continue;
            }
            match read_reply(&mut s, env.world_size, deadline + ANSWER_GRACE) {
                Ok(Ok(all)) => return Ok(all),
                Ok(Err(Refusal::Message(message))) => {
                    return Err(BootstrapError::Refused {
                        rank: env.rank,
                        addr: a,
                        message,
                    })
                }
                Ok(Err(Refusal::OtherJob(rank0_job))) => {
                    return Err(BootstrapError::JobMismatch {
                        rank: env.rank,
                        addr: a,
                        job: env.job_id().to_string(),
                        rank0_job,
                    })
                }
                Err(ReplyError::Timeout) => {
                    return Err(BootstrapError::NoReply {
                        rank: env.rank,
                        addr: a,
                        waited: started.elapsed(),
                    });
                }
                Err(ReplyError::Foreign(detail)) => {
                    return Err(BootstrapError::Protocol {
                        peer: a.to_string(),
                        detail: format!("{detail}; is another program (e.g. torchrun's own store) listening on this port? Set SYMMEM_BOOTSTRAP_PORT to a free port on every rank"),
                    });
                }
                Err(ReplyError::Lost(e)) => {
                    last_error = format!("{a}: connection lost before an answer: {e}");
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(BootstrapError::ConnectTimeout {
                rank: env.rank,
                addr: env.endpoint(),
                waited: started.elapsed(),
                attempts,
                last_error,
            });
        }
        std::thread::sleep(backoff.min(left(deadline)));
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}
