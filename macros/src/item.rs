//! The annotated item: a function with a body, or a clear rejection of anything else (emitted
//! unchanged next to the error), and the problems of the function itself (`const fn`, the
//! attribute twice, an escape hatch on the function).

use crate::errors::Errors;
use crate::syntax::{has_symmetric_memory, is_hatch, HATCH};
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Item, ItemFn};

/// What the attribute was applied to.
pub(crate) enum ItemInput {
    /// A function with a body (free function, method, trait default method).
    Fn(Box<ItemFn>),
    /// A function whose body does not parse (a syntax error, or syntax newer than syn's): its
    /// signature, and the body as written, left to the compiler to report on, once.
    Unparsed(Box<UnparsedFn>),
    /// Anything else: the reason, and the item's tokens to emit unchanged next to the error.
    Rejected {
        /// Why the item cannot carry the attribute.
        error: syn::Error,
        /// The item as written.
        tokens: TokenStream,
    },
}

const ONLY_FNS: &str =
    "`#[symmetric_memory]` can only be applied to functions with a body (free functions, methods, trait default methods)";

/// Classify the annotated item.
pub(crate) fn parse_item(tokens: TokenStream) -> ItemInput {
    let fn_error = match syn::parse2::<ItemFn>(tokens.clone()) {
        Ok(f) => return ItemInput::Fn(Box::new(f)),
        Err(e) => e,
    };
    if let Ok(unparsed) = syn::parse2::<UnparsedFn>(tokens.clone()) {
        return ItemInput::Unparsed(Box::new(unparsed));
    }
    let error = if let Some(sig) = bodyless_fn(&tokens) {
        syn::Error::new_spanned(
            sig,
            format!(
                "{ONLY_FNS}; this function has no body: put the attribute on the implementations of a trait method (or give it a default body); call a function of an `extern` block from an annotated function"
            ),
        )
    } else if let Ok(item) = syn::parse2::<Item>(tokens.clone()) {
        match item_kind(&item) {
            Some((kind, span_tokens, hint)) => {
                syn::Error::new_spanned(span_tokens, format!("{ONLY_FNS}, not to {kind}{hint}"))
            }
            None => fn_error,
        }
    } else if let Some(error) = statement(&tokens) {
        error
    } else {
        fn_error
    };
    ItemInput::Rejected { error, tokens }
}

/// A function signature followed by a brace group that did not parse as a block.
pub(crate) struct UnparsedFn {
    /// The outer attributes.
    pub(crate) attrs: Vec<syn::Attribute>,
    /// The visibility.
    pub(crate) vis: syn::Visibility,
    /// The signature.
    pub(crate) sig: syn::Signature,
    /// The body's brace group, as written.
    pub(crate) body: proc_macro2::Group,
}

impl syn::parse::Parse for UnparsedFn {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body: proc_macro2::Group = input.parse()?;
        if body.delimiter() != proc_macro2::Delimiter::Brace || !input.is_empty() {
            return Err(input.error("expected a function body"));
        }
        Ok(UnparsedFn {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// The error for the attribute on a statement or an expression (rustc hands those to the
/// attribute too, with its own "custom attributes cannot be applied to statements").
fn statement(tokens: &TokenStream) -> Option<syn::Error> {
    let open = "open a window for the code instead: `let _w = symmem::window(\"tp\")?;` (or `group.window()`) before it, dropped when the scope ends";
    let stmt = syn::parse2::<syn::Stmt>(tokens.clone()).ok().or_else(|| {
        Some(syn::Stmt::Expr(
            syn::parse2::<syn::Expr>(tokens.clone()).ok()?,
            None,
        ))
    })?;
    let (what, spanned) = match stmt {
        syn::Stmt::Local(l) => ("a `let` statement", pair(&l.let_token, &l.pat)),
        syn::Stmt::Expr(syn::Expr::Closure(c), _) => {
            ("a closure", pair(&c.or1_token, &c.or2_token))
        }
        syn::Stmt::Expr(e, _) => ("an expression", e.to_token_stream()),
        syn::Stmt::Macro(m) => ("a macro invocation", m.mac.path.to_token_stream()),
        syn::Stmt::Item(_) => return None,
    };
    Some(syn::Error::new_spanned(
        spanned,
        format!(
            "{ONLY_FNS}, not to {what}: put it on the function whose body allocates, or {open}"
        ),
    ))
}

/// The signature of a function declaration without a body (`fn f(&self);` in a trait or an
/// `extern` block), if `tokens` is one.
fn bodyless_fn(tokens: &TokenStream) -> Option<TokenStream> {
    if let Ok(f) = syn::parse2::<syn::TraitItemFn>(tokens.clone()) {
        if f.default.is_none() {
            return Some(f.sig.to_token_stream());
        }
    }
    if let Ok(f) = syn::parse2::<syn::ForeignItemFn>(tokens.clone()) {
        return Some(f.sig.to_token_stream());
    }
    None
}

fn pair(a: &impl ToTokens, b: &impl ToTokens) -> TokenStream {
    quote!(#a #b)
}

/// A description of a non-function item, the tokens to put the error on, and a hint.
fn item_kind(item: &Item) -> Option<(&'static str, TokenStream, &'static str)> {
    let hint_methods = ": put it on the methods that allocate";
    Some(match item {
        Item::Const(i) => ("a const item", pair(&i.const_token, &i.ident), ""),
        Item::Enum(i) => ("an enum", pair(&i.enum_token, &i.ident), ""),
        Item::ExternCrate(i) => (
            "an `extern crate` item",
            pair(&i.extern_token, &i.crate_token),
            "",
        ),
        Item::ForeignMod(i) => ("an `extern` block", i.abi.to_token_stream(), ""),
        Item::Impl(i) => (
            "an impl block",
            i.impl_token.to_token_stream(),
            hint_methods,
        ),
        Item::Macro(i) => (
            "a macro invocation or definition",
            i.mac.path.to_token_stream(),
            "",
        ),
        Item::Mod(i) => ("a module", pair(&i.mod_token, &i.ident), ""),
        Item::Static(i) => ("a static item", pair(&i.static_token, &i.ident), ""),
        Item::Struct(i) => ("a struct", pair(&i.struct_token, &i.ident), ""),
        Item::Trait(i) => (
            "a trait",
            pair(&i.trait_token, &i.ident),
            ": put it on the trait's default methods or on the methods of its impls",
        ),
        Item::TraitAlias(i) => ("a trait alias", pair(&i.trait_token, &i.ident), ""),
        Item::Type(i) => ("a type alias", pair(&i.type_token, &i.ident), ""),
        Item::Union(i) => ("a union", pair(&i.union_token, &i.ident), ""),
        Item::Use(i) => ("a `use` item", i.use_token.to_token_stream(), ""),
        _ => return None,
    })
}

/// Problems of the function itself: `const fn`, a second `#[symmetric_memory]`, an escape hatch
/// on the function.
pub(crate) fn check_signature(func: &mut ItemFn, errors: &mut Errors) {
    if let Some(c) = &func.sig.constness {
        errors.spanned(
            c,
            "`#[symmetric_memory]` cannot be applied to a `const fn`: the pool-routing window is run-time thread state; remove `const` or the attribute",
        );
    }
    if let Some(a) = func
        .attrs
        .iter()
        .find(|a| has_symmetric_memory(std::slice::from_ref(a)))
    {
        errors.spanned(
            a,
            "`#[symmetric_memory]` is applied twice to this function: a body runs in one window; keep one attribute (call a second annotated function for another group)",
        );
    }
    let (hatches, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut func.attrs)
        .into_iter()
        .partition(is_hatch);
    func.attrs = rest;
    for h in hatches {
        errors.spanned(
            h,
            format!(
                "`#[{}]` goes on a statement of the body, not on the function; to turn the capture checks off for the whole function, write `capture = \"never\"`",
                HATCH
            ),
        );
    }
}
