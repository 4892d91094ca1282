//! The expansion: its shape for synchronous and `async` functions, `disabled`, `capture =
//! "never"` and `crate`, rejected items emitted with their error, the function kept on error.

use crate::expand::expand;
use proc_macro2::TokenStream;
use quote::quote;

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
        out.contains(":: symmem :: __private :: routed (__symmem_disabled , \"tp\" , async move {"),
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
        out.contains("drop (:: symmem :: __private :: enter_no_capture (true , \"tp\" , \"f\"))"),
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
