//! The documentation of the capture-unfit table: `docs/capture-rules.md`, rendered from
//! [`crate::capture::RULES`] and the refusal tables of [`crate::refusals`].

use crate::capture::{Pattern, RULES};
use crate::refusals::{NESTING, REFUSALS};

/// `docs/capture-rules.md`, rendered from [`RULES`] (`tests/doc_sync.rs` keeps the file in
/// step: `SYMMEM_BLESS=1 cargo test -p symmem-rules` rewrites it).
pub fn capture_rules_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from rules/src/capture.rs by `SYMMEM_BLESS=1 cargo test -p symmem-rules`; do not edit by hand. -->\n\n\
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
           (a path whose second-to-last segment starts with an upper-case letter, or a qualified path). `.par_*(..)`\n  \
           matches every method whose name starts with `par_` (rayon's `par_iter`, `par_chunks`, `par_sort_by`,\n  \
           `par_bridge`, `par_extend`, ...).\n\
         * Some method names are shared with unrelated APIs; the rule still applies, since the receiver's type is not\n  \
           known, and the escape hatch (or `capture = \"never\"`) is the answer for a call that is fine:\n  \
           * `.spawn(..)` (with `.spawn_fifo`, `.spawn_broadcast`, `.spawn_scoped`: rule `other-thread`;\n    \
             `.spawn_blocking`, `.spawn_local`: rule `other-task`) is flagged whatever the receiver: a thread scope's\n    \
             `s.spawn(..)`, `thread::Builder`, rayon's `ThreadPool`, tokio's `Handle`, `Runtime` and `JoinSet` all run\n    \
             code elsewhere. One receiver is recognised as harmless: a chain rooted in `Command::new(..)`\n    \
             (`Command::new(\"ls\").arg(\"-l\").spawn()` starts a process, not a thread); `cmd.spawn()` on a `Command`\n    \
             bound earlier is flagged.\n  \
           * `.install(..)` is rayon's `ThreadPool::install` (symmem's `RankContext::install` is an associated function,\n    \
             caught by `start-ranks`).\n  \
           * `.replay(..)` is flagged whatever the receiver, as symmem's `Graph::replay` is the one the runtime refuses\n    \
             during capture.\n\
         * Path rules match a path (called, or passed as a function value) when the path as written is a suffix of the\n  \
           rule's path at least as long as the shortest form listed: `thread::sleep(d)` and `std::thread::sleep(d)` are\n  \
           caught, `sleep(d)` after `use std::thread::sleep;` is not (nor `spawn(..)` or `capture(..)` imported by\n  \
           name), nor is a call through a renamed import (`use symmem as sm; sm::synchronize()`) or through a function\n  \
           pointer bound outside the body.\n\
         * A call inside the arguments (or the receiver) of a call already flagged is not reported again for the same\n  \
           rule: `thread::scope(|s| { s.spawn(..); })` is one error, on `thread::scope(..)`. Inside a call flagged for\n  \
           running code on another thread or task, nothing else of that kind is reported either:\n  \
           `tokio::spawn(async move { .. })` is one error, not two. Other rules inside are reported.\n\
         * Closures in the body are checked (they run inside the window when called there). Nested `fn` items, impl\n  \
           blocks and other items inside the body are not: they are separate functions; annotate them if they should be\n  \
           checked.\n\
         * Macro arguments are checked as expressions when they parse as comma-separated expressions (`assert!`,\n  \
           `println!`, `format!`, `vec![..]`, ...). Otherwise (`tracing::debug!(target: \"x\", ?v = b.to_host_vec())`,\n  \
           `matches!(x, Some(v) if v.synchronize().is_ok())`, any other macro syntax) their tokens are scanned, in every\n  \
           nested group: `. name (..)` is checked as a method call, `path (..)` as a call of `path`, and `async { .. }`,\n  \
           `async move { .. }`, `async |..|` as `async` code. What a macro expands to beyond the tokens written in the\n  \
           invocation is not seen.\n\
         * Statements and expressions behind `#[cfg(..)]` are checked, whatever the configuration being compiled: a\n  \
           configuration where they are compiled may run them during capture (the macro sees them before the compiler\n  \
           drops them). Their errors end with a note naming the `cfg` predicate; the escape hatch works on them as on\n  \
           any statement.\n\
         * The `disabled = <expr>` argument is checked like the body, since it is evaluated at every call, also during\n  \
           capture: its errors point into the expression and end with a note saying so. The escape hatch cannot be\n  \
           used inside it (it is an error there): compute the flag before the call and pass it in.\n\
         * `.await` is fine in an annotated `async fn`: the macro routes each poll of its body (the window guard is\n  \
           never held across an `.await`), and `async` blocks inside an `async fn` are checked like the body. In a\n  \
           synchronous body an `async` block or closure is flagged by `deferred-async`.\n\n\
         ## Escape hatch\n\n\
         `#[symmem::allow_capture_unfit(reason = \"...\")]` on a statement of a checked body silences every rule inside that\n\
         statement. It needs a non-empty reason, is removed from the expansion, and is an error where it has no effect (on a\n\
         statement that breaks no rule, in a `capture = \"never\"` function, in a nested item, in the `disabled` argument, or\n\
         on something other than a statement). `capture = \"never\"` turns the checks off for a whole function; the\n\
         function then panics if it is called during capture. See [macro.md](macro.md#escape-hatch).\n\n\
         ## What the checks miss\n\n\
         The checks see only the body as written. What they miss falls in two groups: operations the runtime refuses\n\
         while a graph is captured, which fail at run time with a message, and the rest (escapes from the window, host\n\
         work symmem does not own), which nothing catches.\n\n\
         ### Caught at run time\n\n\
         The operations below, reached in any way (through another function, a trait method, a renamed import, code a\n\
         macro generates, a statement under the escape hatch), are refused while the calling thread captures a graph:\n\
         they return `Error::NotAllowedDuringCapture` naming the operation, and the capture fails instead of recording a\n\
         broken graph. A `capture = \"never\"` function called during capture panics with a message naming it. Each\n\
         refusal is also rejected at compile time by the rule listed when it is called in a checked body\n\
         (`rules/tests/drift.rs` keeps the tables in step).\n\n\
         | Refused operation | Reached by | Rule |\n\
         |---|---|---|\n",
    );
    for r in REFUSALS {
        out.push_str(&format!("| `{}` | `{}` | `{}` |\n", r.op, r.path, r.rule));
    }
    for n in NESTING {
        out.push_str(&format!("| `{}` | `{}` | `{}` |\n", n.op, n.path, n.rule));
    }
    out.push_str(
        "\n### Not caught\n\n\
         The runtime cannot tell these from correct code, so a miss here is silent: the allocations are served, from the\n\
         wrong pool, or work runs outside the graph.\n\n\
         * Deferred work returned from the function: a future (a returned `async` block, or an `impl Future` built by a\n  \
           callee), a closure, a lazy iterator (`v.iter().map(|n| symmem::alloc::<f32>(*n))` returned unconsumed). It\n  \
           runs after the function has returned and its window has closed, so its allocations come from the default\n  \
           pool, not the group's symmetric pool. Consume it in the body, or annotate the code it runs.\n\
         * Work on other threads or tasks reached through calls: a helper that spawns a thread or a task, a callee\n  \
           that uses a rayon parallel iterator or a thread pool, a callback run by a worker. Routing and capture are per\n  \
           thread: on that thread nothing is routed to the group, and the refusals above do not apply (that thread is\n  \
           not capturing). The same holds for a thread or task spawned in the body by a bare imported name\n  \
           (`spawn(..)` after `use std::thread::spawn;`).\n\
         * Host work that symmem does not own, reached through a call or a bare imported name: a host sleep\n  \
           (`sleep(d)`) is simply not part of the graph; a copy or synchronisation made through cudarc or the CUDA API\n  \
           directly is not refused by symmem (CUDA itself fails a capture that synchronises, while an asynchronous\n  \
           copy is recorded, and a replay does not refresh the host data).\n\
         * Allocations through other allocators: device memory taken from cudarc directly (`CudaStream::alloc*`,\n  \
           `memcpy_stod`, ...), raw CUDA driver calls, or another crate's allocator. The window routes only symmem's\n  \
           allocations (`symmem::alloc*` and the operations that allocate symmem buffers).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page lists every run-time refusal (nesting ones included) with its rule, and says
    /// what nothing catches instead of promising that every miss fails at run time (issue 13).
    #[test]
    fn says_what_is_caught_at_run_time_and_what_is_not() {
        let page = capture_rules_markdown();
        for (op, path, rule) in REFUSALS
            .iter()
            .map(|r| (r.op, r.path, r.rule))
            .chain(NESTING.iter().map(|n| (n.op, n.path, n.rule)))
        {
            let row = format!("| `{op}` | `{path}` | `{rule}` |");
            assert!(page.contains(&row), "missing row {row}");
        }
        let caught = page.find("### Caught at run time").expect("caught section");
        let not_caught = page.find("### Not caught").expect("not-caught section");
        assert!(caught < not_caught);
        for miss in [
            "Deferred work returned from the function",
            "a future",
            "a closure",
            "a lazy iterator",
            "Work on other threads or tasks reached through calls",
            "Allocations through other allocators",
        ] {
            assert!(
                page[not_caught..].contains(miss),
                "not-caught list lacks {miss:?}"
            );
        }
        assert!(!page.contains("what the macro misses fails at run time"));
    }
}
