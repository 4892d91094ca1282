//! The documentation of the capture-unfit table: `docs/capture-rules.md`, rendered from
//! [`crate::capture::RULES`].

use crate::capture::{Pattern, RULES};
use crate::refusals::REFUSALS;

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
         called during capture. See [macro.md](macro.md#escape-hatch).\n\n\
         ## Refused at run time\n\n\
         What the checks cannot see (a call reached through another function) the runtime refuses while a graph is\n\
         captured, with `Error::NotAllowedDuringCapture` naming the operation. Each refusal is rejected at compile time\n\
         by the rule listed when it is called in a checked body (`rules/tests/drift.rs` keeps the two tables in step).\n\n\
         | Refused operation | Reached by | Rule |\n\
         |---|---|---|\n",
    );
    for r in REFUSALS {
        out.push_str(&format!("| `{}` | `{}` | `{}` |\n", r.op, r.path, r.rule));
    }
    out
}
