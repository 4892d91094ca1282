//! Parsing: the attribute's arguments (tolerant: one bad argument does not hide the others)
//! and the annotated item (a function with a body, or a clear rejection of anything else).

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, Item, ItemFn, LitStr, Token};

/// One `key = value` argument as written, before validation.
pub(crate) struct RawArg {
    /// The key (`crate` and other keywords are accepted here and judged by `validate`).
    pub(crate) key: Ident,
    /// The value; `None` for a bare `key`.
    pub(crate) value: Option<Expr>,
}

/// The arguments of one attribute, with the syntax errors met while reading them.
#[derive(Default)]
pub(crate) struct RawArgs {
    /// Arguments that parsed, in order.
    pub(crate) args: Vec<RawArg>,
    /// Syntax errors; parsing resumed after each at the next top-level comma.
    pub(crate) errors: Vec<syn::Error>,
    /// Whether a `group` argument (or a bare string literal) was written but did not parse:
    /// then "missing `group`" would only repeat the syntax error.
    pub(crate) group_attempted: bool,
}

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut out = RawArgs::default();
        while !input.is_empty() {
            let looks_like_group = input.peek(LitStr)
                || input
                    .fork()
                    .call(Ident::parse_any)
                    .is_ok_and(|i| i == "group");
            match parse_arg(input) {
                Ok(arg) => out.args.push(arg),
                Err(e) => {
                    out.errors.push(e);
                    out.group_attempted |= looks_like_group;
                    skip_to_comma(input)?;
                }
            }
            if input.is_empty() {
                break;
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            } else {
                out.errors
                    .push(input.error("expected `,` between arguments"));
                skip_to_comma(input)?;
                if input.peek(Token![,]) {
                    input.parse::<Token![,]>()?;
                }
            }
        }
        Ok(out)
    }
}

fn parse_arg(input: ParseStream) -> syn::Result<RawArg> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!("the group must be named: write `group = {}`", lit.token()),
        ));
    }
    if !input.peek(Ident::peek_any) {
        return Err(input.error(
            "expected an argument such as `group = \"tp\"` (arguments: `group`, `disabled`, `capture`, `crate`)",
        ));
    }
    let key = Ident::parse_any(input)?;
    if input.peek(Token![=]) && !input.peek(Token![==]) {
        let eq: Token![=] = input.parse()?;
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new_spanned(
                quote!(#key #eq),
                format!("expected a value after `{key} =`"),
            ));
        }
        let value: Expr = input.parse()?;
        return Ok(RawArg {
            key,
            value: Some(value),
        });
    }
    if input.is_empty() || input.peek(Token![,]) {
        return Ok(RawArg { key, value: None });
    }
    let next: TokenTree = input.fork().parse()?;
    let message = match &next {
        TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Parenthesis => {
            format!("`{key}(...)` is not an argument form of `#[symmetric_memory]`: write `{key} = value`")
        }
        TokenTree::Punct(p) if p.as_char() == ':' => {
            format!("expected `=` after `{key}`: write `{key} = value`, not `{key}: value`")
        }
        _ => format!("expected `=` after `{key}`"),
    };
    Err(syn::Error::new_spanned(quote!(#key #next), message))
}

/// Skip token trees up to (not including) the next top-level comma.
fn skip_to_comma(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                if p.as_char() == ',' {
                    return Ok(((), rest));
                }
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// What the attribute was applied to.
pub(crate) enum ItemInput {
    /// A function with a body (free function, method, trait default method).
    Fn(Box<ItemFn>),
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
    } else {
        fn_error
    };
    ItemInput::Rejected { error, tokens }
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
