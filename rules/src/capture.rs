//! The capture-unfit table: the operations `#[symmetric_memory]` rejects at compile time in a
//! checked body, as data ([`RULES`]), with the message text and the path matching the macro's
//! body walk applies. `docs/capture-rules.md` is rendered from it ([`crate::doc`]).

/// What a rule matches, syntactically.
#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    /// A method call `.name(..)`, or the same method called through a type path
    /// (`Type::name(..)`, `<T as Trait>::name(..)`, `Self::name(..)`).
    Method(&'static str),
    /// A method call whose name starts with the prefix (`.par_chunks(..)` for `"par_"`),
    /// through a type path too, like [`Pattern::Method`].
    MethodPrefix(&'static str),
    /// A function path, used as a call or as a value. The path as written must be a suffix of
    /// `path` of at least `min` segments: with `path = "std::thread::sleep", min = 2`,
    /// `thread::sleep` and `std::thread::sleep` match, a bare `sleep` does not.
    Function {
        /// The full path.
        path: &'static str,
        /// How many trailing segments must be written at least.
        min: usize,
    },
    /// A type, used through its associated items (`thread::Builder::new()`), matched like
    /// [`Pattern::Function`].
    Type {
        /// The full path.
        path: &'static str,
        /// How many trailing segments must be written at least.
        min: usize,
    },
    /// An `async` block in a synchronous body.
    AsyncBlock,
    /// An `async` closure in a synchronous body.
    AsyncClosure,
}

impl Pattern {
    /// How the pattern reads in the documentation (`docs/capture-rules.md`).
    pub fn describe(&self) -> String {
        match self {
            Pattern::Method(name) => format!("`.{name}(..)`"),
            Pattern::MethodPrefix(prefix) => format!("`.{prefix}*(..)`"),
            Pattern::Function { path, min } | Pattern::Type { path, min } => {
                let segs: Vec<&str> = path.split("::").collect();
                let kind = if matches!(self, Pattern::Type { .. }) {
                    "::*"
                } else {
                    ""
                };
                (*min..=segs.len())
                    .rev()
                    .map(|n| format!("`{}{kind}`", segs[segs.len() - n..].join("::")))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            Pattern::AsyncBlock => "`async { .. }` (sync bodies)".to_string(),
            Pattern::AsyncClosure => "`async \\|..\\| ..` (sync bodies)".to_string(),
        }
    }

    /// Whether this is a method pattern that matches a method named `name`.
    pub fn matches_method(&self, name: &str) -> bool {
        match self {
            Pattern::Method(want) => *want == name,
            Pattern::MethodPrefix(prefix) => name.len() > prefix.len() && name.starts_with(prefix),
            _ => false,
        }
    }

    /// Whether this is a path pattern that matches the path written as `segs` (segments,
    /// without generics): a function path by suffix, a type path by suffix with or without its
    /// last segment (the associated item).
    pub fn matches_path(&self, segs: &[String]) -> bool {
        match self {
            Pattern::Function { path, min } => suffix_matches(segs, path, *min),
            Pattern::Type { path, min } => {
                suffix_matches(segs, path, *min)
                    || (!segs.is_empty() && suffix_matches(&segs[..segs.len() - 1], path, *min))
            }
            _ => false,
        }
    }
}

/// Why a rule exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Waits on the host for device work or copies through the host.
    HostBlocking,
    /// Collective set-up (communicators, symmetric segments) that cannot run under capture.
    CollectiveSetup,
    /// Runs code on another thread, where the window does not route.
    OtherThread,
    /// Runs code after the window has closed.
    Deferred,
    /// Starts or replays a graph, which cannot happen inside a capture.
    Nesting,
}

impl Category {
    /// The category's name in messages and documentation.
    pub fn name(self) -> &'static str {
        match self {
            Category::HostBlocking => "host-blocking",
            Category::CollectiveSetup => "collective set-up",
            Category::OtherThread => "other thread",
            Category::Deferred => "deferred",
            Category::Nesting => "graph nesting",
        }
    }
}

/// One capture rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable identifier (kebab case), shown in the documentation.
    pub id: &'static str,
    /// Why it is flagged.
    pub category: Category,
    /// What it matches.
    pub patterns: &'static [Pattern],
    /// Completes "`<the call>` ...": what goes wrong.
    pub reason: &'static str,
    /// What to do instead.
    pub fix: &'static str,
}

use Pattern::{AsyncBlock, AsyncClosure, Function, Method, MethodPrefix, Type};

/// The rules, in the order the documentation lists them.
pub const RULES: &[Rule] = &[
    Rule {
        id: "synchronize",
        category: Category::HostBlocking,
        patterns: &[Method("synchronize"), Function { path: "symmem::synchronize", min: 2 }],
        reason: "blocks the host until the stream drains; a CUDA graph cannot record a host wait (under `symmem::capture` it fails with `NotAllowedDuringCapture`)",
        fix: "synchronize in the caller, after the annotated function returns and outside `symmem::capture`; inside the body, let stream order sequence the work",
    },
    Rule {
        id: "device-to-host-copy",
        category: Category::HostBlocking,
        patterns: &[
            Method("to_host_vec"),
            Method("copy_to_host"),
            Method("memcpy_dtoh"),
            Method("memcpy_dtov"),
            Method("clone_dtoh"),
        ],
        reason: "copies device memory to the host and waits for it; a CUDA graph cannot record a blocking copy and a replay would not refresh the host data",
        fix: "keep the data on the device inside the body (e.g. `Buffer::copy_from` between buffers) and read results on the host in the caller, outside capture",
    },
    Rule {
        id: "host-to-device-copy",
        category: Category::HostBlocking,
        patterns: &[
            Method("copy_from_host"),
            Method("memcpy_htod"),
            Function { path: "symmem::alloc_from_host", min: 1 },
        ],
        reason: "copies host memory to the device and waits for it; a CUDA graph cannot record a blocking copy and a replay would not re-read the host data",
        fix: "upload inputs before the call (e.g. `symmem::alloc_from_host` in the caller) and pass the buffer in; inside the body, copy device to device",
    },
    Rule {
        id: "sleep",
        category: Category::HostBlocking,
        patterns: &[Function { path: "std::thread::sleep", min: 2 }],
        reason: "sleeps on the host; a CUDA graph records device work only, so the delay is not part of the graph",
        fix: "remove the sleep from the body; wait in the caller if a delay is really needed",
    },
    Rule {
        id: "reserve-symmetric",
        category: Category::CollectiveSetup,
        patterns: &[Method("reserve_symmetric")],
        reason: "creates and registers symmetric segments (a collective `ncclMemAlloc` + `ncclCommWindowRegister`), which is refused during capture",
        fix: "reserve once before capturing (e.g. at start-up: `group.reserve_symmetric(bytes)`), outside the annotated function",
    },
    Rule {
        id: "empty-cache",
        category: Category::CollectiveSetup,
        patterns: &[Method("empty_cache")],
        reason: "releases cached segments (deregistering symmetric windows is collective), which is refused during capture",
        fix: "empty caches outside capture, between steps, in the caller",
    },
    Rule {
        id: "split-group",
        category: Category::CollectiveSetup,
        patterns: &[Method("split_group")],
        reason: "creates a communicator (a collective `ncclCommSplit`), which cannot run during capture",
        fix: "create groups once at start-up with `ctx.split_group(..)` and look them up with `symmem::group(name)`",
    },
    Rule {
        id: "add-group",
        category: Category::CollectiveSetup,
        patterns: &[
            Method("add_group"),
            Function { path: "symmem::cuda::adopt_nccl_comm", min: 2 },
        ],
        reason: "adds a group with its communicator to the rank (collective set-up), which is refused during capture",
        fix: "add groups once at start-up with `ctx.add_group(..)` and look them up with `symmem::group(name)`",
    },
    Rule {
        id: "start-ranks",
        category: Category::CollectiveSetup,
        patterns: &[
            Function { path: "symmem::RankContext::install", min: 2 },
            Function { path: "symmem::host::run", min: 2 },
            Function { path: "symmem::host::run_with", min: 2 },
            Function { path: "symmem::run", min: 2 },
            Function { path: "symmem::cuda::run_threads", min: 2 },
            Function { path: "symmem::cuda::init_rank", min: 2 },
            Function { path: "symmem::cuda::init_rank_on_stream", min: 2 },
            Function { path: "symmem::cuda::init_from_env", min: 2 },
        ],
        reason: "starts ranks and creates their communicators, which cannot run during capture (and would install a second rank context on this thread)",
        fix: "start ranks once, outside any annotated function, and call annotated functions from the rank closures",
    },
    Rule {
        id: "nccl-comm-init",
        category: Category::CollectiveSetup,
        patterns: &[
            Function { path: "ncclCommInitRank", min: 1 },
            Function { path: "ncclCommInitRankConfig", min: 1 },
            Function { path: "ncclCommInitAll", min: 1 },
            Function { path: "ncclCommSplit", min: 1 },
        ],
        reason: "creates an NCCL communicator, a collective that cannot run during capture",
        fix: "create communicators at start-up, outside the annotated function",
    },
    Rule {
        id: "other-thread",
        category: Category::OtherThread,
        patterns: &[
            Function { path: "std::thread::spawn", min: 2 },
            Function { path: "std::thread::scope", min: 2 },
            Type { path: "std::thread::Builder", min: 2 },
            Function { path: "rayon::spawn", min: 2 },
            Function { path: "rayon::spawn_fifo", min: 2 },
            Function { path: "rayon::spawn_broadcast", min: 2 },
            Function { path: "rayon::broadcast", min: 2 },
            Function { path: "rayon::scope", min: 2 },
            Function { path: "rayon::scope_fifo", min: 2 },
            Function { path: "rayon::in_place_scope", min: 2 },
            Function { path: "rayon::in_place_scope_fifo", min: 2 },
            Function { path: "rayon::join", min: 2 },
            Function { path: "rayon::join_context", min: 2 },
            Method("spawn"),
            Method("spawn_fifo"),
            Method("spawn_broadcast"),
            Method("spawn_scoped"),
            Method("install"),
            MethodPrefix("par_"),
            Method("into_par_iter"),
        ],
        reason: "runs code on another thread, where this window does not route (routing is per thread): allocations there come from the default pool, not the group's symmetric pool",
        fix: "allocate the buffers in the body, on this thread, and hand them to the other thread; or annotate the function that thread runs with its own `#[symmetric_memory]`",
    },
    Rule {
        id: "other-task",
        category: Category::OtherThread,
        patterns: &[
            Function { path: "tokio::spawn", min: 2 },
            Function { path: "tokio::task::spawn", min: 2 },
            Function { path: "tokio::task::spawn_blocking", min: 2 },
            Function { path: "tokio::task::spawn_local", min: 2 },
            Method("spawn_blocking"),
            Method("spawn_local"),
        ],
        reason: "hands code to an executor, which runs it on another thread or after this call has returned, outside this window (routing is per thread and lasts for the call): allocations there come from the default pool, not the group's symmetric pool",
        fix: "allocate the buffers in the body and move them into the task; or make the task's code an annotated `async fn` (the macro routes each of its polls)",
    },
    Rule {
        id: "nested-capture",
        category: Category::Nesting,
        patterns: &[
            Function { path: "symmem::capture", min: 2 },
            Function { path: "symmem::capture::capture", min: 2 },
            Function { path: "symmem::capture_with_error", min: 2 },
        ],
        reason: "starts a graph capture, but a checked body may itself run while a graph is captured, and captures do not nest (refused at run time with `NotAllowedDuringCapture`)",
        fix: "capture in the caller, around the call of the annotated function: `symmem::capture(|| step(..))`",
    },
    Rule {
        id: "graph-replay",
        category: Category::Nesting,
        patterns: &[Method("replay")],
        reason: "launches a captured graph; a checked body may run while a graph is captured, where a replay is refused (`NotAllowedDuringCapture`) and could not be recorded",
        fix: "replay graphs in the caller, outside `symmem::capture(..)` and outside the annotated function",
    },
    Rule {
        id: "deferred-async",
        category: Category::Deferred,
        patterns: &[AsyncBlock, AsyncClosure],
        reason: "runs when it is polled, after this function has returned and its window has closed: allocations in it are not routed to the group",
        fix: "make the function an `async fn` (the macro then routes every poll of its body), or put the async code in an annotated `async fn`",
    },
];

/// A violation's message: "capture check (category, rule `id`): `<what> <reason>`", the help
/// line, and the note on silencing it (`what` is the offending code, e.g. "`.synchronize()`").
pub fn message(rule: &Rule, what: &str) -> String {
    format!(
        "{}\n\
         note: if this never runs while a CUDA graph is captured, put `#[symmem::allow_capture_unfit(reason = \"...\")]` on the statement, or turn the checks off for the function with `capture = \"never\"`",
        head(rule, what)
    )
}

/// The message of a violation in the `disabled = <expr>` argument, which runs at every call
/// (also during capture) and cannot carry the escape hatch.
pub fn message_in_disabled(rule: &Rule, what: &str) -> String {
    format!("{}\n{DISABLED_NOTE}", head(rule, what))
}

/// The last line of a violation in `disabled = <expr>`.
pub const DISABLED_NOTE: &str = "note: `disabled = ..` is evaluated at every call of the function, also while a CUDA graph is captured, and the escape hatch cannot go on it: compute the flag before the call and pass it in (e.g. `disabled = !route` with a `route: bool` argument), or turn the checks off for the function with `capture = \"never\"`";

/// The line added to a violation behind `#[cfg(<predicate>)]` (`predicate` as written).
pub fn cfg_note(predicate: &str) -> String {
    format!(
        "note: this code is behind `#[cfg({predicate})]`; it is checked in every configuration, since a configuration where it is compiled may run it during capture"
    )
}

fn head(rule: &Rule, what: &str) -> String {
    format!(
        "capture check ({}, rule `{}`): {what} {}\n\
         help: {}",
        rule.category.name(),
        rule.id,
        rule.reason,
        rule.fix
    )
}

/// Whether a path written as `written` (segments, without generics) matches `path` with at
/// least `min` trailing segments.
pub fn suffix_matches(written: &[String], path: &str, min: usize) -> bool {
    let full: Vec<&str> = path.split("::").collect();
    written.len() >= min
        && written.len() <= full.len()
        && full[full.len() - written.len()..]
            .iter()
            .zip(written)
            .all(|(a, b)| a == b)
}

/// The first rule that a method call `.name(..)` breaks.
pub fn rule_for_method(name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.patterns.iter().any(|p| p.matches_method(name)))
}

/// The first rule that a path written as `segs` breaks (called or used as a value); `typed`:
/// the path names an associated item of a type (`Type::name`, `<T as Trait>::name`), so method
/// rules apply to its last segment too.
pub fn rule_for_path(segs: &[String], typed: bool) -> Option<&'static Rule> {
    let last = segs.last()?;
    RULES.iter().find(|r| {
        r.patterns
            .iter()
            .any(|p| p.matches_path(segs) || (typed && p.matches_method(last)))
    })
}

/// The rule with identifier `id`, if there is one.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let w = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
        assert!(suffix_matches(&w("thread::sleep"), "std::thread::sleep", 2));
        assert!(suffix_matches(
            &w("std::thread::sleep"),
            "std::thread::sleep",
            2
        ));
        assert!(!suffix_matches(&w("sleep"), "std::thread::sleep", 2));
        assert!(!suffix_matches(
            &w("tokio::thread::sleep::x"),
            "std::thread::sleep",
            2
        ));
        assert!(!suffix_matches(&w("my::sleep"), "std::thread::sleep", 2));
        assert!(suffix_matches(
            &w("alloc_from_host"),
            "symmem::alloc_from_host",
            1
        ));
    }

    #[test]
    fn describe() {
        let p = Pattern::Function {
            path: "std::thread::sleep",
            min: 2,
        };
        assert_eq!(p.describe(), "`std::thread::sleep`, `thread::sleep`");
        let t = Pattern::Type {
            path: "std::thread::Builder",
            min: 2,
        };
        assert_eq!(
            t.describe(),
            "`std::thread::Builder::*`, `thread::Builder::*`"
        );
        assert_eq!(rule("sleep").map(|r| r.id), Some("sleep"));
        assert!(rule("nope").is_none());
        assert_eq!(Pattern::MethodPrefix("par_").describe(), "`.par_*(..)`");
    }

    #[test]
    fn method_prefixes() {
        let p = Pattern::MethodPrefix("par_");
        assert!(p.matches_method("par_chunks"));
        assert!(p.matches_method("par_sort_unstable_by_key"));
        assert!(!p.matches_method("par_"));
        assert!(!p.matches_method("parse"));
        assert!(!p.matches_method("into_par_iter"));
        assert!(!Pattern::Method("spawn").matches_method("spawner"));
    }

    #[test]
    fn rules_for_calls() {
        let w = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
        let id = |r: Option<&Rule>| r.map(|r| r.id);
        assert_eq!(id(rule_for_method("par_bridge")), Some("other-thread"));
        assert_eq!(id(rule_for_method("install")), Some("other-thread"));
        assert_eq!(id(rule_for_method("spawn_blocking")), Some("other-task"));
        assert_eq!(id(rule_for_method("replay")), Some("graph-replay"));
        assert_eq!(id(rule_for_method("parse")), None);
        assert_eq!(
            id(rule_for_path(&w("tokio::spawn"), false)),
            Some("other-task")
        );
        assert_eq!(
            id(rule_for_path(&w("task::spawn_local"), false)),
            Some("other-task")
        );
        assert_eq!(
            id(rule_for_path(&w("rayon::in_place_scope"), false)),
            Some("other-thread")
        );
        assert_eq!(
            id(rule_for_path(&w("symmem::capture"), false)),
            Some("nested-capture")
        );
        assert_eq!(
            id(rule_for_path(&w("capture::capture"), false)),
            Some("nested-capture")
        );
        assert_eq!(id(rule_for_path(&w("capture"), false)), None);
        assert_eq!(
            id(rule_for_path(&w("symmem::capture::is_capturing"), false)),
            None
        );
        assert_eq!(
            id(rule_for_path(&w("Graph::replay"), true)),
            Some("graph-replay")
        );
        assert_eq!(id(rule_for_path(&w("graph::replay"), false)), None);
        assert_eq!(
            id(rule_for_path(&w("thread::Builder::new"), false)),
            Some("other-thread")
        );
        // The start-ranks function comes before the `.install(..)` method rule.
        assert_eq!(
            id(rule_for_path(&w("RankContext::install"), true)),
            Some("start-ranks")
        );
        assert_eq!(
            id(rule_for_path(&w("ThreadPool::install"), true)),
            Some("other-thread")
        );
        assert_eq!(id(rule_for_path(&[], true)), None);
    }
}
