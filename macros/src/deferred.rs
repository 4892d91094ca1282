//! Deferred work a synchronous function returns, judged by its return type as written: a
//! future (`impl Future<..>`, `Pin<Box<dyn Future ..>>`, `BoxFuture<..>`, the shape
//! `#[async_trait]` gives an `async fn`) or a lazy iterator (`impl Iterator<..>`) runs after the
//! function's window has closed, so the expansion routes it; a closure (`impl Fn*`,
//! `Box<dyn Fn*>`) cannot be wrapped and is rejected; so is a stream. The body shape of
//! `#[tokio::main]`/`#[tokio::test]` (expanded before this attribute) is recognised too.

use quote::ToTokens;
use syn::{GenericArgument, PathArguments, ReturnType, Stmt, Type, TypeParamBound, TypePath};

/// What the function returns, as far as routing is concerned.
pub(crate) enum Returns {
    /// Nothing that runs later (as far as the syntax shows).
    Plain,
    /// `impl Future<Output = T> + ..`: the returned future is wrapped in `Routed`; `T` when it
    /// is written (and may be named in a turbofish).
    ImplFuture(Option<Type>),
    /// `impl Iterator<Item = T> + ..` (and the other iterator traits).
    ImplIterator(Option<Type>),
    /// `Pin<Box<dyn Future ..>>`, `BoxFuture<..>`, `LocalBoxFuture<..>`: wrapped and boxed
    /// again (or, when the value is written `Box::pin(x)`, `x` wrapped and boxed once); the
    /// output type when it is written.
    BoxedFuture(Option<Type>),
    /// Deferred work the macro cannot route: the error message's subject and fix.
    Rejected(Rejection),
}

/// A returned closure, boxed iterator, stream...: what it is.
pub(crate) struct Rejection {
    /// The return type, for the span.
    pub(crate) ty: Type,
    /// What it is (e.g. "a closure (`impl Fn*`)").
    pub(crate) what: &'static str,
    /// The closure-specific or iterator-specific fix.
    pub(crate) fix: &'static str,
}

const CLOSURE_FIX: &str = "allocate the buffers here and move them into the closure, or have the closure call a function annotated with `#[symmetric_memory]`, or enter the window inside the closure: `move |..| { let _w = symmem::window(\"GROUP\")?; .. }`";
const ITER_FIX: &str = "return `impl Iterator<..>` (the macro routes each `next` of it), or collect inside the function (`.collect::<Result<Vec<_>, _>>()`) and return the collection";
const STREAM_FIX: &str = "collect the items inside the function, or have the stream call a function annotated with `#[symmetric_memory]` for each item";

fn last_ident(path: &syn::Path) -> Option<String> {
    path.segments.last().map(|s| s.ident.to_string())
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => strip(&p.elem),
        Type::Group(g) => strip(&g.elem),
        other => other,
    }
}

fn is_closure_trait(name: &str) -> bool {
    matches!(
        name,
        "Fn" | "FnMut" | "FnOnce" | "AsyncFn" | "AsyncFnMut" | "AsyncFnOnce"
    )
}

fn is_iter_trait(name: &str) -> bool {
    matches!(
        name,
        "Iterator" | "DoubleEndedIterator" | "ExactSizeIterator" | "FusedIterator"
    )
}

/// The trait bounds' (last segment name, path) pairs.
fn trait_bounds<'a>(
    bounds: impl IntoIterator<Item = &'a TypeParamBound>,
) -> Vec<(String, &'a syn::Path)> {
    bounds
        .into_iter()
        .filter_map(|b| match b {
            TypeParamBound::Trait(t) => last_ident(&t.path).map(|n| (n, &t.path)),
            _ => None,
        })
        .collect()
}

/// The associated type `name = T` of the last segment of `path`.
fn assoc(path: &syn::Path, name: &str) -> Option<Type> {
    let PathArguments::AngleBracketed(args) = &path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::AssocType(t) if t.ident == name && t.generics.is_none() => {
            Some(t.ty.clone())
        }
        _ => None,
    })
}

/// The type arguments of the last segment of `path`.
fn type_args(path: &TypePath) -> Vec<&Type> {
    let Some(last) = path.path.segments.last() else {
        return Vec::new();
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// Whether `ty` may be written in a turbofish or a `let` (no `impl Trait`, `_` or macro).
pub(crate) fn nameable(ty: &Type) -> bool {
    if matches!(ty, Type::Never(_)) {
        return false;
    }
    let mut finder = ImplFinder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    !finder.0
}

struct ImplFinder(bool);

impl<'ast> syn::visit::Visit<'ast> for ImplFinder {
    fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
        self.0 = true;
    }
    fn visit_type_infer(&mut self, _: &'ast syn::TypeInfer) {
        self.0 = true;
    }
    fn visit_type_macro(&mut self, _: &'ast syn::TypeMacro) {
        self.0 = true;
    }
}

/// `dyn ..` (or a bare trait object) of `ty`, with its bounds' names.
fn dyn_bounds(ty: &Type) -> Option<Vec<(String, &syn::Path)>> {
    match strip(ty) {
        Type::TraitObject(o) => Some(trait_bounds(&o.bounds)),
        _ => None,
    }
}

/// Classify the return type of a synchronous function.
pub(crate) fn classify(output: &ReturnType) -> Returns {
    let ReturnType::Type(_, ty) = output else {
        return Returns::Plain;
    };
    let reject = |what, fix| {
        Returns::Rejected(Rejection {
            ty: (**ty).clone(),
            what,
            fix,
        })
    };
    match strip(ty) {
        Type::ImplTrait(i) => {
            let bounds = trait_bounds(&i.bounds);
            if let Some((_, p)) = bounds.iter().find(|(n, _)| n == "Future") {
                let out = assoc(p, "Output").filter(nameable);
                return Returns::ImplFuture(out);
            }
            if bounds.iter().any(|(n, _)| is_closure_trait(n)) {
                return reject("a closure (`impl Fn*`)", CLOSURE_FIX);
            }
            if let Some((_, p)) = bounds.iter().find(|(n, _)| is_iter_trait(n)) {
                let item = assoc(p, "Item").filter(nameable);
                return Returns::ImplIterator(item);
            }
            if bounds
                .iter()
                .any(|(n, _)| n == "Stream" || n == "AsyncIterator")
            {
                return reject("a stream", STREAM_FIX);
            }
            Returns::Plain
        }
        Type::Path(p) => {
            let Some(name) = last_ident(&p.path) else {
                return Returns::Plain;
            };
            match name.as_str() {
                "BoxFuture" | "LocalBoxFuture" => {
                    let output = type_args(p).first().map(|t| (*t).clone());
                    return Returns::BoxedFuture(output.filter(nameable));
                }
                "BoxStream" | "LocalBoxStream" => return reject("a stream", STREAM_FIX),
                _ => {}
            }
            let args = type_args(p);
            let inner_dyn = |arg: &Type| -> Option<Vec<String>> {
                dyn_bounds(arg).map(|b| b.into_iter().map(|(n, _)| n).collect())
            };
            if name == "Pin" {
                if let Some(Type::Path(boxed)) = args.first().map(|t| strip(t)) {
                    if last_ident(&boxed.path).as_deref() == Some("Box") {
                        let object = type_args(boxed).first().and_then(|t| dyn_bounds(t));
                        if let Some(Some((_, fut))) = object
                            .as_ref()
                            .map(|b| b.iter().find(|(n, _)| n == "Future"))
                        {
                            return Returns::BoxedFuture(assoc(fut, "Output").filter(nameable));
                        }
                        if let Some(names) = type_args(boxed).first().and_then(|t| inner_dyn(t)) {
                            if names.iter().any(|n| n == "Stream") {
                                return reject("a stream", STREAM_FIX);
                            }
                        }
                    }
                }
            }
            if name == "Box" || name == "Arc" || name == "Rc" {
                if let Some(names) = args.first().and_then(|t| inner_dyn(t)) {
                    if names.iter().any(|n| is_closure_trait(n)) {
                        return reject("a boxed closure (`Box<dyn Fn*>`)", CLOSURE_FIX);
                    }
                    if names.iter().any(|n| is_iter_trait(n)) {
                        return reject("a boxed lazy iterator (`Box<dyn Iterator>`)", ITER_FIX);
                    }
                    if names.iter().any(|n| n == "Future") {
                        return reject(
                            "an unpinned boxed future (`Box<dyn Future>`)",
                            "return `Pin<Box<dyn Future<Output = ..> + ..>>` (the macro routes each poll of it) or `impl Future<Output = ..>`",
                        );
                    }
                }
            }
            Returns::Plain
        }
        Type::Reference(r) => match dyn_bounds(&r.elem) {
            Some(b) if b.iter().any(|(n, _)| is_closure_trait(n)) => {
                reject("a closure (`&dyn Fn*`)", CLOSURE_FIX)
            }
            _ => Returns::Plain,
        },
        _ => Returns::Plain,
    }
}

/// Whether `stmts` are the body `#[tokio::main]` or `#[tokio::test]` gives an `async fn`
/// (`let body = async { .. };` then `...block_on(body)`): that attribute ran first.
pub(crate) fn is_tokio_body(stmts: &[Stmt]) -> bool {
    let binds_async_body = stmts.iter().any(|s| match s {
        Stmt::Local(l) => {
            let is_body = matches!(&l.pat, syn::Pat::Ident(i) if i.ident == "body");
            let is_async = l
                .init
                .as_ref()
                .is_some_and(|i| matches!(&*i.expr, syn::Expr::Async(_)));
            is_body && is_async
        }
        _ => false,
    });
    // tokio-macros builds the runtime with `<tokio path>::runtime::Builder` and blocks on
    // `body`: a body written by hand that merely blocks on a future is not taken for it.
    binds_async_body
        && stmts.iter().any(|s| {
            // The identifiers in order (token strings differ between the compiler and
            // proc-macro2, identifiers do not).
            let mut idents = Vec::new();
            collect_idents(s.to_token_stream(), &mut idents);
            let builder = idents
                .windows(2)
                .any(|w| w[0] == "runtime" && w[1] == "Builder");
            let block_on = idents
                .windows(2)
                .any(|w| w[0] == "block_on" && w[1] == "body");
            builder && block_on
        })
}

fn collect_idents(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    for t in tokens {
        match t {
            proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
            proc_macro2::TokenTree::Group(g) => collect_idents(g.stream(), out),
            _ => {}
        }
    }
}
