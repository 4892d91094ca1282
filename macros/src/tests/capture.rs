//! The capture checks: every pattern caught, what is not caught, `async fn` bodies, the escape
//! hatch (honoured, removed, every misuse), silent mode, nested annotated functions.

use crate::capture::{check_body, Mode};
use crate::errors::Errors;
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

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
        (
            quote!(let g = ctx.add_group("x", comm)?;),
            "collective set-up",
        ),
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
        (
            quote!(let ctx = symmem::cuda::init_rank(0, 2, 0, &id, cfg)?;),
            "collective set-up",
        ),
        (
            quote!(cuda::init_rank(0, 2, 0, &id, cfg)?;),
            "collective set-up",
        ),
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
