//! The compile-time capture rules, as data. `check` applies them; `docs/capture-rules.md` is
//! rendered from them (a test keeps the file in sync: `SYMMEM_BLESS=1 cargo test -p
//! symmem-macros` rewrites it).

/// What a rule matches, syntactically.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pattern {
    /// A method call `.name(..)`, or the same method called through a type path
    /// (`Type::name(..)`, `<T as Trait>::name(..)`, `Self::name(..)`).
    Method(&'static str),
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
    /// How the pattern reads in the documentation.
    #[cfg(test)]
    pub(crate) fn describe(&self) -> String {
        match self {
            Pattern::Method(name) => format!("`.{name}(..)`"),
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
}

/// Why a rule exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    /// Waits on the host for device work or copies through the host.
    HostBlocking,
    /// Collective set-up (communicators, symmetric segments) that cannot run under capture.
    CollectiveSetup,
    /// Runs code on another thread, where the window does not route.
    OtherThread,
    /// Runs code after the window has closed.
    Deferred,
}

impl Category {
    /// The category's name in messages and documentation.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::HostBlocking => "host-blocking",
            Category::CollectiveSetup => "collective set-up",
            Category::OtherThread => "other thread",
            Category::Deferred => "deferred",
        }
    }
}

/// One capture rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// Stable identifier (kebab case), shown in the documentation.
    pub(crate) id: &'static str,
    /// Why it is flagged.
    pub(crate) category: Category,
    /// What it matches.
    pub(crate) patterns: &'static [Pattern],
    /// Completes "`<the call>` ...": what goes wrong.
    pub(crate) reason: &'static str,
    /// What to do instead.
    pub(crate) fix: &'static str,
}

use Pattern::{AsyncBlock, AsyncClosure, Function, Method, Type};

/// The rules, in the order the documentation lists them.
pub(crate) const RULES: &[Rule] = &[
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
        patterns: &[Method("empty_cache"), Function { path: "symmem::empty_cache", min: 2 }],
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
        id: "start-ranks",
        category: Category::CollectiveSetup,
        patterns: &[
            Function { path: "symmem::RankContext::install", min: 2 },
            Function { path: "symmem::host::run", min: 2 },
            Function { path: "symmem::host::run_with", min: 2 },
            Function { path: "symmem::run", min: 2 },
            Function { path: "symmem::cuda::run_threads", min: 2 },
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
            Function { path: "rayon::scope", min: 2 },
            Function { path: "rayon::join", min: 2 },
            Method("par_iter"),
            Method("par_iter_mut"),
            Method("into_par_iter"),
        ],
        reason: "runs code on another thread, where this window does not route (routing is per thread): allocations there come from the default pool, not the group's symmetric pool",
        fix: "allocate the buffers in the body, on this thread, and hand them to the other thread; or annotate the function that thread runs with its own `#[symmetric_memory]`",
    },
    Rule {
        id: "deferred-async",
        category: Category::Deferred,
        patterns: &[AsyncBlock, AsyncClosure],
        reason: "runs when it is polled, after this function has returned and its window has closed: allocations in it are not routed to the group",
        fix: "make the function an `async fn` (the macro then routes every poll of its body), or put the async code in an annotated `async fn`",
    },
];

/// The text after "`<call>` " in a violation's message, with the help line.
pub(crate) fn message(rule: &Rule, what: &str) -> String {
    format!(
        "capture check ({}, rule `{}`): {what} {}\n\
         help: {}\n\
         note: if this never runs while a CUDA graph is captured, put `#[symmem::allow_capture_unfit(reason = \"...\")]` on the statement, or turn the checks off for the function with `capture = \"never\"`",
        rule.category.name(),
        rule.id,
        rule.reason,
        rule.fix
    )
}

/// Whether a path written as `written` (segments, without generics) matches `path` with at
/// least `min` trailing segments.
pub(crate) fn suffix_matches(written: &[String], path: &str, min: usize) -> bool {
    let full: Vec<&str> = path.split("::").collect();
    written.len() >= min
        && written.len() <= full.len()
        && full[full.len() - written.len()..]
            .iter()
            .zip(written)
            .all(|(a, b)| a == b)
}

/// `docs/capture-rules.md`, rendered from [`RULES`].
#[cfg(test)]
pub(crate) fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from macros/src/rules.rs by `SYMMEM_BLESS=1 cargo test -p symmem-macros`; do not edit by hand. -->\n\n\
         # Capture rules of `#[symmetric_memory]`\n\n\
         A body annotated with `#[symmetric_memory(group = \"...\")]` (with the default `capture = \"checked\"`) may run\n\
         while a CUDA graph is being captured (`symmem::capture(..)`), so the macro rejects at compile time the calls that\n\
         cannot be recorded into a graph, or that would escape the body's pool-routing window. Each is an error on the\n\
         offending call, with a `help:` line saying what to do instead.\n\n\
         | Rule | Category | Matches | Why | Instead |\n\
         |---|---|---|---|---|\n",
    );
    for rule in RULES {
        let pats: Vec<String> = rule.patterns.iter().map(Pattern::describe).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            rule.id,
            rule.category.name(),
            pats.join("<br>"),
            rule.reason.replace('|', "\\|"),
            rule.fix.replace('|', "\\|"),
        ));
    }
    out.push_str(
        "\n## How matching works\n\n\
         The checks are syntactic: they see the tokens of the body, not types or name resolution.\n\n\
         * `.name(..)` rules match every method call of that name, whatever the receiver's type, and the same method\n  \
           called through a type path: `Stream::synchronize(&s)`, `<Buffer<f32>>::to_host_vec(&b)`, `Self::name(..)`\n  \
           (a path whose second-to-last segment starts with an upper-case letter, or a qualified path).\n\
         * Path rules match a path (called, or passed as a function value) when the path as written is a suffix of the\n  \
           rule's path at least as long as the shortest form listed: `thread::sleep(d)` and `std::thread::sleep(d)` are\n  \
           caught, `sleep(d)` after `use std::thread::sleep;` is not, nor is a call through a renamed import\n  \
           (`use symmem as sm; sm::synchronize()`) or through a function pointer bound outside the body.\n\
         * Closures in the body are checked (they run inside the window when called there). Nested `fn` items, impl\n  \
           blocks and other items inside the body are not: they are separate functions; annotate them if they should be\n  \
           checked.\n\
         * Macro arguments are checked when they parse as comma-separated expressions (`assert!`, `println!`,\n  \
           `format!`, `vec![..]`, ...); other macro bodies are opaque.\n\
         * Code reached through calls (other functions, trait methods) is not inspected: the runtime refuses the same\n  \
           operations during capture with `Error::NotAllowedDuringCapture`, so what the macro misses fails at run time\n  \
           with a message instead of corrupting a graph.\n\
         * `.await` is fine in an annotated `async fn`: the macro routes each poll of its body (the window guard is\n  \
           never held across an `.await`), and `async` blocks inside an `async fn` are checked like the body. In a\n  \
           synchronous body an `async` block or closure is flagged by `deferred-async`.\n\n\
         ## Escape hatch\n\n\
         `#[symmem::allow_capture_unfit(reason = \"...\")]` on a statement of a checked body silences every rule inside that\n\
         statement. It needs a non-empty reason, is removed from the expansion, and is an error where it has no effect (on a\n\
         statement that breaks no rule, in a `capture = \"never\"` function, in a nested item, or on something other than a\n\
         statement). `capture = \"never\"` turns the checks off for a whole function; the function then panics if it is\n\
         called during capture. See [macro.md](macro.md#escape-hatch).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_unique_and_texts_shaped() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        for r in RULES {
            assert!(!r.patterns.is_empty(), "{}", r.id);
            assert!(
                !r.reason.ends_with('.') && !r.fix.ends_with('.'),
                "{}",
                r.id
            );
            for p in r.patterns {
                if let Pattern::Function { path, min } | Pattern::Type { path, min } = p {
                    assert!(*min >= 1 && *min <= path.split("::").count(), "{path}");
                }
            }
        }
    }

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

    /// `docs/capture-rules.md` is the rendering of the table (`SYMMEM_BLESS=1` rewrites it).
    #[test]
    fn capture_rules_doc_in_sync() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/capture-rules.md");
        let want = render_markdown();
        if std::env::var_os("SYMMEM_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date with macros/src/rules.rs: run `SYMMEM_BLESS=1 cargo test -p symmem-macros`",
            path.display()
        );
    }
}
