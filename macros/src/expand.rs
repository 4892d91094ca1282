//! The expansion: [`expand`] ties parsing, validation and the capture checks together and
//! generates the routed function.
//!
//! A synchronous function gets one statement at the top of its body (after its inner
//! attributes), binding the window guard to a local whose name is hygienic
//! (`Span::mixed_site()`): the body cannot see it, and a user variable of the same name neither
//! shadows nor is shadowed by it.
//!
//! ```text
//! #[symmetric_memory(group = "tp")]          fn f(x: u32) -> R {
//! fn f(x: u32) -> R { body }          =>         let __symmem_window = ::symmem::__private::enter("tp");
//!                                                body
//!                                            }
//! ```
//!
//! An `async fn` keeps its signature; its body moves into an `async move` block that
//! `::symmem::__private::routed` polls inside the window (tracing's `Instrument` technique),
//! so the thread-bound guard never lives across an `.await`.

use crate::args::{self, Args, Capture, RawArgs};
use crate::capture::{self, Mode};
use crate::deferred::{classify, is_tokio_body, nameable, Returns};
use crate::errors::Errors;
use crate::item::{self, ItemInput};
use crate::syntax::HATCH;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Ident, ItemFn, LitStr, Path, ReturnType, Type};

/// Expand `#[symmetric_memory(attr)] item`.
///
/// Never panics: on any error it returns the item (with escape hatches removed when it is a
/// function) followed by one `compile_error!` per problem, so the rest of the crate (and IDEs)
/// still see the function.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let raw = match syn::parse2::<RawArgs>(attr) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            RawArgs::default()
        }
    };
    let mut func = match item::parse_item(item) {
        ItemInput::Fn(f) => f,
        ItemInput::Rejected { error, tokens } => {
            args::validate(raw, &mut errors);
            errors.push(error);
            let errors = errors.to_compile_errors();
            return quote!(#tokens #errors);
        }
        ItemInput::Unparsed(unparsed) => {
            let item::UnparsedFn {
                attrs,
                vis,
                sig,
                body,
            } = *unparsed;
            let validated = args::validate(raw, &mut errors);
            return match validated.args {
                Some(args) if errors.is_empty() => generate_unparsed(&args, attrs, vis, sig, body),
                _ => {
                    let errors = errors.to_compile_errors();
                    quote!(#(#attrs)* #vis #sig #body #errors)
                }
            };
        }
    };
    let validated = args::validate(raw, &mut errors);
    item::check_signature(&mut func, &mut errors);

    let mut mode = match validated.capture {
        Some(Capture::Checked) => Mode::Checked,
        Some(Capture::Never) => Mode::Never,
        None => Mode::Silent,
    };
    let is_async = func.sig.asyncness.is_some();
    let returns = if is_async {
        Returns::Plain
    } else {
        classify(&func.sig.output)
    };
    if let Returns::Rejected(r) = &returns {
        let group = validated
            .args
            .as_ref()
            .map_or_else(|| "tp".to_string(), |a| a.group.value());
        errors.spanned(
            &r.ty,
            format!(
                "`#[symmetric_memory]`: this function returns {}, which runs after the function has returned and its window has closed: its allocations would come from the default pool, not group \"{group}\"'s symmetric pool, and the macro cannot route it; {} (if it allocates nothing, build it in a function without the attribute)",
                r.what,
                r.fix.replace("GROUP", &group)
            ),
        );
    }
    if !is_async && is_tokio_body(&func.block.stmts) {
        errors.spanned(
            &func.sig.ident,
            "`#[symmetric_memory]` is below `#[tokio::main]` or `#[tokio::test]`, which has already turned this `async fn` into a synchronous function that blocks on its body: the window would be held across the whole runtime; put `#[symmetric_memory(..)]` above `#[tokio::main]`/`#[tokio::test]`, so that it routes the `async fn` body poll by poll",
        );
        mode = Mode::Silent;
    }
    // A returned future is routed like an `async fn` body: `async` blocks in the body are
    // checked as its code.
    let routes_future = matches!(returns, Returns::ImplFuture(_) | Returns::BoxedFuture(_));
    capture::check_body(
        &mut func.block,
        mode,
        is_async || routes_future,
        &mut errors,
    );
    // The `disabled` expression runs at every call, also while a graph is captured.
    if let Some(d) = validated.args.as_ref().and_then(|a| a.disabled.as_ref()) {
        capture::check_disabled(d, mode, is_async, &mut errors);
    }

    match validated.args {
        Some(args) if errors.is_empty() => generate(*func, &args, &returns),
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#func #errors)
        }
    }
}

/// The tokens `path::__private`, spanned on the `crate = ".."` string when one was given (so
/// that a wrong path is reported on it).
fn private_path(krate: &Path, span: Option<Span>) -> TokenStream {
    match span {
        Some(span) => quote_spanned!(span=> #krate::__private),
        None => quote!(#krate::__private),
    }
}

/// Whether the function may be marked `#[track_caller]` (so that the `capture = "never"`
/// refusal names its call site): Rust ABI, not `main`, not already marked.
fn may_track_caller(func: &ItemFn) -> bool {
    let rust_abi = func
        .sig
        .abi
        .as_ref()
        .is_none_or(|abi| abi.name.as_ref().is_some_and(|n| n.value() == "Rust"));
    let marked = func.attrs.iter().any(|a| a.path().is_ident("track_caller"));
    rust_abi && !marked && func.sig.ident != "main" && func.sig.asyncness.is_none()
}

/// Generate the routed function.
fn generate(mut func: ItemFn, args: &Args, returns: &Returns) -> TokenStream {
    let p = private_path(&args.krate, args.krate_span);
    let group = &args.group;
    let site = Span::mixed_site();
    let disabled = match &args.disabled {
        Some(d) => d.to_token_stream(),
        None => quote!(false),
    };
    let name = func.sig.ident.to_string();
    let name = LitStr::new(
        name.strip_prefix("r#").unwrap_or(&name),
        func.sig.ident.span(),
    );
    let never = |flag: &TokenStream| {
        if func.sig.receiver().is_some() {
            quote!(#p::enter_no_capture_method::<Self>(#flag, #group, #name))
        } else {
            quote!(#p::enter_no_capture(#flag, #group, #name))
        }
    };
    let guard = Ident::new("__symmem_window", site);
    let flag = Ident::new("__symmem_disabled", site);
    let brace = func.block.brace_token;

    if func.sig.asyncness.is_none() {
        let deferred = !matches!(returns, Returns::Plain | Returns::Rejected(_));
        // The `disabled` flag, evaluated once at the call; the returned work reuses it.
        let (bind_flag, flag_value) = match (&args.disabled, deferred) {
            (Some(d), true) => (quote!(let #flag: bool = #d;), flag.to_token_stream()),
            (Some(d), false) => (TokenStream::new(), d.to_token_stream()),
            (None, _) => (TokenStream::new(), quote!(false)),
        };
        let enter = match (args.capture, &args.disabled) {
            (Capture::Checked, None) => quote!(#p::enter(#group)),
            (Capture::Checked, Some(_)) => quote!(#p::enter_unless(#flag_value, #group)),
            (Capture::Never, _) => never(&flag_value),
        };
        if args.capture == Capture::Never && may_track_caller(&func) {
            func.attrs.push(syn::parse_quote!(#[track_caller]));
        }
        if deferred {
            let ret = match &func.sig.output {
                ReturnType::Type(_, ty) => Some((**ty).clone()),
                ReturnType::Default => None,
            };
            let wrap = Wrap {
                p: p.clone(),
                flag: flag_value.clone(),
                group: group.clone(),
                returns,
                ret,
            };
            wrap.body(&mut func.block);
        }
        // The guard is bound by a `match` arm around the body: the arm's body is a temporary
        // scope, so every temporary of the body (its tail expression's included, in edition
        // 2021 too) is dropped before the window ends.
        let block = &func.block;
        let body = quote!(#bind_flag match #enter { #guard => #block });
        *func.block = syn::Block {
            brace_token: brace,
            stmts: vec![syn::Stmt::Expr(syn::Expr::Verbatim(body), None)],
        };
        return func.into_token_stream();
    }

    // `async fn`: route each poll of the body.
    let never_check = match args.capture {
        Capture::Never => {
            let enter = never(&quote!(true));
            quote!(::core::mem::drop(#enter);)
        }
        Capture::Checked => TokenStream::new(),
    };
    // Fix the type of the inner block's `return`s to the function's (tracing-attributes' trick):
    // not possible for `impl Trait` (not allowed in `let`) or `!` (unstable in `let`). The
    // `return` is spanned on the return type, where the compiler's "return type inferred here"
    // notes then point.
    let hint = match &func.sig.output {
        ReturnType::Type(_, ty) if nameable(ty) => {
            let fake = Ident::new("__symmem_return", site.located_at(ty.span()));
            let ret = quote_spanned!(ty.span()=> return #fake;);
            quote! {
                #[allow(unknown_lints, unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop, clippy::let_unit_value, clippy::unreachable, clippy::needless_return)]
                if false {
                    let #fake: #ty = loop {};
                    #ret
                }
            }
        }
        _ => TokenStream::new(),
    };
    // The inner block keeps the body's braces (and so its span).
    let stmts = &func.block.stmts;
    let mut inner = TokenStream::new();
    brace.surround(&mut inner, |t| {
        t.extend(hint);
        t.extend(stmts.iter().map(ToTokens::to_token_stream));
    });
    let body = quote! {
        #never_check
        let #flag: bool = #disabled;
        #p::routed(#flag, #group, async move #inner).await
    };
    *func.block = syn::Block {
        brace_token: brace,
        stmts: vec![syn::Stmt::Expr(syn::Expr::Verbatim(body), None)],
    };
    func.into_token_stream()
}

/// A function whose body syn cannot parse: the window around the body as written, which the
/// compiler then parses (and reports on, once: its diagnostics are deduplicated). The capture
/// checks need a parsed body and do not run.
fn generate_unparsed(
    args: &Args,
    attrs: Vec<syn::Attribute>,
    vis: syn::Visibility,
    sig: syn::Signature,
    body: proc_macro2::Group,
) -> TokenStream {
    let p = private_path(&args.krate, args.krate_span);
    let group = &args.group;
    let site = Span::mixed_site();
    let guard = Ident::new("__symmem_window", site);
    let flag = Ident::new("__symmem_disabled", site);
    let disabled = match &args.disabled {
        Some(d) => d.to_token_stream(),
        None => quote!(false),
    };
    let mut outer = TokenStream::new();
    let name = sig.ident.to_string();
    let name = LitStr::new(name.strip_prefix("r#").unwrap_or(&name), sig.ident.span());
    let inner = match (sig.asyncness.is_some(), args.capture) {
        (true, Capture::Checked) => {
            quote!(let #flag: bool = #disabled; #p::routed(#flag, #group, async move #body).await)
        }
        (true, Capture::Never) => quote! {
            ::core::mem::drop(#p::enter_no_capture(true, #group, #name));
            let #flag: bool = #disabled;
            #p::routed(#flag, #group, async move #body).await
        },
        (false, Capture::Checked) => {
            quote!(match #p::enter_unless(#disabled, #group) { #guard => #body })
        }
        (false, Capture::Never) => {
            quote!(match #p::enter_no_capture(#disabled, #group, #name) { #guard => #body })
        }
    };
    let mut braced = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, inner);
    braced.set_span(body.span());
    outer.extend(std::iter::once(proc_macro2::TokenTree::Group(braced)));
    quote!(#(#attrs)* #vis #sig #outer)
}

/// Wraps what a synchronous function returns (its tail expression and every `return e` of its
/// body, outside closures, `async` blocks and nested items) in the routed adapter.
struct Wrap<'a> {
    p: TokenStream,
    flag: TokenStream,
    group: LitStr,
    returns: &'a Returns,
    ret: Option<Type>,
}

impl Wrap<'_> {
    fn wrap(&self, e: &Expr) -> Expr {
        let Wrap { p, flag, group, .. } = self;
        let tokens = match self.returns {
            Returns::ImplFuture(Some(t)) => quote!(#p::routed_future::<#t, _>(#flag, #group, #e)),
            Returns::ImplIterator(Some(t)) => quote!(#p::routed_iter::<#t, _>(#flag, #group, #e)),
            Returns::BoxedFuture(output) => match (box_pin_arg(e), output) {
                // `Box::pin(x)`: box `x` once, routed (the `#[async_trait]` shape).
                (Some(x), Some(t)) => quote!(#p::routed_boxed_future::<#t, _>(#flag, #group, #x)),
                (Some(x), None) => quote!(#p::routed_boxed(#flag, #group, #x)),
                (None, _) => match self.ret.as_ref().filter(|t| nameable(t)) {
                    Some(ret) => {
                        let f = Ident::new("__symmem_future", Span::mixed_site());
                        quote!(#p::routed_boxed(#flag, #group, { let #f: #ret = #e; #f }))
                    }
                    None => quote!(#p::routed_boxed(#flag, #group, #e)),
                },
            },
            _ => quote!(#p::routed(#flag, #group, #e)),
        };
        Expr::Verbatim(tokens)
    }

    fn body(&self, block: &mut syn::Block) {
        let mut returns = ReturnWrapper { wrap: self };
        returns.visit_block_mut(block);
        if let Some(syn::Stmt::Expr(tail, None)) = block.stmts.last_mut() {
            if !diverges(tail) {
                *tail = self.wrap(tail);
            }
        }
    }
}

/// `x` when `e` is `Box::pin(x)` (any path ending in `Box::pin`).
fn box_pin_arg(e: &Expr) -> Option<&Expr> {
    let Expr::Call(call) = e else { return None };
    let Expr::Path(path) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let is_box_pin = segments.len() >= 2 && segments[segments.len() - 2..] == ["Box", "pin"];
    (is_box_pin && call.args.len() == 1 && path.qself.is_none())
        .then(|| call.args.first())
        .flatten()
}

/// Whether a tail expression visibly has type `!` (wrapping it would leave the adapter's type
/// to inference fallback).
fn diverges(e: &Expr) -> bool {
    match e {
        Expr::Return(_) | Expr::Break(_) | Expr::Continue(_) | Expr::Loop(_) => true,
        Expr::Macro(m) => m.mac.path.segments.last().is_some_and(|s| {
            matches!(
                s.ident.to_string().as_str(),
                "panic" | "todo" | "unimplemented" | "unreachable"
            )
        }),
        _ => false,
    }
}

struct ReturnWrapper<'a, 'b> {
    wrap: &'a Wrap<'b>,
}

impl VisitMut for ReturnWrapper<'_, '_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Return(r) => {
                if let Some(value) = &mut r.expr {
                    self.visit_expr_mut(value);
                    **value = self.wrap.wrap(value);
                }
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// `#[allow_capture_unfit]` reached by the compiler itself: it was not inside a checked body.
pub fn expand_stray_hatch(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{}]` only has an effect on a statement in the body of a `#[symmetric_memory]` function, whose capture checks it silences for that statement; here it is outside such a body: remove it",
            HATCH
        ),
    )
    .to_compile_error();
    quote!(#item #error)
}
