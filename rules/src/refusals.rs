//! The run-time capture refusals: every operation the runtime refuses while the calling thread
//! captures a graph (`Error::NotAllowedDuringCapture`), with the public path that reaches it
//! and the compile-time rule of [`crate::capture::RULES`] that rejects the same call in a
//! checked `#[symmetric_memory]` body. `tests/drift.rs` keeps this table, the rule table and
//! the runtime's sources in step.

use crate::capture::Category;

/// Why an operation is refused during capture; gives the error's `why` and `fix` texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// It blocks the host on the device (a synchronisation, a blocking copy).
    Blocking,
    /// It is collective set-up (segments, windows, communicators, ranks).
    Setup,
}

impl Kind {
    /// The error's `why`: what goes wrong under capture.
    pub const fn why(self) -> &'static str {
        match self {
            Kind::Blocking => {
                "it blocks the host until the device finishes, which a graph cannot record"
            }
            Kind::Setup => {
                "it is a collective set-up (segment creation / window registration / communicator creation) that fails under capture"
            }
        }
    }

    /// The error's `fix`: what to do instead.
    pub const fn fix(self) -> &'static str {
        match self {
            Kind::Blocking => {
                "move it before `symmem::capture(...)` or after it (for example read results after `graph.replay()`)"
            }
            Kind::Setup => {
                "do it before capture: create groups and call `group.reserve_symmetric(bytes)` first"
            }
        }
    }

    /// The category of the compile-time rules that catch refusals of this kind.
    pub const fn category(self) -> Category {
        match self {
            Kind::Blocking => Category::HostBlocking,
            Kind::Setup => Category::CollectiveSetup,
        }
    }
}

/// One operation the runtime refuses during capture.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `op` of the runtime's `Error::NotAllowedDuringCapture` (what the message names).
    pub op: &'static str,
    /// The public path a user calls to reach it, e.g. `symmem::RankContext::add_group`.
    pub path: &'static str,
    /// The id of the compile-time rule that rejects the call in a checked body.
    pub rule: &'static str,
    /// Why it is refused (gives the error's `why` and `fix`).
    pub kind: Kind,
}

impl Refusal {
    /// The error's `why` ([`Kind::why`]).
    pub const fn why(&self) -> &'static str {
        self.kind.why()
    }

    /// The error's `fix` ([`Kind::fix`]).
    pub const fn fix(&self) -> &'static str {
        self.kind.fix()
    }
}

/// `symmem::alloc_from_host` (a blocking upload).
pub const ALLOC_FROM_HOST: Refusal = Refusal {
    op: "symmem::alloc_from_host",
    path: "symmem::alloc_from_host",
    rule: "host-to-device-copy",
    kind: Kind::Blocking,
};

/// `Buffer::copy_from_host` (a blocking upload).
pub const BUFFER_COPY_FROM_HOST: Refusal = Refusal {
    op: "Buffer::copy_from_host",
    path: "symmem::Buffer::copy_from_host",
    rule: "host-to-device-copy",
    kind: Kind::Blocking,
};

/// `Buffer::copy_to_host`, also reached by `Buffer::to_host_vec` (a blocking download).
pub const BUFFER_COPY_TO_HOST: Refusal = Refusal {
    op: "Buffer::copy_to_host",
    path: "symmem::Buffer::copy_to_host",
    rule: "device-to-host-copy",
    kind: Kind::Blocking,
};

/// `Stream::synchronize`.
pub const STREAM_SYNCHRONIZE: Refusal = Refusal {
    op: "Stream::synchronize",
    path: "symmem::Stream::synchronize",
    rule: "synchronize",
    kind: Kind::Blocking,
};

/// `symmem::synchronize` (the current rank's stream).
pub const SYNCHRONIZE: Refusal = Refusal {
    op: "symmem::synchronize",
    path: "symmem::synchronize",
    rule: "synchronize",
    kind: Kind::Blocking,
};

/// `Group::reserve_symmetric` (creates and registers symmetric segments).
pub const GROUP_RESERVE_SYMMETRIC: Refusal = Refusal {
    op: "Group::reserve_symmetric",
    path: "symmem::Group::reserve_symmetric",
    rule: "reserve-symmetric",
    kind: Kind::Setup,
};

/// `Group::empty_cache` (releases segments; deregistering windows is collective).
pub const GROUP_EMPTY_CACHE: Refusal = Refusal {
    op: "Group::empty_cache",
    path: "symmem::Group::empty_cache",
    rule: "empty-cache",
    kind: Kind::Setup,
};

/// `RankContext::install` (starts a rank on this thread).
pub const RANK_INSTALL: Refusal = Refusal {
    op: "RankContext::install",
    path: "symmem::RankContext::install",
    rule: "start-ranks",
    kind: Kind::Setup,
};

/// `RankContext::add_group`.
pub const RANK_ADD_GROUP: Refusal = Refusal {
    op: "RankContext::add_group",
    path: "symmem::RankContext::add_group",
    rule: "add-group",
    kind: Kind::Setup,
};

/// `RankContext::split_group` (a collective `ncclCommSplit`).
pub const RANK_SPLIT_GROUP: Refusal = Refusal {
    op: "RankContext::split_group",
    path: "symmem::RankContext::split_group",
    rule: "split-group",
    kind: Kind::Setup,
};

/// `RankContext::empty_cache`.
pub const RANK_EMPTY_CACHE: Refusal = Refusal {
    op: "RankContext::empty_cache",
    path: "symmem::RankContext::empty_cache",
    rule: "empty-cache",
    kind: Kind::Setup,
};

/// The CUDA stream's host-to-device copy (behind `Buffer::copy_from_host` and
/// `symmem::alloc_from_host`, which refuse first; this one guards the backend itself).
pub const BACKEND_COPY_TO_DEVICE: Refusal = Refusal {
    op: "copy to the device",
    path: "symmem::Buffer::copy_from_host",
    rule: "host-to-device-copy",
    kind: Kind::Blocking,
};

/// The CUDA stream's device-to-host copy (behind `Buffer::copy_to_host` and
/// `Buffer::to_host_vec`).
pub const BACKEND_COPY_TO_HOST: Refusal = Refusal {
    op: "copy to the host",
    path: "symmem::Buffer::copy_to_host",
    rule: "device-to-host-copy",
    kind: Kind::Blocking,
};

/// The CUDA stream's synchronisation (behind `Stream::synchronize` and `symmem::synchronize`).
pub const BACKEND_SYNCHRONIZE: Refusal = Refusal {
    op: "synchronize",
    path: "symmem::Stream::synchronize",
    rule: "synchronize",
    kind: Kind::Blocking,
};

/// Every capture-unfit operation the runtime refuses during capture. (The host backend's
/// stream refuses nothing of its own: its copies and synchronisation are reached only through
/// the public operations above, which refuse first.)
pub const REFUSALS: &[&Refusal] = &[
    &ALLOC_FROM_HOST,
    &BUFFER_COPY_FROM_HOST,
    &BUFFER_COPY_TO_HOST,
    &STREAM_SYNCHRONIZE,
    &SYNCHRONIZE,
    &GROUP_RESERVE_SYMMETRIC,
    &GROUP_EMPTY_CACHE,
    &RANK_INSTALL,
    &RANK_ADD_GROUP,
    &RANK_SPLIT_GROUP,
    &RANK_EMPTY_CACHE,
    &BACKEND_COPY_TO_DEVICE,
    &BACKEND_COPY_TO_HOST,
    &BACKEND_SYNCHRONIZE,
];

/// A refusal of a capture inside a capture or of a replay inside a capture. These are not
/// refusals of a host-blocking or set-up operation, so they have their own texts; each still
/// names the compile-time rule (category `graph nesting`) that rejects the call in a checked
/// body, which may run during capture.
#[derive(Debug, PartialEq, Eq)]
pub struct NestingRefusal {
    /// The `op` of the runtime's `Error::NotAllowedDuringCapture`.
    pub op: &'static str,
    /// The public path a user calls to reach it.
    pub path: &'static str,
    /// The id of the compile-time rule that rejects the call in a checked body.
    pub rule: &'static str,
    /// The error's `why`.
    pub why: &'static str,
    /// The error's `fix`.
    pub fix: &'static str,
}

/// `symmem::capture` called inside a capture closure.
pub const CAPTURE_IN_CAPTURE: NestingRefusal = NestingRefusal {
    op: "capture",
    path: "symmem::capture",
    rule: "nested-capture",
    why: "a capture is already running on this thread",
    fix: "finish the outer capture first; captures do not nest",
};

/// A backend stream asked to begin capturing while it captures (both backends).
pub const BEGIN_CAPTURE_WHILE_CAPTURING: NestingRefusal = NestingRefusal {
    op: "begin_capture",
    path: "symmem::capture",
    rule: "nested-capture",
    why: "the stream is already capturing",
    fix: "finish the running capture first",
};

/// `Graph::replay` called inside a capture closure.
pub const REPLAY_IN_CAPTURE: NestingRefusal = NestingRefusal {
    op: "Graph::replay",
    path: "symmem::Graph::replay",
    rule: "graph-replay",
    why: "replaying a graph inside another capture is not supported",
    fix: "replay the graph outside the capture closure",
};

/// Every nesting refusal.
pub const NESTING: &[&NestingRefusal] = &[
    &CAPTURE_IN_CAPTURE,
    &BEGIN_CAPTURE_WHILE_CAPTURING,
    &REPLAY_IN_CAPTURE,
];
