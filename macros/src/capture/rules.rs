//! Which capture rule a piece of the body breaks: the table of `symmem_rules::capture` applied
//! to the syntax of a method call, a path (called or used as a value), an `async` block or
//! closure, and the same shapes found in the tokens of a macro whose arguments are not
//! expressions; with the tokens the error goes on.

use proc_macro2::{Delimiter, Group, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use symmem_rules::capture::{self as table, Pattern, Rule, RULES};
use syn::{Expr, ExprCall, ExprMethodCall, ExprPath};

/// A call or path that breaks a rule.
pub(crate) struct Violation {
    /// The rule.
    pub(crate) rule: &'static Rule,
    /// Where the error goes.
    pub(crate) tokens: TokenStream,
    /// The offending code as the message shows it, e.g. "`.synchronize()`".
    pub(crate) what: String,
}

/// The rule a method call breaks, if any (the error spans the method name and its parentheses).
///
/// `.spawn()` on a chain rooted in `Command::new(..)` starts a process, not a thread: it is not
/// flagged (any other `.spawn(..)` is, whatever its receiver).
pub(crate) fn method_call(m: &ExprMethodCall) -> Option<Violation> {
    let name = m.method.to_string();
    if name == "spawn" && starts_a_process(&m.receiver) {
        return None;
    }
    let mut close = Group::new(Delimiter::Parenthesis, TokenStream::new());
    close.set_span(m.paren_token.span.join());
    method(&m.method, close, m.args.is_empty())
}

/// The rule a method call found in macro tokens (`. name (..)`) breaks, if any.
pub(crate) fn method_tokens(name: &Ident, args: &Group) -> Option<Violation> {
    let mut close = Group::new(Delimiter::Parenthesis, TokenStream::new());
    close.set_span(args.span());
    method(name, close, args.stream().is_empty())
}

fn method(name: &Ident, close: Group, no_args: bool) -> Option<Violation> {
    let text = name.to_string();
    let text = text.strip_prefix("r#").unwrap_or(&text);
    let rule = table::rule_for_method(text)?;
    let tokens: TokenStream = [name.to_token_stream(), TokenTree::Group(close).into()]
        .into_iter()
        .collect();
    let args = if no_args { "()" } else { "(..)" };
    Some(Violation {
        rule,
        tokens,
        what: format!("`.{text}{args}`"),
    })
}

/// Whether `e` is a method chain rooted in a call of `Command::new` (`std::process::Command`,
/// `tokio::process::Command`, ...).
fn starts_a_process(mut e: &Expr) -> bool {
    loop {
        match e {
            Expr::MethodCall(m) => e = &m.receiver,
            Expr::Paren(p) => e = &p.expr,
            Expr::Reference(r) => e = &r.expr,
            Expr::Call(c) => {
                let Expr::Path(p) = &*c.func else {
                    return false;
                };
                let segs: Vec<String> = p
                    .path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                return segs.ends_with(&["Command".to_string(), "new".to_string()]);
            }
            _ => return false,
        }
    }
}

/// The rule a path breaks, if any: `call` is the whole call when the path is called.
///
/// A method rule also matches a method called through a type path: `Type::name(..)` (the
/// second-to-last segment starts with an upper-case letter) or `<T as Trait>::name(..)`.
pub(crate) fn path(p: &ExprPath, call: Option<&ExprCall>) -> Option<Violation> {
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let (tokens, args) = match call {
        Some(c) => (c.to_token_stream(), Some(c.args.is_empty())),
        None => (p.to_token_stream(), None),
    };
    path_segments(segs, p.qself.is_some(), tokens, args)
}

/// The rule a path found in macro tokens breaks when it is called (`path (..)`): `segs` its
/// segments without generics, `tokens` the path and its parentheses (where the error goes).
pub(crate) fn path_tokens(
    segs: Vec<String>,
    tokens: TokenStream,
    args: &Group,
) -> Option<Violation> {
    path_segments(segs, false, tokens, Some(args.stream().is_empty()))
}

/// `args`: `None` for a path used as a value, else whether the call has no arguments.
fn path_segments(
    segs: Vec<String>,
    qualified: bool,
    tokens: TokenStream,
    args: Option<bool>,
) -> Option<Violation> {
    let typed = qualified
        || (segs.len() >= 2 && segs[segs.len() - 2].starts_with(|c: char| c.is_ascii_uppercase()));
    let rule = table::rule_for_path(&segs, typed)?;
    let written = if qualified {
        format!("<..>::{}", segs.join("::"))
    } else {
        segs.join("::")
    };
    let what = match args {
        Some(true) => format!("`{written}()`"),
        Some(false) => format!("`{written}(..)`"),
        None => format!("`{written}`"),
    };
    Some(Violation { rule, tokens, what })
}

/// The rule an `async` block (`closure: false`) or closure of a synchronous body breaks, with
/// the tokens to put the error on.
pub(crate) fn deferred(closure: bool, tokens: TokenStream) -> Option<Violation> {
    let rule = RULES.iter().find(|r| {
        r.patterns.iter().any(|p| match p {
            Pattern::AsyncBlock => !closure,
            Pattern::AsyncClosure => closure,
            _ => false,
        })
    })?;
    let what = if closure {
        "an `async` closure"
    } else {
        "an `async` block"
    };
    Some(Violation {
        rule,
        tokens,
        what: what.to_string(),
    })
}
