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
use crate::errors::Errors;
use crate::item::{self, ItemInput};
use crate::syntax::HATCH;
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
    let mut func = match item::parse_item(item) {
        ItemInput::Fn(f) => f,
        ItemInput::Rejected { error, tokens } => {
            args::validate(raw, &mut errors);
            errors.push(error);
            let errors = errors.to_compile_errors();
            return quote!(#tokens #errors);
        }
    };
    let validated = args::validate(raw, &mut errors);
    item::check_signature(&mut func, &mut errors);

    let mode = match validated.capture {
        Some(Capture::Checked) => Mode::Checked,
        Some(Capture::Never) => Mode::Never,
        None => Mode::Silent,
    };
    let is_async = func.sig.asyncness.is_some();
    capture::check_body(&mut func.block, mode, is_async, &mut errors);

    match validated.args {
        Some(args) if errors.is_empty() => generate(*func, &args),
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#func #errors)
        }
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
            HATCH
        ),
    )
    .to_compile_error();
    quote!(#item #error)
}
