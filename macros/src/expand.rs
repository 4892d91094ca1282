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

use crate::check::{self, Mode};
use crate::errors::Errors;
use crate::parse::{self, ItemInput, RawArgs};
use crate::validate::{self, Args, Capture};
use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{Ident, ItemFn, LitStr, ReturnType, Type};

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
    let mut func = match parse::parse_item(item) {
        ItemInput::Fn(f) => f,
        ItemInput::Rejected { error, tokens } => {
            validate::validate(raw, &mut errors);
            errors.push(error);
            let errors = errors.to_compile_errors();
            return quote!(#tokens #errors);
        }
    };
    let validated = validate::validate(raw, &mut errors);
    check_signature(&mut func, &mut errors);

    let mode = match validated.capture {
        Some(Capture::Checked) => Mode::Checked,
        Some(Capture::Never) => Mode::Never,
        None => Mode::Silent,
    };
    let is_async = func.sig.asyncness.is_some();
    check::check_body(&mut func.block, mode, is_async, &mut errors);

    match validated.args {
        Some(args) if errors.is_empty() => generate(*func, &args),
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#func #errors)
        }
    }
}

/// Problems of the function itself: `const fn`, a second `#[symmetric_memory]`, an escape hatch
/// on the function.
fn check_signature(func: &mut ItemFn, errors: &mut Errors) {
    if let Some(c) = &func.sig.constness {
        errors.spanned(
            c,
            "`#[symmetric_memory]` cannot be applied to a `const fn`: the pool-routing window is run-time thread state; remove `const` or the attribute",
        );
    }
    if let Some(a) = func
        .attrs
        .iter()
        .find(|a| check::has_symmetric_memory(std::slice::from_ref(a)))
    {
        errors.spanned(
            a,
            "`#[symmetric_memory]` is applied twice to this function: a body runs in one window; keep one attribute (call a second annotated function for another group)",
        );
    }
    let (hatches, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut func.attrs)
        .into_iter()
        .partition(check::is_hatch);
    func.attrs = rest;
    for h in hatches {
        errors.spanned(
            h,
            format!(
                "`#[{}]` goes on a statement of the body, not on the function; to turn the capture checks off for the whole function, write `capture = \"never\"`",
                check::HATCH
            ),
        );
    }
}

/// Generate the routed function.
fn generate(mut func: ItemFn, args: &Args) -> TokenStream {
    let krate = &args.krate;
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

    if func.sig.asyncness.is_none() {
        let guard = Ident::new("__symmem_window", site);
        let enter = match (args.capture, &args.disabled) {
            (Capture::Checked, None) => quote!(#krate::__private::enter(#group)),
            (Capture::Checked, Some(d)) => quote!(#krate::__private::enter_unless(#d, #group)),
            (Capture::Never, _) => {
                quote!(#krate::__private::enter_no_capture(#disabled, #group, #name))
            }
        };
        let stmt: syn::Stmt = syn::parse_quote!(let #guard = #enter;);
        func.block.stmts.insert(0, stmt);
        return func.into_token_stream();
    }

    // `async fn`: route each poll of the body.
    let flag = Ident::new("__symmem_disabled", site);
    let fake = Ident::new("__symmem_return", site);
    let never_check = match args.capture {
        Capture::Never => quote! {
            ::core::mem::drop(#krate::__private::enter_no_capture(true, #group, #name));
        },
        Capture::Checked => TokenStream::new(),
    };
    // Fix the type of the inner block's `return`s to the function's (tracing-attributes' trick):
    // not possible for `impl Trait` (not allowed in `let`) or `!` (unstable in `let`).
    let hint = match &func.sig.output {
        ReturnType::Type(_, ty) if hint_allowed(ty) => quote! {
            #[allow(unknown_lints, unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop, clippy::let_unit_value, clippy::unreachable, clippy::needless_return)]
            if false {
                let #fake: #ty = loop {};
                return #fake;
            }
        },
        _ => TokenStream::new(),
    };
    let stmts = &func.block.stmts;
    let body: syn::Block = syn::parse_quote!({
        #never_check
        let #flag: bool = #disabled;
        #krate::__private::routed(#flag, #group, async move {
            #hint
            #(#stmts)*
        })
        .await
    });
    *func.block = body;
    func.into_token_stream()
}

/// Whether `ty` may be written as the type of a `let` (no `impl Trait`, not `!`).
fn hint_allowed(ty: &Type) -> bool {
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

/// `#[allow_capture_unfit]` reached by the compiler itself: it was not inside a checked body.
pub fn expand_stray_hatch(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{}]` only has an effect on a statement in the body of a `#[symmetric_memory]` function, whose capture checks it silences for that statement; here it is outside such a body: remove it",
            check::HATCH
        ),
    )
    .to_compile_error();
    quote!(#item #error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(attr: TokenStream, item: TokenStream) -> String {
        expand(attr, item).to_string()
    }

    #[test]
    fn sync_expansion() {
        let out = ex(
            quote!(group = "tp"),
            quote! {
                /// Docs.
                #[inline]
                pub(crate) unsafe extern "C" fn f<'a, T: Copy>(x: &'a T) -> impl Sized + 'a where T: Send {
                    #![allow(unused)]
                    let y = *x;
                    y
                }
            },
        );
        let want = quote! {
            #[doc = r" Docs."]
            #[inline]
            pub(crate) unsafe extern "C" fn f<'a, T: Copy>(x: &'a T) -> impl Sized + 'a where T: Send {
                #![allow(unused)]
                let __symmem_window = ::symmem::__private::enter("tp");
                let y = *x;
                y
            }
        };
        assert_eq!(out, want.to_string());
    }

    #[test]
    fn disabled_never_and_crate() {
        let out = ex(
            quote!(group = "tp", disabled = !self.on),
            quote!(
                fn f(&self) {}
            ),
        );
        assert!(
            out.contains(":: symmem :: __private :: enter_unless (! self . on , \"tp\")"),
            "{out}"
        );
        let out = ex(
            quote!(group = "tp", capture = "never", crate = "my::sm"),
            quote!(
                fn r#type() {}
            ),
        );
        assert!(
            out.contains("my :: sm :: __private :: enter_no_capture (false , \"tp\" , \"type\")"),
            "{out}"
        );
        let out = ex(
            quote!(group = "tp", capture = "never", disabled = d),
            quote!(
                fn g() {}
            ),
        );
        assert!(
            out.contains("enter_no_capture (d , \"tp\" , \"g\")"),
            "{out}"
        );
    }

    #[test]
    fn async_expansion() {
        let out = ex(
            quote!(group = "tp"),
            quote!(
                async fn f(&self) -> Result<u32, E> {
                    let a = g().await?;
                    Ok(a)
                }
            ),
        );
        assert!(
            out.contains("let __symmem_disabled : bool = false ;"),
            "{out}"
        );
        assert!(
            out.contains(
                ":: symmem :: __private :: routed (__symmem_disabled , \"tp\" , async move {"
            ),
            "{out}"
        );
        assert!(
            out.contains("let __symmem_return : Result < u32 , E > = loop { } ;"),
            "{out}"
        );
        assert!(out.ends_with(". await }"), "{out}");
        let out = ex(
            quote!(group = "tp"),
            quote!(
                async fn f() -> impl Sized {
                    1
                }
            ),
        );
        assert!(!out.contains("__symmem_return"), "{out}");
        let out = ex(
            quote!(group = "tp", capture = "never"),
            quote!(
                async fn f() {}
            ),
        );
        assert!(
            out.contains(
                "drop (:: symmem :: __private :: enter_no_capture (true , \"tp\" , \"f\"))"
            ),
            "{out}"
        );
    }

    #[test]
    fn rejected_items_are_emitted_with_the_error() {
        let cases = [
            (
                quote!(
                    struct S;
                ),
                "not to a struct",
            ),
            (quote!(impl S { fn f() {} }), "not to an impl block"),
            (
                quote!(
                    trait T {
                        fn f();
                    }
                ),
                "not to a trait",
            ),
            (
                quote!(
                    fn f(&self);
                ),
                "has no body",
            ),
            (
                quote!(
                    pub fn f(x: u32) -> u32;
                ),
                "has no body",
            ),
            (
                quote!(
                    const fn f() {}
                ),
                "`const fn`",
            ),
            (
                quote!(
                    mod m {}
                ),
                "not to a module",
            ),
            (
                quote!(
                    static X: u32 = 1;
                ),
                "not to a static",
            ),
            (
                quote!(
                    const X: u32 = 1;
                ),
                "not to a const",
            ),
            (
                quote!(
                    enum E {}
                ),
                "not to an enum",
            ),
            (
                quote!(
                    use a::b;
                ),
                "not to a `use`",
            ),
            (
                quote!(
                    type T = u32;
                ),
                "not to a type alias",
            ),
            (
                quote!(
                    extern "C" {}
                ),
                "not to an `extern` block",
            ),
            (
                quote!(
                    #[symmetric_memory(group = "b")]
                    fn f() {}
                ),
                "applied twice",
            ),
        ];
        for (item, want) in cases {
            let out = ex(quote!(group = "tp"), item.clone());
            assert!(out.contains(want), "{item}: {out}");
            assert!(out.contains("compile_error"), "{out}");
        }
    }

    #[test]
    fn errors_keep_the_function() {
        let out = ex(
            quote!(grop = "tp"),
            quote!(
                fn f() -> u32 {
                    #[allow_capture_unfit(reason = "x")]
                    let a = 1;
                    a
                }
            ),
        );
        assert!(out.starts_with("fn f () -> u32 { let a = 1 ; a }"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    }

    #[test]
    fn hatch_on_function_is_an_error() {
        let out = ex(
            quote!(group = "tp"),
            quote!(
                #[symmem::allow_capture_unfit(reason = "x")]
                fn f() {}
            ),
        );
        assert!(out.contains("not on the function"), "{out}");
        assert!(out.starts_with("fn f () { }"), "{out}");
    }

    #[test]
    fn garbage_never_panics() {
        let out = ex(quote!(= = ,,), quote!(this is not rust));
        assert!(out.contains("compile_error"), "{out}");
    }
}
