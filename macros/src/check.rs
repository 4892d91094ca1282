//! The compile-time capture checks: a walk over the body that applies [`crate::rules::RULES`]
//! and handles the escape hatch `#[symmem::allow_capture_unfit(reason = "...")]` (validated,
//! honoured on statements, removed from the output, an error wherever it has no effect).

use crate::errors::Errors;
use crate::rules::{self, Pattern, Rule, RULES};
use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, ExprPath, Item, Macro, Meta, Stmt, Token};

/// The escape hatch's name (its last path segment: `symmem::allow_capture_unfit` or, imported,
/// `allow_capture_unfit`).
pub(crate) const HATCH: &str = "allow_capture_unfit";

/// How a body is to be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Apply the rules (`capture = "checked"`).
    Checked,
    /// No rules; an escape hatch is an error (`capture = "never"`).
    Never,
    /// The capture mode is unknown because its argument was wrong: only remove escape hatches,
    /// report nothing (the argument error is reported).
    Silent,
}

/// Why rules are not applied at some point of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Inside the checked body (closures included).
    Checked,
    /// The function has `capture = "never"`.
    Never,
    /// Inside a nested item (fn, impl, const...).
    NestedItem,
    /// Inside an `async` block or closure of a synchronous body.
    DeferredAsync,
    /// Capture mode unknown.
    Silent,
}

/// Whether `attr` is the escape hatch.
pub(crate) fn is_hatch(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == HATCH)
}

/// Whether `attrs` hold a `#[symmetric_memory]` (any path ending in `symmetric_memory`).
pub(crate) fn has_symmetric_memory(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "symmetric_memory")
    })
}

/// Walk `block` (the body of a function, `is_async` when it is an `async fn`) in `mode`,
/// removing escape hatches and pushing rule violations and misuse to `errors`.
pub(crate) fn check_body(block: &mut Block, mode: Mode, is_async: bool, errors: &mut Errors) {
    let scope = match mode {
        Mode::Checked => Scope::Checked,
        Mode::Never => Scope::Never,
        Mode::Silent => Scope::Silent,
    };
    let mut walker = Walker {
        scope,
        is_async,
        frames: Vec::new(),
        errors,
    };
    walker.visit_block_mut(block);
}

/// An escape hatch in force over one statement.
struct Frame {
    attr: Attribute,
    used: bool,
}

struct Walker<'e> {
    scope: Scope,
    is_async: bool,
    frames: Vec<Frame>,
    errors: &'e mut Errors,
}

const HATCH_FORM: &str =
    "#[symmem::allow_capture_unfit(reason = \"why this never runs during capture\")]";

impl Walker<'_> {
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

    /// Report a rule violation at `tokens`, unless an escape hatch covers it.
    fn violation(&mut self, rule: &Rule, tokens: TokenStream, what: &str) {
        if self.scope != Scope::Checked {
            return;
        }
        if let Some(frame) = self.frames.last_mut() {
            frame.used = true;
            return;
        }
        self.errors.spanned(tokens, rules::message(rule, what));
    }

    /// Validate an escape hatch's arguments; whether it is well formed.
    fn validate_hatch(&mut self, attr: &Attribute) -> bool {
        if self.silent() {
            return false;
        }
        let list = match &attr.meta {
            Meta::List(list) => list,
            _ => {
                self.errors.spanned(
                    attr,
                    format!("`#[{HATCH}]` needs a reason: write `{HATCH_FORM}`"),
                );
                return false;
            }
        };
        let parsed =
            list.parse_args_with(Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated);
        let Ok(items) = parsed else {
            self.errors.spanned(
                &list.tokens,
                format!(
                    "`#[{HATCH}]` takes one argument, `reason = \"...\"`: write `{HATCH_FORM}`"
                ),
            );
            return false;
        };
        let mut ok = true;
        let mut reason = None;
        for nv in &items {
            if !nv.path.is_ident("reason") {
                self.errors.spanned(
                    &nv.path,
                    format!("unknown argument of `#[{HATCH}]`: expected `reason = \"...\"`"),
                );
                ok = false;
            } else if reason.is_some() {
                self.errors
                    .spanned(&nv.path, "duplicate `reason`: give one reason");
                ok = false;
            } else {
                reason = Some(&nv.value);
            }
        }
        match reason {
            Some(Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            })) if s.value().trim().is_empty() => {
                self.errors.spanned(
                    s,
                    "the reason is empty: say why this statement never runs during capture (or why it is fine there)",
                );
                ok = false;
            }
            Some(Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(_),
                ..
            })) => {}
            Some(other) => {
                self.errors.spanned(
                    other,
                    "the reason must be a string literal: `reason = \"...\"`",
                );
                ok = false;
            }
            None if ok => {
                self.errors.spanned(
                    attr,
                    format!("`#[{HATCH}]` needs a reason: write `{HATCH_FORM}`"),
                );
                ok = false;
            }
            None => {}
        }
        ok
    }

    /// Remove escape hatches from a position where they do not belong, with an error each.
    fn strip_misplaced(&mut self, attrs: Option<&mut Vec<Attribute>>, place: &str) {
        let Some(attrs) = attrs else { return };
        for attr in take_hatches(attrs) {
            if !self.silent() {
                self.errors.spanned(
                    &attr,
                    format!(
                        "`#[{HATCH}]` goes on a statement of the body (a `let` or an expression statement), not on {place}: move it to the statement"
                    ),
                );
            }
        }
    }

    fn check_method(&mut self, m: &syn::ExprMethodCall) {
        let name = m.method.to_string();
        for rule in RULES {
            for pat in rule.patterns {
                if let Pattern::Method(want) = pat {
                    if *want == name {
                        let mut close = Group::new(Delimiter::Parenthesis, TokenStream::new());
                        close.set_span(m.paren_token.span.join());
                        let tokens: TokenStream =
                            [m.method.to_token_stream(), TokenTree::Group(close).into()]
                                .into_iter()
                                .collect();
                        let args = if m.args.is_empty() { "()" } else { "(..)" };
                        self.violation(rule, tokens, &format!("`.{name}{args}`"));
                        return;
                    }
                }
            }
        }
    }

    /// Check a path used as a value or called (`call` is the whole call when it is one).
    fn check_path(&mut self, p: &ExprPath, call: Option<&syn::ExprCall>) {
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let Some(last) = segs.last() else { return };
        let typed = p.qself.is_some()
            || (segs.len() >= 2
                && segs[segs.len() - 2].starts_with(|c: char| c.is_ascii_uppercase()));
        for rule in RULES {
            for pat in rule.patterns {
                let hit = match pat {
                    Pattern::Function { path, min } => rules::suffix_matches(&segs, path, *min),
                    Pattern::Type { path, min } => {
                        rules::suffix_matches(&segs, path, *min)
                            || rules::suffix_matches(&segs[..segs.len() - 1], path, *min)
                    }
                    Pattern::Method(name) => typed && last == name,
                    Pattern::AsyncBlock | Pattern::AsyncClosure => false,
                };
                if hit {
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
                    self.violation(rule, tokens, &what);
                    return;
                }
            }
        }
    }

    fn deferred(&mut self, pattern: fn(&Pattern) -> bool, tokens: TokenStream, what: &str) {
        if self.is_async {
            return;
        }
        if let Some(rule) = RULES.iter().find(|r| r.patterns.iter().any(pattern)) {
            self.violation(rule, tokens, what);
        }
    }

    /// Check the arguments of a macro when they parse as expressions.
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
            return;
        };
        for mut e in exprs {
            self.visit_expr_mut(&mut e);
        }
    }
}

impl VisitMut for Walker<'_> {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let hatches = stmt_hatches(stmt);
        let on_item = matches!(stmt, Stmt::Item(_));
        let mut pushed = false;
        for (i, attr) in hatches.into_iter().enumerate() {
            if !self.validate_hatch(&attr) {
                // Reported as malformed; it still covers its statement, so that the violation
                // it was meant for is not reported on top.
                if i == 0 && !on_item && self.scope == Scope::Checked {
                    self.frames.push(Frame { attr, used: true });
                    pushed = true;
                }
                continue;
            }
            let problem = if i > 0 {
                Some("duplicate `#[allow_capture_unfit]` on one statement: keep one".to_string())
            } else if on_item {
                Some(format!(
                    "`#[{HATCH}]` goes on a statement that runs code, not on an item: nested items are not capture-checked; remove it"
                ))
            } else {
                match self.scope {
                    Scope::Checked => None,
                    Scope::Never => Some(format!(
                        "`#[{HATCH}]` has no effect: the function has `capture = \"never\"`, so its body is not checked; remove the attribute"
                    )),
                    Scope::NestedItem => Some(format!(
                        "`#[{HATCH}]` has no effect here: items nested in the body are not capture-checked (annotate the nested function with `#[symmetric_memory]` to check it); remove the attribute"
                    )),
                    Scope::DeferredAsync => Some(format!(
                        "`#[{HATCH}]` has no effect inside an `async` block of a synchronous body; put it on the statement that holds the `async` block"
                    )),
                    Scope::Silent => None,
                }
            };
            match problem {
                Some(message) => self.errors.spanned(&attr, message),
                None if self.scope == Scope::Checked => {
                    self.frames.push(Frame { attr, used: false });
                    pushed = true;
                }
                None => {}
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
        if pushed {
            if let Some(frame) = self.frames.pop() {
                if !frame.used {
                    self.errors.spanned(
                        &frame.attr,
                        format!(
                            "unused escape hatch: nothing in this statement breaks a capture rule; remove `#[{HATCH}]`"
                        ),
                    );
                }
            }
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        self.strip_misplaced(expr_attrs_mut(e), "an expression inside a statement");
        match e {
            Expr::MethodCall(m) => {
                self.check_method(m);
                visit_mut::visit_expr_method_call_mut(self, m);
            }
            Expr::Call(c) => {
                if let Expr::Path(p) = &*c.func {
                    let p = p.clone();
                    self.check_path(&p, Some(c));
                    for arg in c.args.iter_mut() {
                        self.visit_expr_mut(arg);
                    }
                } else {
                    visit_mut::visit_expr_call_mut(self, c);
                }
            }
            Expr::Path(p) => self.check_path(p, None),
            Expr::Async(a) => {
                let (kw, mv) = (&a.async_token, &a.capture);
                let tokens = quote!(#kw #mv);
                self.deferred(
                    |p| matches!(p, Pattern::AsyncBlock),
                    tokens,
                    "an `async` block",
                );
                let scope = if self.is_async {
                    self.scope
                } else {
                    deferred_scope(self.scope)
                };
                self.with_scope(scope, |w| visit_mut::visit_expr_async_mut(w, a));
            }
            Expr::Closure(c) if c.asyncness.is_some() => {
                let (kw, mv, or1, or2) = (&c.asyncness, &c.capture, &c.or1_token, &c.or2_token);
                let tokens = quote!(#kw #mv #or1 #or2);
                self.deferred(
                    |p| matches!(p, Pattern::AsyncClosure),
                    tokens,
                    "an `async` closure",
                );
                let scope = if self.is_async {
                    self.scope
                } else {
                    deferred_scope(self.scope)
                };
                self.with_scope(scope, |w| visit_mut::visit_expr_closure_mut(w, c));
            }
            Expr::Macro(m) => {
                let mac = m.mac.clone();
                self.check_macro(&mac);
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
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
        visit_mut::visit_arm_mut(self, arm);
    }

    fn visit_field_value_mut(&mut self, f: &mut syn::FieldValue) {
        self.strip_misplaced(Some(&mut f.attrs), "a struct field");
        visit_mut::visit_field_value_mut(self, f);
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

fn deferred_scope(scope: Scope) -> Scope {
    match scope {
        Scope::Checked => Scope::DeferredAsync,
        other => other,
    }
}

/// Remove and return the escape hatches of `attrs`.
fn take_hatches(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (hatches, rest): (Vec<_>, Vec<_>) = std::mem::take(attrs).into_iter().partition(is_hatch);
    *attrs = rest;
    hatches
}

/// Remove and return the escape hatches on a statement. Outer attributes of an expression
/// statement attach to its leftmost operand (`#[a] x.f()?;` puts `#[a]` on `x`), so the whole
/// leftmost chain is searched.
fn stmt_hatches(stmt: &mut Stmt) -> Vec<Attribute> {
    match stmt {
        Stmt::Local(l) => take_hatches(&mut l.attrs),
        Stmt::Macro(m) => take_hatches(&mut m.attrs),
        Stmt::Item(i) => item_attrs_mut(i).map(take_hatches).unwrap_or_default(),
        Stmt::Expr(e, _) => {
            let mut out = Vec::new();
            leftmost_hatches(e, &mut out);
            out
        }
    }
}

fn leftmost_hatches(e: &mut Expr, out: &mut Vec<Attribute>) {
    if let Some(attrs) = expr_attrs_mut(e) {
        out.extend(take_hatches(attrs));
    }
    let next: Option<&mut Expr> = match e {
        Expr::Binary(b) => Some(&mut b.left),
        Expr::MethodCall(m) => Some(&mut m.receiver),
        Expr::Try(t) => Some(&mut t.expr),
        Expr::Field(f) => Some(&mut f.base),
        Expr::Index(i) => Some(&mut i.expr),
        Expr::Cast(c) => Some(&mut c.expr),
        Expr::Await(a) => Some(&mut a.base),
        Expr::Assign(a) => Some(&mut a.left),
        Expr::Call(c) => Some(&mut c.func),
        Expr::Range(r) => r.start.as_deref_mut(),
        _ => None,
    };
    if let Some(next) = next {
        leftmost_hatches(next, out);
    }
}

macro_rules! attrs_of {
    ($e:expr, $enum:ident: $($v:ident)*) => {
        match $e {
            $($enum::$v(x) => Some(&mut x.attrs),)*
            _ => None,
        }
    };
}

/// The outer attributes of an expression.
pub(crate) fn expr_attrs_mut(e: &mut Expr) -> Option<&mut Vec<Attribute>> {
    attrs_of!(e, Expr: Array Assign Async Await Binary Block Break Call Cast Closure Const Continue
        Field ForLoop Group If Index Infer Let Lit Loop Macro Match MethodCall Paren Path Range
        Reference Repeat Return Struct Try TryBlock Tuple Unary Unsafe While Yield)
}

/// The outer attributes of an item.
pub(crate) fn item_attrs_mut(i: &mut Item) -> Option<&mut Vec<Attribute>> {
    attrs_of!(i, Item: Const Enum ExternCrate Fn ForeignMod Impl Macro Mod Static Struct Trait
        TraitAlias Type Union Use)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mode: Mode, item: TokenStream) -> (Vec<String>, String) {
        let mut f: syn::ItemFn = syn::parse2(item).unwrap();
        let mut errors = Errors::default();
        let is_async = f.sig.asyncness.is_some();
        check_body(&mut f.block, mode, is_async, &mut errors);
        (errors.messages(), f.to_token_stream().to_string())
    }

    fn errs(item: TokenStream) -> Vec<String> {
        check(Mode::Checked, item).0
    }

    #[test]
    fn clean_body_passes() {
        let e = errs(quote! {
            fn f(x: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
                let mut y = symmem::alloc::<f32>(x.len())?;
                y.copy_from(x)?;
                let g = |n| symmem::alloc_zeroed::<f32>(n);
                let _ = g(4)?;
                sleep(d); // bare: not caught
                println!("{}", y.len());
                Ok(y)
            }
        });
        assert!(e.is_empty(), "{e:#?}");
    }

    #[test]
    fn every_pattern_is_caught() {
        let cases: Vec<(TokenStream, &str)> = vec![
            (quote!(s.synchronize()?;), "host-blocking"),
            (quote!(symmem::synchronize()?;), "host-blocking"),
            (quote!(Stream::synchronize(&s)?;), "host-blocking"),
            (quote!(let v = b.to_host_vec()?;), "host-blocking"),
            (quote!(b.copy_to_host(&mut v)?;), "host-blocking"),
            (quote!(stream.memcpy_dtoh(&d, &mut h)?;), "host-blocking"),
            (quote!(stream.memcpy_dtov(&d)?;), "host-blocking"),
            (quote!(stream.clone_dtoh(&d)?;), "host-blocking"),
            (quote!(stream.memcpy_htod(&h, &mut d)?;), "host-blocking"),
            (quote!(b.copy_from_host(&v)?;), "host-blocking"),
            (
                quote!(let b = symmem::alloc_from_host(&v)?;),
                "host-blocking",
            ),
            (quote!(let b = alloc_from_host(&v)?;), "host-blocking"),
            (quote!(std::thread::sleep(d);), "host-blocking"),
            (quote!(thread::sleep(d);), "host-blocking"),
            (quote!(g.reserve_symmetric(1)?;), "collective set-up"),
            (quote!(g.empty_cache()?;), "collective set-up"),
            (quote!(symmem::empty_cache()?;), "collective set-up"),
            (
                quote!(let g = ctx.split_group("x", &w, 0, 0)?;),
                "collective set-up",
            ),
            (
                quote!(RankContext::install(d, c, cfg)?;),
                "collective set-up",
            ),
            (quote!(symmem::host::run(2, |c| 1)?;), "collective set-up"),
            (quote!(host::run_with(cfg, |c| 1)?;), "collective set-up"),
            (quote!(ncclCommInitRank(a, b, c, d);), "collective set-up"),
            (quote!(std::thread::spawn(|| 1);), "other thread"),
            (quote!(thread::scope(|s| 1);), "other thread"),
            (quote!(let b = thread::Builder::new();), "other thread"),
            (quote!(v.par_iter().for_each(|x| ());), "other thread"),
            (quote!(let fut = async { 1 };), "deferred"),
            (quote!(let fut = async move { 1 };), "deferred"),
            (quote!(let c = async |x: u32| x;), "deferred"),
            (quote!(let c = || async {};), "deferred"),
            (
                quote!(assert!(b.to_host_vec()?.len() > 0);),
                "host-blocking",
            ),
            (quote!(let v = vec![b.to_host_vec()?; 2];), "host-blocking"),
            (quote!(let f = symmem::synchronize;), "host-blocking"),
            (quote!(let c = || { s.synchronize() };), "host-blocking"),
        ];
        for (stmt, category) in cases {
            let e = errs(quote!(fn f() { #stmt }));
            assert_eq!(e.len(), 1, "{stmt}: {e:#?}");
            assert!(
                e[0].contains(&format!("capture check ({category}, rule `")),
                "{stmt}: {}",
                e[0]
            );
            assert!(e[0].contains("\nhelp: "), "{}", e[0]);
        }
    }

    #[test]
    fn not_caught() {
        for stmt in [
            quote!(sleep(d);),
            quote!(my::synchronize();),
            quote!(spawn(|| 1);),
            quote!(tokio::spawn(x);),
            quote!(
                fn nested() {
                    s.synchronize();
                }
            ),
            quote!(impl X { fn m(&self) { s.synchronize(); } }),
            quote!(let t: thread::Builder = b;),
        ] {
            let e = errs(quote!(fn f() { #stmt }));
            assert!(e.is_empty(), "{stmt}: {e:#?}");
        }
    }

    #[test]
    fn async_fn_bodies_allow_await_and_async_blocks() {
        let e = errs(quote!(
            async fn f() {
                let x = async { 1 }.await;
                g().await;
            }
        ));
        assert!(e.is_empty(), "{e:#?}");
        let e = errs(quote!(
            async fn f() {
                s.synchronize()?;
            }
        ));
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn hatch_silences_and_is_removed() {
        let (e, out) = check(
            Mode::Checked,
            quote! {
                fn f() {
                    #[symmem::allow_capture_unfit(reason = "start-up only")]
                    g.reserve_symmetric(1)?;
                    #[allow_capture_unfit(reason = "debug")]
                    let v = b.to_host_vec()?.len() + s.synchronize();
                    #[symmem::allow_capture_unfit(reason = "x")]
                    s.synchronize()?.foo + 1;
                }
            },
        );
        assert!(e.is_empty(), "{e:#?}");
        assert!(!out.contains("allow_capture_unfit"), "{out}");
    }

    #[test]
    fn hatch_misuse() {
        let cases: Vec<(Mode, TokenStream, &str)> = vec![
            (
                Mode::Checked,
                quote!(#[symmem::allow_capture_unfit] s.synchronize();),
                "needs a reason",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit = "x"] s.synchronize();),
                "needs a reason",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit(reason = "")] s.synchronize();),
                "reason is empty",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit(why = "x")] s.synchronize();),
                "unknown argument",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit(reason = 1)] s.synchronize();),
                "string literal",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit("x")] s.synchronize();),
                "takes one argument",
            ),
            (
                Mode::Checked,
                quote!(#[allow_capture_unfit(reason = "x")] let a = 1;),
                "unused escape hatch",
            ),
            (
                Mode::Never,
                quote!(#[allow_capture_unfit(reason = "x")] s.synchronize();),
                "capture = \"never\"",
            ),
            (
                Mode::Checked,
                quote!(
                    fn g() {
                        #[allow_capture_unfit(reason = "x")]
                        s.synchronize();
                    }
                ),
                "items nested in the body",
            ),
            (
                Mode::Checked,
                quote!(
                    #[allow_capture_unfit(reason = "x")]
                    fn g() {}
                ),
                "not on an item",
            ),
            (
                Mode::Checked,
                quote!(let a = f(#[allow_capture_unfit(reason = "x")] s.synchronize());),
                "not on an expression",
            ),
            (
                Mode::Checked,
                quote!(let a = async { #[allow_capture_unfit(reason = "x")] s.synchronize(); };),
                "inside an `async` block",
            ),
        ];
        for (mode, stmt, want) in cases {
            let (e, out) = check(mode, quote!(fn f() { #stmt }));
            assert!(e.iter().any(|m| m.contains(want)), "{stmt}: {e:#?}");
            assert!(!out.contains("allow_capture_unfit"), "{out}");
        }
    }

    #[test]
    fn silent_mode_strips_without_errors() {
        let (e, out) = check(
            Mode::Silent,
            quote!(
                fn f() {
                    #[allow_capture_unfit]
                    s.synchronize();
                    let a = async {};
                }
            ),
        );
        assert!(e.is_empty(), "{e:#?}");
        assert!(!out.contains("allow_capture_unfit"));
    }

    #[test]
    fn nested_annotated_fn_is_left_alone() {
        let (e, out) = check(
            Mode::Checked,
            quote!(
                fn f() {
                    #[symmetric_memory(group = "dp")]
                    fn g() {
                        #[allow_capture_unfit(reason = "x")]
                        s.synchronize();
                    }
                }
            ),
        );
        assert!(e.is_empty(), "{e:#?}");
        assert!(out.contains("allow_capture_unfit"), "{out}");
    }

    #[test]
    fn several_violations_all_reported() {
        let e = errs(quote!(
            fn f() {
                s.synchronize();
                std::thread::sleep(d);
                g.empty_cache();
            }
        ));
        assert_eq!(e.len(), 3, "{e:#?}");
    }
}
