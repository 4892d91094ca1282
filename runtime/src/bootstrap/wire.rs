//! The rendezvous' wire format: hellos, replies and refusals, and reading them before a deadline.
//!
//! Little endian, version 2. Hello = `b"SYMM"`, version `u32`, job id length `u32` (at most
//! 1024) and UTF-8 bytes, tag `u64` (FNV-1a of the tag string), rank `u32`, world size `u32`,
//! length `u32`, bytes. Reply = `b"SYMM"`, version `u32`, status `u32` (0 ok, 1 refused, 2 another
//! job), then for ok: count `u32` and `count` times (length `u32`, bytes); for refused: length
//! `u32` and a UTF-8 message; for another job: length `u32` and rank 0's job id. Version 1 had no
//! job id and no status 2. (Also in the public docs, `overview.md`.)
//!
//! Rank 0 reads a hello field by field and stops at the first that is not its own (job id,
//! then tag), so a foreign hello's declared length is never read; payloads are read in chunks,
//! so memory grows with the bytes that arrive, not with the length declared.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::deadline::{left, REPLY_GRACE};

/// Length of an NCCL unique id (`ncclUniqueId`, `NCCL_UNIQUE_ID_BYTES`).
pub const UNIQUE_ID_BYTES: usize = 128;

/// Largest contribution of one rank to an exchange (16 MiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Longest job id accepted, in bytes (it travels in every hello).
pub const MAX_JOB_ID: usize = 1024;

pub const MAGIC: [u8; 4] = *b"SYMM";
/// 2: the hello carries the job id; status 2 (another job). Version 1 replies have the same
/// layout as version 2's, without status 2.
pub const PROTOCOL_VERSION: u32 = 2;
/// The last version without the job id, whose refusals rank 0 can still write.
pub const PROTOCOL_V1: u32 = 1;
pub const STATUS_OK: u32 = 0;
pub const STATUS_REFUSED: u32 = 1;
pub const STATUS_OTHER_JOB: u32 = 2;
pub const MAX_MESSAGE: usize = 64 << 10;
/// Payloads are read (and their buffer grown) this many bytes at a time.
const READ_CHUNK: usize = 64 << 10;

/// FNV-1a, stable across processes and Rust versions.
pub fn tag_hash(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A hello of this job and exchange, as rank 0 read it.
pub struct Hello {
    pub rank: u32,
    pub world_size: u32,
    pub payload: Vec<u8>,
}

pub enum HelloError {
    /// Not our magic: some other client. Ignored.
    Stray,
    /// Our magic, another protocol version.
    Version(u32),
    /// Another job's hello (its job id differs): refused, the rest is not read.
    OtherJob,
    /// Another exchange's hello (its tag differs): refused, the rest is not read.
    OtherTag,
    /// A contribution over the limit.
    TooLarge(usize),
    /// The connection failed or timed out before a full hello. Ignored (a rank retries).
    Io,
}

/// Read exactly `buf.len()` bytes before `deadline` (each read's timeout is the time left).
pub fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out"));
        }
        s.set_read_timeout(Some(left(deadline)))?;
        match s.read(&mut buf[pos..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            }
            Ok(n) => pos += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn read_u32(s: &mut TcpStream, deadline: Instant) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    read_by(s, &mut b, deadline)?;
    Ok(u32::from_le_bytes(b))
}

/// Read `len` bytes before `deadline`, growing the buffer as they arrive (a declared length
/// alone allocates at most one chunk).
pub fn read_vec_by(s: &mut TcpStream, len: usize, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(len.min(READ_CHUNK));
    while v.len() < len {
        let start = v.len();
        v.resize(start + (len - start).min(READ_CHUNK), 0);
        read_by(s, &mut v[start..], deadline)?;
    }
    Ok(v)
}

pub fn write_by(s: &mut TcpStream, data: &[u8], timeout: Duration) -> std::io::Result<()> {
    s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    s.write_all(data)?;
    s.flush()
}

/// Read a hello for job `job_id` and exchange `tag`, stopping at the first field that differs.
pub fn read_hello(
    s: &mut TcpStream,
    deadline: Instant,
    job_id: &str,
    tag: u64,
) -> Result<Hello, HelloError> {
    let mut magic = [0u8; 4];
    read_by(s, &mut magic, deadline).map_err(|_| HelloError::Io)?;
    if magic != MAGIC {
        return Err(HelloError::Stray);
    }
    let version = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    if version != PROTOCOL_VERSION {
        return Err(HelloError::Version(version));
    }
    let job_len = read_u32(s, deadline).map_err(|_| HelloError::Io)? as usize;
    if job_len > MAX_JOB_ID {
        // No symmem sends that (`validate`): not a peer.
        return Err(HelloError::Stray);
    }
    let job = read_vec_by(s, job_len, deadline).map_err(|_| HelloError::Io)?;
    if job != job_id.as_bytes() {
        return Err(HelloError::OtherJob);
    }
    let mut t = [0u8; 8];
    read_by(s, &mut t, deadline).map_err(|_| HelloError::Io)?;
    if u64::from_le_bytes(t) != tag {
        return Err(HelloError::OtherTag);
    }
    let rank = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    let world_size = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    let len = read_u32(s, deadline).map_err(|_| HelloError::Io)? as usize;
    if len > MAX_PAYLOAD {
        return Err(HelloError::TooLarge(len));
    }
    let payload = read_vec_by(s, len, deadline).map_err(|_| HelloError::Io)?;
    Ok(Hello {
        rank,
        world_size,
        payload,
    })
}

pub fn encode_hello(job_id: &str, tag: u64, rank: u32, world_size: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + job_id.len() + payload.len());
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    m.extend_from_slice(&(job_id.len() as u32).to_le_bytes());
    m.extend_from_slice(job_id.as_bytes());
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(&rank.to_le_bytes());
    m.extend_from_slice(&world_size.to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

pub fn encode_ok(all: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = all.iter().map(|p| 4 + p.len()).sum();
    let mut m = Vec::with_capacity(16 + total);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    m.extend_from_slice(&STATUS_OK.to_le_bytes());
    m.extend_from_slice(&(all.len() as u32).to_le_bytes());
    for p in all {
        m.extend_from_slice(&(p.len() as u32).to_le_bytes());
        m.extend_from_slice(p);
    }
    m
}

pub fn encode_refusal(message: &str) -> Vec<u8> {
    encode_refusal_as(PROTOCOL_VERSION, message)
}

/// A refusal in protocol `version`'s words (the same layout in versions 1 and 2), so that a
/// peer of that version reads the message instead of failing on the version.
pub fn encode_refusal_as(version: u32, message: &str) -> Vec<u8> {
    let mut msg = message.as_bytes();
    if msg.len() > MAX_MESSAGE {
        msg = &msg[..MAX_MESSAGE];
    }
    encode_status(version, STATUS_REFUSED, msg)
}

/// "Rank 0 belongs to another job", with rank 0's job id.
pub fn encode_other_job(rank0_job: &str) -> Vec<u8> {
    encode_status(PROTOCOL_VERSION, STATUS_OTHER_JOB, rank0_job.as_bytes())
}

fn encode_status(version: u32, status: u32, bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + bytes.len());
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(&status.to_le_bytes());
    m.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    m.extend_from_slice(bytes);
    m
}

/// Why rank 0 did not answer with the result.
pub enum Refusal {
    /// Rank 0 refused this rank or gave up; its message.
    Message(String),
    /// Rank 0 belongs to another job; its job id.
    OtherJob(String),
}

pub enum ReplyError {
    /// The connection closed or failed before any byte of a reply: retry.
    Lost(String),
    /// No reply before the deadline.
    Timeout,
    /// Something that is not rank 0 of this protocol answered.
    Foreign(String),
}

pub fn read_reply(
    s: &mut TcpStream,
    world_size: usize,
    deadline: Instant,
) -> Result<Result<Vec<Vec<u8>>, Refusal>, ReplyError> {
    let classify = |e: std::io::Error| {
        if e.kind() == ErrorKind::TimedOut {
            ReplyError::Timeout
        } else {
            ReplyError::Lost(e.to_string())
        }
    };
    let mut magic = [0u8; 4];
    read_by(s, &mut magic, deadline).map_err(classify)?;
    if magic != MAGIC {
        return Err(ReplyError::Foreign(format!(
            "it answered {magic:02x?} instead of symmem's greeting"
        )));
    }
    // The answer has begun: the rest may take a little longer than the deadline.
    let deadline = deadline.max(Instant::now() + REPLY_GRACE);
    let foreign = |e: std::io::Error| ReplyError::Foreign(format!("its answer broke off: {e}"));
    let version = read_u32(s, deadline).map_err(foreign)?;
    if version != PROTOCOL_VERSION {
        return Err(ReplyError::Foreign(format!("it speaks bootstrap protocol version {version}, this rank {PROTOCOL_VERSION}: run the same symmem version on every rank")));
    }
    let status = read_u32(s, deadline).map_err(foreign)?;
    match status {
        STATUS_OK => {
            let count = read_u32(s, deadline).map_err(foreign)? as usize;
            if count != world_size {
                return Err(ReplyError::Foreign(format!(
                    "it sent {count} contributions for a world of {world_size}"
                )));
            }
            let mut all = Vec::with_capacity(count);
            for _ in 0..count {
                let len = read_u32(s, deadline).map_err(foreign)? as usize;
                if len > MAX_PAYLOAD {
                    return Err(ReplyError::Foreign(format!(
                        "it sent a contribution of {len} bytes, over the limit of {MAX_PAYLOAD}"
                    )));
                }
                all.push(read_vec_by(s, len, deadline).map_err(foreign)?);
            }
            Ok(Ok(all))
        }
        STATUS_REFUSED => {
            let len = read_u32(s, deadline).map_err(foreign)? as usize;
            let msg = read_vec_by(s, len.min(MAX_MESSAGE), deadline).map_err(foreign)?;
            Ok(Err(Refusal::Message(
                String::from_utf8_lossy(&msg).into_owned(),
            )))
        }
        STATUS_OTHER_JOB => {
            let len = read_u32(s, deadline).map_err(foreign)? as usize;
            let job = read_vec_by(s, len.min(MAX_JOB_ID), deadline).map_err(foreign)?;
            Ok(Err(Refusal::OtherJob(
                String::from_utf8_lossy(&job).into_owned(),
            )))
        }
        other => Err(ReplyError::Foreign(format!(
            "it sent an unknown status {other}"
        ))),
    }
}
