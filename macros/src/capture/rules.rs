//! Which capture rule a piece of the body breaks: the table of `symmem_rules::capture` applied
//! to the syntax of a method call, a path (called or used as a value), and an `async` block or
//! closure, with the tokens the error goes on.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;
use symmem_rules::capture::{self as table, Pattern, Rule, RULES};
use syn::{ExprCall, ExprMethodCall, ExprPath};

/// A call or path that breaks a rule.
pub(crate) struct Violation {
    /// The rule.
    pub(crate) rule: &'static Rule,
    /// Where the error goes.
    pub(crate) tokens: TokenStream,
    /// The offending code as the message shows it, e.g. "`.synchronize()`".
    pub(crate) what: String,
}

impl Violation {
    /// The error message.
    pub(crate) fn message(&self) -> String {
        table::message(self.rule, &self.what)
    }
}

/// The rule a method call breaks, if any (the error spans the method name and its parentheses).
pub(crate) fn method_call(m: &ExprMethodCall) -> Option<Violation> {
    let name = m.method.to_string();
    let rule = RULES.iter().find(|rule| {
        rule.patterns
            .iter()
            .any(|pat| matches!(pat, Pattern::Method(want) if *want == name))
    })?;
    let mut close = Group::new(Delimiter::Parenthesis, TokenStream::new());
    close.set_span(m.paren_token.span.join());
    let tokens: TokenStream = [m.method.to_token_stream(), TokenTree::Group(close).into()]
        .into_iter()
        .collect();
    let args = if m.args.is_empty() { "()" } else { "(..)" };
    Some(Violation {
        rule,
        tokens,
        what: format!("`.{name}{args}`"),
    })
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
    let last = segs.last()?;
    let typed = p.qself.is_some()
        || (segs.len() >= 2 && segs[segs.len() - 2].starts_with(|c: char| c.is_ascii_uppercase()));
    let rule = RULES.iter().find(|rule| {
        rule.patterns.iter().any(|pat| match pat {
            Pattern::Function { path, min } => table::suffix_matches(&segs, path, *min),
            Pattern::Type { path, min } => {
                table::suffix_matches(&segs, path, *min)
                    || table::suffix_matches(&segs[..segs.len() - 1], path, *min)
            }
            Pattern::Method(name) => typed && last == name,
            Pattern::AsyncBlock | Pattern::AsyncClosure => false,
        })
    })?;
    let written = if p.qself.is_some() {
        format!("<..>::{}", segs.join("::"))
    } else {
        segs.join("::")
    };
    let (tokens, what) = match call {
        Some(c) => {
            let args = if c.args.is_empty() { "()" } else { "(..)" };
            (c.to_token_stream(), format!("`{written}{args}`"))
        }
        None => (p.to_token_stream(), format!("`{written}`")),
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
