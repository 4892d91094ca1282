//! Reading the attribute's arguments as written: `key = value` pairs, tolerant of syntax errors
//! (one bad argument does not hide the others).

use proc_macro2::TokenTree;
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, LitStr, Token};

/// The argument keys, in the order the grammar lists them.
pub(crate) const KEYS: &[&str] = &["group", "disabled", "capture", "crate"];

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
