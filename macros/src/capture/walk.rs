//! The body walk: visits a checked body (closures and macro arguments included, nested items
//! not), reports what [`super::rules`] flags unless an escape hatch covers it, and removes
//! every escape hatch from the output. The same walk checks the `disabled = <expr>` argument.
//!
//! * A call inside the arguments (or the receiver) of a call already flagged for a rule is not
//!   reported again for the same rule: `thread::scope(|s| { s.spawn(..); })` is one error; nor,
//!   inside a call flagged for running code on another thread or task, for another such rule
//!   or an `async` block: `tokio::spawn(async move { .. })` is one error.
//! * Code behind `#[cfg(..)]` is checked like the rest (another configuration compiles it); its
//!   errors say so.
//! * Macro arguments are walked as expressions when they parse as such, else their tokens are
//!   scanned for `. name (..)` method calls, `path (..)` calls and `async` blocks.

use super::hatch;
use super::rules::{self, Violation};
use super::scope::{Mode, Scope};
use crate::errors::Errors;
use crate::syntax::{expr_attrs_mut, has_symmetric_memory, item_attrs_mut, HATCH};
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::quote;
use symmem_rules::capture::{self as table, Category, Rule};
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, Item, Macro, Stmt, Token};

/// Walk `block` (the body of a function, `is_async` when it is an `async fn`) in `mode`,
/// removing escape hatches and pushing rule violations and misuse to `errors`.
pub(crate) fn check_body(block: &mut Block, mode: Mode, is_async: bool, errors: &mut Errors) {
    Walker::new(mode, is_async, false, errors).visit_block_mut(block);
}

/// Check the `disabled = <expr>` argument of a function walked in `mode` (`is_async`: the
/// function is an `async fn`), pushing rule violations to `errors`.
///
/// The expression is evaluated at every call, also while a graph is captured, so the rules of
/// the body apply to it and its errors point into it. An escape hatch in it is an error (it
/// would stay in the expansion, where nothing removes it).
pub(crate) fn check_disabled(expr: &Expr, mode: Mode, is_async: bool, errors: &mut Errors) {
    let mut expr = expr.clone();
    Walker::new(mode, is_async, true, errors).visit_expr_mut(&mut expr);
}

/// An escape hatch in force over one statement.
struct Frame {
    attr: Attribute,
    used: bool,
}

struct Walker<'e> {
    scope: Scope,
    is_async: bool,
    /// Walking the `disabled` argument, not the body.
    in_disabled: bool,
    frames: Vec<Frame>,
    /// Rules already reported on an enclosing call: what they cover is not reported again
    /// inside it ([`covers`]).
    quiet: Vec<&'static Rule>,
    /// The predicates of the `#[cfg(..)]` attributes the walk is inside, innermost last.
    cfg: Vec<String>,
    errors: &'e mut Errors,
}

impl<'e> Walker<'e> {
    fn new(mode: Mode, is_async: bool, in_disabled: bool, errors: &'e mut Errors) -> Self {
        Walker {
            scope: Scope::of(mode),
            is_async,
            in_disabled,
            frames: Vec::new(),
            quiet: Vec::new(),
            cfg: Vec::new(),
            errors,
        }
    }

    fn with_scope(&mut self, scope: Scope, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.scope, scope);
        let frames = std::mem::take(&mut self.frames);
        f(self);
        self.frames = frames;
        self.scope = saved;
    }

    fn silent(&self) -> bool {
        self.scope == Scope::Silent
    }

    /// Report a rule violation, unless the scope is unchecked, an escape hatch covers it or an
    /// enclosing flagged call covers it ([`covers`]). Returns the rule broken (in a checked
    /// scope, reported or not), so that the call's inside can be quiet for it.
    fn report(&mut self, violation: Option<Violation>) -> Option<&'static Rule> {
        let v = violation?;
        if self.scope != Scope::Checked {
            return None;
        }
        if let Some(frame) = self.frames.last_mut() {
            frame.used = true;
            return Some(v.rule);
        }
        if self.quiet.iter().any(|q| covers(q, v.rule)) {
            return Some(v.rule);
        }
        let mut message = if self.in_disabled {
            table::message_in_disabled(v.rule, &v.what)
        } else {
            table::message(v.rule, &v.what)
        };
        if let Some(predicate) = self.cfg.last() {
            message.push('\n');
            message.push_str(&table::cfg_note(predicate));
        }
        self.errors.spanned(&v.tokens, message);
        Some(v.rule)
    }

    /// Run `f` with `rule` (if any) quiet: an enclosing call broke it.
    fn quiet_for(&mut self, rule: Option<&'static Rule>, f: impl FnOnce(&mut Self)) {
        let Some(rule) = rule else {
            return f(self);
        };
        self.quiet.push(rule);
        f(self);
        self.quiet.pop();
    }

    /// Run `f` inside the `#[cfg(..)]` attributes among `attrs`.
    fn under_cfg(&mut self, attrs: &[Attribute], f: impl FnOnce(&mut Self)) {
        let before = self.cfg.len();
        self.cfg.extend(cfg_predicates(attrs));
        f(self);
        self.cfg.truncate(before);
    }

    /// Remove escape hatches from a position where they do not belong, with an error each.
    fn strip_misplaced(&mut self, attrs: Option<&mut Vec<Attribute>>, place: &str) {
        if self.in_disabled {
            if let Some(attrs) = attrs {
                for attr in hatch::take(attrs) {
                    self.hatch_in_disabled(&attr);
                }
            }
            return;
        }
        let report = !self.silent();
        hatch::strip_misplaced(attrs, place, report, self.errors);
    }

    /// Report an escape hatch inside the `disabled` argument.
    fn hatch_in_disabled(&mut self, attr: &Attribute) {
        if !self.silent() {
            self.errors.spanned(
                attr,
                format!(
                    "`#[{HATCH}]` cannot be used in `disabled = ..`: the expression is evaluated at every call, also while a CUDA graph is captured, and the hatch would stay in the expansion; remove it, and compute the flag before the call (or turn the checks off for the function with `capture = \"never\"`)"
                ),
            );
        }
    }

    /// Walk an `async` block or closure: in a synchronous body it is flagged, and its inside
    /// runs after the window has closed.
    fn deferred(&mut self, closure: bool, tokens: proc_macro2::TokenStream) -> Scope {
        if self.is_async {
            return self.scope;
        }
        self.report(rules::deferred(closure, tokens));
        self.scope.deferred()
    }

    /// Check the arguments of a macro: walked as expressions when they parse as
    /// comma-separated expressions (or `a; b`, as in `vec![x; n]`), else scanned as tokens.
    fn check_macro(&mut self, mac: &Macro) {
        let exprs: Vec<Expr> = if let Ok(list) =
            mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        {
            list.into_iter().collect()
        } else if let Ok(pair) = mac.parse_body_with(|input: syn::parse::ParseStream| {
            let a: Expr = input.parse()?;
            input.parse::<Token![;]>()?;
            let b: Expr = input.parse()?;
            Ok(vec![a, b])
        }) {
            pair
        } else {
            self.scan_tokens(mac.tokens.clone());
            return;
        };
        for mut e in exprs {
            self.visit_expr_mut(&mut e);
        }
    }

    /// Scan macro tokens that are not expressions (`tracing::debug!(target: "x", ?v =
    /// b.to_host_vec())`, `matches!(x, Some(v) if v.synchronize().is_ok())`): `. name (..)`
    /// method calls, `path (..)` calls and `async` blocks, in every group.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let toks: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                TokenTree::Group(g) => {
                    self.scan_tokens(g.stream());
                    i += 1;
                }
                TokenTree::Punct(p) if p.as_char() == '.' => {
                    if let Some(TokenTree::Ident(name)) = toks.get(i + 1) {
                        let j = skip_turbofish(&toks, i + 2);
                        if let Some(TokenTree::Group(g)) = toks.get(j) {
                            if g.delimiter() == Delimiter::Parenthesis {
                                self.report(rules::method_tokens(name, g));
                            }
                        }
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                TokenTree::Ident(id) if id == "async" => {
                    let mut j = i + 1;
                    if matches!(toks.get(j), Some(TokenTree::Ident(m)) if m == "move") {
                        j += 1;
                    }
                    let head = || toks[i..j].iter().cloned().collect::<TokenStream>();
                    match toks.get(j) {
                        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                            let scope = self.deferred(false, head());
                            let inner = g.stream();
                            self.with_scope(scope, |w| w.scan_tokens(inner));
                            i = j + 1;
                        }
                        Some(TokenTree::Punct(p)) if p.as_char() == '|' => {
                            self.deferred(true, head());
                            i = j;
                        }
                        _ => i += 1,
                    }
                }
                TokenTree::Ident(_) => {
                    let after_fn =
                        i > 0 && matches!(&toks[i - 1], TokenTree::Ident(k) if k == "fn");
                    let (segs, j) = path_at(&toks, i);
                    match toks.get(j) {
                        Some(TokenTree::Group(g))
                            if g.delimiter() == Delimiter::Parenthesis && !after_fn =>
                        {
                            let tokens: TokenStream = toks[i..=j].iter().cloned().collect();
                            self.report(rules::path_tokens(segs, tokens, g));
                        }
                        _ => {}
                    }
                    i = j.max(i + 1);
                }
                _ => i += 1,
            }
        }
    }
}

/// Whether a call flagged for `outer` covers a violation of `inner` inside it: the same rule,
/// or, for a call that runs code on another thread or task, any code it runs elsewhere or later
/// (`tokio::spawn(async move { .. })` is one error, not two).
fn covers(outer: &Rule, inner: &Rule) -> bool {
    outer.id == inner.id
        || (outer.category == Category::OtherThread
            && matches!(inner.category, Category::OtherThread | Category::Deferred))
}

/// The path starting at `toks[i]` (an identifier): its segments (without generics) and the
/// index after it.
fn path_at(toks: &[TokenTree], i: usize) -> (Vec<String>, usize) {
    let mut segs = Vec::new();
    let mut j = i;
    while let Some(TokenTree::Ident(id)) = toks.get(j) {
        let text = id.to_string();
        segs.push(text.strip_prefix("r#").unwrap_or(&text).to_string());
        j += 1;
        let k = skip_turbofish(toks, j);
        if k != j {
            j = k; // generics end the path: `f::<T>(..)`
            break;
        }
        if is_path_sep(toks, j) && matches!(toks.get(j + 2), Some(TokenTree::Ident(_))) {
            j += 2;
        } else {
            break;
        }
    }
    (segs, j)
}

/// Whether `toks[j..]` starts with `::`.
fn is_path_sep(toks: &[TokenTree], j: usize) -> bool {
    matches!(
        (toks.get(j), toks.get(j + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// The index after a turbofish `::<..>` at `toks[j]`, or `j` when there is none.
fn skip_turbofish(toks: &[TokenTree], j: usize) -> usize {
    if !is_path_sep(toks, j)
        || !matches!(toks.get(j + 2), Some(TokenTree::Punct(p)) if p.as_char() == '<')
    {
        return j;
    }
    let mut depth = 0usize;
    let mut k = j + 2;
    while let Some(t) = toks.get(k) {
        if let TokenTree::Punct(p) = t {
            let arrow = p.as_char() == '>'
                && matches!(&toks[k - 1], TokenTree::Punct(q) if q.as_char() == '-' && q.spacing() == Spacing::Joint);
            match p.as_char() {
                '<' => depth += 1,
                '>' if !arrow => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return k + 1;
                    }
                }
                _ => {}
            }
        }
        k += 1;
    }
    k
}

/// The predicates of the `#[cfg(..)]` attributes among `attrs`, as written.
fn cfg_predicates(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .filter_map(|a| match &a.meta {
            syn::Meta::List(list) => Some(list.tokens.to_string()),
            _ => None,
        })
        .collect()
}

/// The `#[cfg(..)]` predicates on a statement (for an expression statement, on its leftmost
/// operand, where the parser puts the statement's outer attributes).
fn statement_cfgs(stmt: &Stmt) -> Vec<String> {
    match stmt {
        Stmt::Local(l) => cfg_predicates(&l.attrs),
        Stmt::Macro(m) => cfg_predicates(&m.attrs),
        Stmt::Item(_) => Vec::new(),
        Stmt::Expr(e, _) => {
            let mut out = Vec::new();
            let mut e = e;
            loop {
                out.extend(cfg_predicates(expr_attrs(e)));
                e = match e {
                    Expr::Binary(b) => &b.left,
                    Expr::MethodCall(m) => &m.receiver,
                    Expr::Try(t) => &t.expr,
                    Expr::Field(f) => &f.base,
                    Expr::Index(i) => &i.expr,
                    Expr::Cast(c) => &c.expr,
                    Expr::Await(a) => &a.base,
                    Expr::Assign(a) => &a.left,
                    Expr::Call(c) => &c.func,
                    Expr::Range(syn::ExprRange { start: Some(s), .. }) => s,
                    _ => break,
                };
            }
            out
        }
    }
}

/// The outer attributes of an expression (read-only).
fn expr_attrs(e: &Expr) -> &[Attribute] {
    macro_rules! attrs {
        ($($v:ident)*) => {
            match e {
                $(Expr::$v(x) => &x.attrs,)*
                _ => &[],
            }
        };
    }
    attrs!(Array Assign Async Await Binary Block Break Call Cast Closure Const Continue Field
        ForLoop Group If Index Infer Let Lit Loop Macro Match MethodCall Paren Path Range
        Reference Repeat Return Struct Try TryBlock Tuple Unary Unsafe While Yield)
}

impl Walker<'_> {
    /// The body of [`VisitMut::visit_expr_mut`], inside the expression's `#[cfg(..)]`s.
    fn visit_expr_inner(&mut self, e: &mut Expr) {
        match e {
            Expr::MethodCall(m) => {
                let rule = self.report(rules::method_call(m));
                self.quiet_for(rule, |w| visit_mut::visit_expr_method_call_mut(w, m));
            }
            Expr::Call(c) => {
                if let Expr::Path(p) = &*c.func {
                    let rule = self.report(rules::path(p, Some(&*c)));
                    self.quiet_for(rule, |w| {
                        for arg in c.args.iter_mut() {
                            w.visit_expr_mut(arg);
                        }
                    });
                } else {
                    visit_mut::visit_expr_call_mut(self, c);
                }
            }
            Expr::Path(p) => {
                self.report(rules::path(p, None));
            }
            Expr::Async(a) => {
                let (kw, mv) = (&a.async_token, &a.capture);
                let scope = self.deferred(false, quote!(#kw #mv));
                self.with_scope(scope, |w| visit_mut::visit_expr_async_mut(w, a));
            }
            Expr::Closure(c) if c.asyncness.is_some() => {
                let (kw, mv, or1, or2) = (&c.asyncness, &c.capture, &c.or1_token, &c.or2_token);
                let scope = self.deferred(true, quote!(#kw #mv #or1 #or2));
                self.with_scope(scope, |w| visit_mut::visit_expr_closure_mut(w, c));
            }
            Expr::Macro(m) => {
                let mac = m.mac.clone();
                self.check_macro(&mac);
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }
}

impl VisitMut for Walker<'_> {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let cfgs = statement_cfgs(stmt);
        let hatches = hatch::take_from_statement(stmt);
        let on_item = matches!(stmt, Stmt::Item(_));
        let mut pushed = false;
        for (i, attr) in hatches.into_iter().enumerate() {
            if self.in_disabled {
                self.hatch_in_disabled(&attr);
                continue;
            }
            if self.silent() || !hatch::validate(&attr, self.errors) {
                // Reported as malformed; it still covers its statement, so that the violation
                // it was meant for is not reported on top.
                if i == 0 && !on_item && self.scope == Scope::Checked {
                    self.frames.push(Frame { attr, used: true });
                    pushed = true;
                }
                continue;
            }
            match hatch::problem(i, on_item, self.scope) {
                Some(message) => self.errors.spanned(&attr, message),
                None if self.scope == Scope::Checked => {
                    self.frames.push(Frame { attr, used: false });
                    pushed = true;
                }
                None => {}
            }
        }
        let before = self.cfg.len();
        self.cfg.extend(cfgs);
        visit_mut::visit_stmt_mut(self, stmt);
        self.cfg.truncate(before);
        if pushed {
            if let Some(frame) = self.frames.pop() {
                if !frame.used {
                    hatch::unused(&frame.attr, self.errors);
                }
            }
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        self.strip_misplaced(expr_attrs_mut(e), "an expression inside a statement");
        let cfgs = cfg_predicates(expr_attrs(e));
        let before = self.cfg.len();
        self.cfg.extend(cfgs);
        self.visit_expr_inner(e);
        self.cfg.truncate(before);
    }

    fn visit_stmt_macro_mut(&mut self, m: &mut syn::StmtMacro) {
        self.strip_misplaced(Some(&mut m.attrs), "a macro");
        let mac = m.mac.clone();
        self.check_macro(&mac);
    }

    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        self.strip_misplaced(Some(&mut l.attrs), "a `let` here");
        visit_mut::visit_local_mut(self, l);
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        self.strip_misplaced(Some(&mut arm.attrs), "a match arm");
        let attrs = arm.attrs.clone();
        self.under_cfg(&attrs, |w| visit_mut::visit_arm_mut(w, arm));
    }

    fn visit_field_value_mut(&mut self, f: &mut syn::FieldValue) {
        self.strip_misplaced(Some(&mut f.attrs), "a struct field");
        let attrs = f.attrs.clone();
        self.under_cfg(&attrs, |w| visit_mut::visit_field_value_mut(w, f));
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        if let Item::Fn(f) = item {
            if has_symmetric_memory(&f.attrs) {
                return; // expanded (and checked) by its own attribute
            }
        }
        self.strip_misplaced(item_attrs_mut(item), "an item");
        let scope = if self.silent() {
            Scope::Silent
        } else {
            Scope::NestedItem
        };
        self.with_scope(scope, |w| visit_mut::visit_item_mut(w, item));
    }

    fn visit_impl_item_fn_mut(&mut self, f: &mut syn::ImplItemFn) {
        if !has_symmetric_memory(&f.attrs) {
            self.strip_misplaced(Some(&mut f.attrs), "an item");
            visit_mut::visit_impl_item_fn_mut(self, f);
        }
    }

    fn visit_trait_item_fn_mut(&mut self, f: &mut syn::TraitItemFn) {
        if !has_symmetric_memory(&f.attrs) {
            self.strip_misplaced(Some(&mut f.attrs), "an item");
            visit_mut::visit_trait_item_fn_mut(self, f);
        }
    }
}
