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
            match ::symmem::__private::enter("tp") {
                __symmem_window => {
                    let y = *x;
                    y
                }
            }
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
        out.contains("my :: sm :: __private :: enter_no_capture (false , \"tp\" , \"type\")")
            && out.starts_with("# [track_caller] fn r#type"),
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

/// The guard is bound by a `match` arm around the whole body (so every temporary of the body,
/// its tail's included, drops before the window ends, in both editions), and items at the top of
/// the body stay at the top of a block.
#[test]
fn sync_guard_is_a_match_arm_around_the_body() {
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f() -> bool {
                fn helper() {}
                symmem::opt_out().is_active()
            }
        ),
    );
    assert_eq!(
        out,
        "fn f () -> bool { match :: symmem :: __private :: enter (\"tp\") { __symmem_window => { fn helper () { } symmem :: opt_out () . is_active () } } }"
    );
}

/// A synchronous function returning a future: the tail and every `return` are wrapped (not
/// those of closures, `async` blocks or nested items), the output type is passed on, the
/// `disabled` flag is evaluated once.
#[test]
fn returned_futures_are_routed() {
    let out = ex(
        quote!(group = "tp", disabled = !on),
        quote!(
            fn f(on: bool) -> impl Future<Output = Result<u32, Error>> + Send {
                if x {
                    return g();
                }
                let c = || return 1;
                fn inner() -> u32 {
                    return 2;
                }
                async move { Ok(1) }
            }
        ),
    );
    assert!(out.contains("let __symmem_disabled : bool = ! on ; match :: symmem :: __private :: enter_unless (__symmem_disabled , \"tp\")"), "{out}");
    assert!(out.contains("return :: symmem :: __private :: routed_future :: < Result < u32 , Error > , _ > (__symmem_disabled , \"tp\" , g ())"), "{out}");
    assert!(out.contains("let c = | | return 1 ;"), "{out}");
    assert!(out.contains("return 2 ;"), "{out}");
    assert!(out.contains("routed_future :: < Result < u32 , Error > , _ > (__symmem_disabled , \"tp\" , async move { Ok (1) })"), "{out}");

    // Without a nameable output type, and with no `disabled`.
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f() -> impl Future<Output = impl Sized> {
                g()
            }
        ),
    );
    assert!(out.contains("match :: symmem :: __private :: enter (\"tp\") { __symmem_window => { :: symmem :: __private :: routed (false , \"tp\" , g ()) } }"), "{out}");

    // A diverging tail is left alone.
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f() -> impl Future<Output = u32> {
                panic!("never called")
            }
        ),
    );
    assert!(!out.contains("routed"), "{out}");
}

/// `Pin<Box<dyn Future>>` (the shape `#[async_trait]` gives an `async fn`), `BoxFuture`: a
/// returned `Box::pin(x)` becomes `x` routed and boxed once, typed by the output type; any other
/// value is typed by the return type, then routed and boxed again.
#[test]
fn boxed_futures_are_routed() {
    let squash = |s: &str| s.replace(' ', "");
    for ret in [
        quote!(
            ::core::pin::Pin<
                Box<dyn ::core::future::Future<Output = u32> + ::core::marker::Send + 'async_trait>,
            >
        ),
        quote!(BoxFuture<'a, u32>),
        quote!(futures::future::LocalBoxFuture<'static, u32>),
    ] {
        let out = ex(
            quote!(group = "tp"),
            quote!(
                fn f<'a>(&'a self) -> #ret {
                    if x {
                        return make();
                    }
                    Box::pin(async move { 1 })
                }
            ),
        );
        let once = quote!(::symmem::__private::routed_boxed_future::<u32, _>(
            false,
            "tp",
            async move { 1 }
        ))
        .to_string();
        assert!(squash(&out).contains(&squash(&once)), "{once}\n{out}");
        let twice = quote!(return ::symmem::__private::routed_boxed(false, "tp", { let __symmem_future: #ret = make(); __symmem_future })).to_string();
        assert!(squash(&out).contains(&squash(&twice)), "{twice}\n{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }
    // An `async` block in such a body is the future's code: not flagged as deferred.
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                std::boxed::Box::pin(async move { h().await })
            }
        ),
    );
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("routed_boxed_future :: < () , _ >"), "{out}");
}

/// Returned lazy iterators are routed around each `next`.
#[test]
fn returned_iterators_are_routed() {
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f(n: usize) -> impl Iterator<Item = Result<Buffer<f32>, Error>> + '_ {
                (0..n).map(|i| symmem::alloc(i))
            }
        ),
    );
    assert!(out.contains("routed_iter :: < Result < Buffer < f32 > , Error > , _ > (false , \"tp\" , (0 .. n) . map (| i | symmem :: alloc (i)))"), "{out}");
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f() -> impl DoubleEndedIterator + ExactSizeIterator {
                v.into_iter()
            }
        ),
    );
    assert!(
        out.contains(":: symmem :: __private :: routed (false , \"tp\" , v . into_iter ())"),
        "{out}"
    );
}

/// Returned closures, boxed iterators and streams cannot be routed: an error on the return type,
/// with the fix; the function is still emitted.
#[test]
fn returned_closures_and_streams_are_rejected() {
    let cases = [
        (
            quote!(impl Fn(usize) -> Buffer<f32>),
            "a closure (`impl Fn*`)",
        ),
        (
            quote!(impl FnMut() + Send + 'static),
            "a closure (`impl Fn*`)",
        ),
        (quote!(Box<dyn FnOnce() -> u32 + Send>), "a boxed closure"),
        (quote!(std::sync::Arc<dyn Fn()>), "a boxed closure"),
        (quote!(&'static dyn Fn()), "a closure (`&dyn Fn*`)"),
        (
            quote!(Box<dyn Iterator<Item = u32>>),
            "a boxed lazy iterator",
        ),
        (quote!(impl Stream<Item = u32>), "a stream"),
        (quote!(BoxStream<'static, u32>), "a stream"),
        (
            quote!(Box<dyn Future<Output = u32> + Unpin>),
            "an unpinned boxed future",
        ),
    ];
    for (ret, what) in cases {
        let out = ex(
            quote!(group = "dp"),
            quote!(
                fn f() -> #ret {
                    panic!("never called")
                }
            ),
        );
        assert!(out.contains(what), "{ret}: {out}");
        assert!(
            out.contains("group \\\"dp\\\"'s symmetric pool"),
            "{ret}: {out}"
        );
        assert!(out.starts_with("fn f ()"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
    }
    let out = ex(
        quote!(group = "dp"),
        quote!(
            fn f() -> Box<dyn Fn()> {
                panic!("never called")
            }
        ),
    );
    assert!(out.contains("symmem::window(\\\"dp\\\")"), "{out}");
}

/// The body `#[tokio::main]` gives an `async fn` (that attribute was above this one): one error
/// saying to put `#[symmetric_memory]` above it, not the capture check on its `async` block.
#[test]
fn below_tokio_main_says_to_move_the_attribute() {
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn main() {
                let body = async {
                    let b = symmem::alloc::<f32>(4);
                };
                #[allow(clippy::expect_used, clippy::diverging_sub_expression)]
                {
                    return tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                        .expect("Failed building the Runtime")
                        .block_on(body);
                }
            }
        ),
    );
    assert!(
        out.contains("put `#[symmetric_memory(..)]` above `#[tokio::main]`"),
        "{out}"
    );
    assert_eq!(out.matches("compile_error").count(), 1, "{out}");
    // Blocking on a future by hand is not tokio's shape: the capture check reports the
    // `async` block instead.
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn run(rt: &Runtime) {
                let body = async { 1 };
                rt.block_on(body);
            }
        ),
    );
    assert!(!out.contains("above `#[tokio::main]`"), "{out}");
    assert!(out.contains("deferred-async"), "{out}");
}

/// `capture = "never"` on a method names `Type::method` (through `Self`); `#[track_caller]` is
/// added where Rust allows it.
#[test]
fn capture_never_names_methods_and_tracks_the_caller() {
    let out = ex(
        quote!(group = "tp", capture = "never"),
        quote!(
            fn dump(&self) {}
        ),
    );
    assert!(out.starts_with("# [track_caller] fn dump"), "{out}");
    assert!(
        out.contains("enter_no_capture_method :: < Self > (false , \"tp\" , \"dump\")"),
        "{out}"
    );
    for item in [
        quote!(
            extern "C" fn f() {}
        ),
        quote!(
            fn main() {}
        ),
        quote!(
            #[track_caller]
            fn f() {}
        ),
        quote!(
            async fn f() {}
        ),
    ] {
        let out = ex(quote!(group = "tp", capture = "never"), item.clone());
        assert_eq!(
            out.matches("track_caller").count(),
            usize::from(item.to_string().contains("track_caller")),
            "{out}"
        );
    }
}

/// The async body keeps the braces (and spans) of the body as written.
#[test]
fn async_body_keeps_its_brace_span() {
    let item: TokenStream = "async fn f() -> u32 {\n 1 }".parse().unwrap();
    let body_span = match item.clone().into_iter().last() {
        Some(proc_macro2::TokenTree::Group(g)) => g.span(),
        _ => unreachable!(),
    };
    let out = expand(quote!(group = "tp"), item);
    let f: syn::ItemFn = syn::parse2(out).unwrap();
    let span = |s: proc_macro2::Span| format!("{s:?}");
    assert_eq!(span(f.block.brace_token.span.join()), span(body_span));
    // The `async move` block's braces are the body's too.
    let inner = quote::ToTokens::to_token_stream(&f.block)
        .into_iter()
        .find_map(|t| match t {
            proc_macro2::TokenTree::Group(g) => Some(g.stream()),
            _ => None,
        })
        .unwrap();
    let mut after_move = false;
    let mut found = false;
    for t in inner {
        match t {
            proc_macro2::TokenTree::Ident(i) if i == "move" => after_move = true,
            proc_macro2::TokenTree::Group(g) if after_move => {
                assert_eq!(span(g.span()), span(body_span));
                found = true;
                break;
            }
            proc_macro2::TokenTree::Group(g) => {
                for t in g.stream() {
                    if let proc_macro2::TokenTree::Group(b) = t {
                        if b.delimiter() == proc_macro2::Delimiter::Brace {
                            assert_eq!(span(b.span()), span(body_span));
                            found = true;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    assert!(found);
}

/// `crate = ".."` paths with generic arguments are an error on the string, never a panic, and
/// the function is still emitted; a valid `crate` path's generated segments carry its span.
#[test]
fn crate_paths_with_generics_are_errors() {
    for krate in ["symmem<u8>", "a::<b>", "a::b<'c>::d", "Fn(u8)"] {
        let out = ex(
            quote!(group = "tp", crate = #krate),
            quote!(
                fn f() {}
            ),
        );
        assert!(out.starts_with("fn f () { }"), "{krate}: {out}");
        assert!(out.contains("compile_error"), "{krate}: {out}");
    }
}

/// `macro_rules!` fragments arrive in invisible groups (`Delimiter::None`): they are accepted for
/// every argument.
#[test]
fn invisible_groups_are_accepted() {
    use proc_macro2::{Delimiter, Group, TokenTree};
    let none = |t: TokenStream| TokenTree::Group(Group::new(Delimiter::None, t));
    let (g, d, c, k) = (
        none(quote!("tp")),
        none(quote!(!self.on)),
        none(quote!("never")),
        none(quote!("::my::sm")),
    );
    let out = ex(
        quote!(group = #g, disabled = #d, capture = #c, crate = #k),
        quote!(
            fn f(&self) {}
        ),
    );
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("enter_no_capture_method"), "{out}");
    let nested = none(quote!(#g));
    let out = ex(
        quote!(group = #nested),
        quote!(
            fn f() {}
        ),
    );
    assert!(!out.contains("compile_error"), "{out}");
}

/// A body that does not parse is emitted as written (with the window), and only the compiler
/// reports the syntax error: once.
#[test]
fn body_syntax_errors_are_left_to_the_compiler() {
    let out = ex(
        quote!(group = "tp"),
        quote!(
            fn f() -> u32 {
                let x = ;
                x
            }
        ),
    );
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("let x = ;"), "{out}");
    let never = ex(
        quote!(group = "tp", capture = "never"),
        quote!(
            fn f() {
                let x = ;
            }
        ),
    );
    assert!(
        never.contains("enter_no_capture (false , \"tp\" , \"f\")"),
        "{never}"
    );
    assert!(out.contains("enter_unless (false , \"tp\")"), "{out}");
}

/// The attribute on a statement or an expression says where it goes.
#[test]
fn statements_and_expressions_are_rejected_with_the_place() {
    for (item, want) in [
        (quote!(let x = 1;), "not to a `let` statement"),
        (quote!(|| 1), "not to a closure"),
        (quote!(x + 1), "not to an expression"),
    ] {
        let out = ex(quote!(group = "tp"), item.clone());
        assert!(out.contains(want), "{item}: {out}");
    }
}
