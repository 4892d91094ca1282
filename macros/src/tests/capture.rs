//! The capture checks: every pattern caught, what is not caught, `async fn` bodies, the escape
//! hatch (honoured, removed, every misuse), silent mode, nested annotated functions, the
//! `disabled` expression, macro bodies that are not expressions, code behind `#[cfg(..)]`.

use crate::capture::{check_body, check_disabled, Mode};
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
            let _ = format!("{}", y.len());
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
        (quote!(tokio::spawn(async move { 1 });), "other thread"),
        (quote!(tokio::task::spawn(f);), "other thread"),
        (quote!(task::spawn(f);), "other thread"),
        (quote!(tokio::task::spawn_blocking(|| 1);), "other thread"),
        (quote!(task::spawn_blocking(|| 1);), "other thread"),
        (quote!(task::spawn_local(f);), "other thread"),
        (quote!(handle.spawn_blocking(|| 1);), "other thread"),
        (quote!(set.spawn_local(f);), "other thread"),
        (quote!(join_set.spawn(f);), "other thread"),
        (quote!(builder.spawn(|| 1)?;), "other thread"),
        (quote!(s.spawn(|| 1);), "other thread"),
        (quote!(rayon::scope(|s| 1);), "other thread"),
        (quote!(rayon::in_place_scope(|s| 1);), "other thread"),
        (quote!(rayon::scope_fifo(|s| 1);), "other thread"),
        (quote!(rayon::spawn_fifo(|| 1);), "other thread"),
        (quote!(rayon::join_context(|_| 1, |_| 2);), "other thread"),
        (quote!(pool.install(|| 1);), "other thread"),
        (quote!(ThreadPool::install(&pool, || 1);), "other thread"),
        (quote!(v.par_bridge().count();), "other thread"),
        (quote!(v.par_extend(w);), "other thread"),
        (quote!(v.par_chunks(4).count();), "other thread"),
        (quote!(v.par_chunks_mut(4).count();), "other thread"),
        (quote!(v.par_windows(2).count();), "other thread"),
        (quote!(v.par_sort();), "other thread"),
        (quote!(v.par_sort_unstable_by_key(|x| *x);), "other thread"),
        (quote!(v.par_split(|x| *x == 0).count();), "other thread"),
        (quote!(v.par_drain(..).count();), "other thread"),
        (quote!(v.into_par_iter().count();), "other thread"),
        (
            quote!(let (g, o) = symmem::capture(|| step())?;),
            "graph nesting",
        ),
        (
            quote!(symmem::capture::capture(|| step())?;),
            "graph nesting",
        ),
        (quote!(capture::capture(|| step())?;), "graph nesting"),
        (quote!(graph.replay()?;), "graph nesting"),
        (quote!(Graph::replay(&mut graph)?;), "graph nesting"),
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
        quote!(capture(|| 1);),
        quote!(let c = symmem::capture::is_capturing();),
        quote!(let n: u32 = s.parse()?;),
        quote!(let child = Command::new("ls").arg("-l").spawn()?;),
        quote!(let child = std::process::Command::new("ls").spawn()?;),
        quote!(let r = graph::replay;),
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

/// Each rule's id in the messages of `e`, in order.
fn rule_ids(e: &[String]) -> Vec<String> {
    e.iter()
        .map(|m| {
            let start = m.find("rule `").map_or(0, |i| i + 6);
            m[start..].split('`').next().unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn new_rules_have_their_ids() {
    let cases: Vec<(TokenStream, &str)> = vec![
        (quote!(tokio::spawn(f);), "other-task"),
        (quote!(h.spawn_blocking(f);), "other-task"),
        (quote!(rayon::scope(|s| 1);), "other-thread"),
        (quote!(v.par_chunks(2);), "other-thread"),
        (quote!(pool.install(f);), "other-thread"),
        (quote!(symmem::capture(f)?;), "nested-capture"),
        (quote!(g.replay()?;), "graph-replay"),
    ];
    for (stmt, id) in cases {
        assert_eq!(rule_ids(&errs(quote!(fn f() { #stmt }))), [id], "{stmt}");
    }
}

/// A call inside the arguments or receiver of a call flagged for the same rule is not
/// reported again; a different rule inside is.
#[test]
fn one_error_per_rule_per_call() {
    let e = errs(quote!(
        fn f() {
            std::thread::scope(|s| {
                s.spawn(|| v.par_iter().count());
                s.spawn(|| b.to_host_vec());
            });
        }
    ));
    assert_eq!(
        rule_ids(&e),
        ["other-thread", "device-to-host-copy"],
        "{e:#?}"
    );
    let e = errs(quote!(
        fn f() {
            let h = thread::Builder::new().name(n).spawn(|| 1)?;
        }
    ));
    assert_eq!(rule_ids(&e), ["other-thread"], "{e:#?}");
    assert!(e[0].contains("`.spawn(..)`"), "{e:#?}");
    // A task's `async` block is part of the task: one error.
    let e = errs(quote!(
        fn f() {
            tokio::spawn(async move { v.par_iter().count() });
        }
    ));
    assert_eq!(rule_ids(&e), ["other-task"], "{e:#?}");
    // ... but an `async` block elsewhere is its own error.
    let e = errs(quote!(
        fn f() {
            let a = b.to_host_vec(async { 1 });
        }
    ));
    assert_eq!(
        rule_ids(&e),
        ["device-to-host-copy", "deferred-async"],
        "{e:#?}"
    );
    // Siblings are separate calls: both reported.
    let e = errs(quote!(
        fn f() {
            let a = (v.par_iter().count(), w.par_iter().count());
        }
    ));
    assert_eq!(rule_ids(&e), ["other-thread", "other-thread"], "{e:#?}");
}

fn disabled_errs(mode: Mode, is_async: bool, e: TokenStream) -> Vec<String> {
    let expr: syn::Expr = syn::parse2(e).unwrap();
    let mut errors = Errors::default();
    check_disabled(&expr, mode, is_async, &mut errors);
    errors.messages()
}

#[test]
fn disabled_expression_is_checked() {
    for (e, id) in [
        (
            quote!(b.to_host_vec().unwrap().is_empty()),
            "device-to-host-copy",
        ),
        (quote!(symmem::synchronize().is_err()), "synchronize"),
        (
            quote!({
                let v = s.synchronize();
                v.is_err()
            }),
            "synchronize",
        ),
        (quote!(thread::spawn(|| 1).join().is_err()), "other-thread"),
        (quote!(matches!(g.empty_cache(), Ok(_))), "empty-cache"),
        (quote!(async { 1 }.is_pending()), "deferred-async"),
    ] {
        let m = disabled_errs(Mode::Checked, false, e.clone());
        assert_eq!(rule_ids(&m), [id], "{e}: {m:#?}");
        assert!(
            m[0].ends_with(symmem_rules::capture::DISABLED_NOTE),
            "{e}: {}",
            m[0]
        );
        assert!(
            !m[0].contains("put `#[symmem::allow_capture_unfit"),
            "{}",
            m[0]
        );
    }
    for e in [
        quote!(!route),
        quote!(self.disabled),
        quote!(cfg.get("x").is_none() || n == 0),
        quote!(std::env::var("X").is_ok()),
    ] {
        let m = disabled_errs(Mode::Checked, false, e.clone());
        assert!(m.is_empty(), "{e}: {m:#?}");
    }
    // `async` blocks are fine where the flag is computed inside an `async fn`.
    assert!(disabled_errs(Mode::Checked, true, quote!(f(async { 1 }))).is_empty());
    // Not checked when the function is not, or the mode is unknown.
    assert!(disabled_errs(Mode::Never, false, quote!(s.synchronize().is_err())).is_empty());
    assert!(disabled_errs(Mode::Silent, false, quote!(s.synchronize().is_err())).is_empty());
}

#[test]
fn hatch_in_disabled_expression_is_an_error() {
    let hatch_errors = |m: &[String]| {
        m.iter()
            .filter(|m| m.contains("cannot be used in `disabled = ..`"))
            .count()
    };
    for (mode, violations) in [(Mode::Checked, 1), (Mode::Never, 0)] {
        // The hatch is an error and silences nothing.
        let m = disabled_errs(
            mode,
            false,
            quote!({
                #[symmem::allow_capture_unfit(reason = "x")]
                let v = s.synchronize();
                v.is_err()
            }),
        );
        assert_eq!(hatch_errors(&m), 1, "{mode:?}: {m:#?}");
        assert_eq!(
            rule_ids(&m)
                .iter()
                .filter(|id| *id == "synchronize")
                .count(),
            violations,
            "{mode:?}: {m:#?}"
        );
        let m = disabled_errs(
            mode,
            false,
            quote!(f(
                #[allow_capture_unfit(reason = "x")]
                x
            )),
        );
        assert_eq!(m.len(), 1, "{mode:?}: {m:#?}");
        assert_eq!(hatch_errors(&m), 1, "{mode:?}: {m:#?}");
    }
    assert!(disabled_errs(
        Mode::Silent,
        false,
        quote!(f(
            #[allow_capture_unfit(reason = "x")]
            x
        ))
    )
    .is_empty());
}

/// Macro bodies that are not comma-separated expressions are scanned as tokens.
#[test]
fn macro_tokens_are_scanned() {
    let cases: Vec<(TokenStream, Vec<&str>)> = vec![
        (
            quote!(tracing::debug!(target: "x", ?field = buf.to_host_vec());),
            vec!["device-to-host-copy"],
        ),
        (
            quote!(tracing::info!(n = %x, "{}", s.synchronize().is_ok());),
            vec!["synchronize"],
        ),
        (
            quote!(let ok = matches!(x, Some(v) if v.synchronize().is_ok());),
            vec!["synchronize"],
        ),
        (
            quote!(let ok = matches!(x, Some(_) if symmem::synchronize().is_ok());),
            vec!["synchronize"],
        ),
        (
            quote!(my_dsl!(run => std::thread::spawn(|| 1), then => g.empty_cache::<u8>());),
            vec!["other-thread", "empty-cache"],
        ),
        (
            quote!(my_dsl!(a => symmem::alloc_from_host::<f32>(&v));),
            vec!["host-to-device-copy"],
        ),
        (
            quote!(my_dsl!(x => Stream::synchronize(&s));),
            vec!["synchronize"],
        ),
        (
            quote!(my_dsl!(x => { inner!(y => b.copy_to_host(&mut v)) });),
            vec!["device-to-host-copy"],
        ),
        (
            quote!(my_dsl!(x => async move { 1 });),
            vec!["deferred-async"],
        ),
        (quote!(my_dsl!(x => async |y| y);), vec!["deferred-async"]),
        (
            quote!(my_dsl!(x => async { s.synchronize() });),
            vec!["deferred-async"],
        ),
    ];
    for (stmt, want) in cases {
        let e = errs(quote!(fn f() { #stmt }));
        assert_eq!(rule_ids(&e), want, "{stmt}: {e:#?}");
    }
    for stmt in [
        quote!(my_dsl!(fn to_host_vec(x) -> u8 { 1 }, y: x.field, z = s.synchronize);),
        quote!(my_dsl!(a => Some(v), b => sleep(d), c => x.parse::<u8>());),
        quote!(my_dsl!(x: thread::Builder, y => f::<fn() -> u8>(z));),
        quote!(tracing::debug!(target: "x", ?field = buf.len());),
    ] {
        let e = errs(quote!(fn f() { #stmt }));
        assert!(e.is_empty(), "{stmt}: {e:#?}");
    }
    // The scan's violations are covered by the statement's escape hatch.
    let e = errs(quote!(
        fn f() {
            #[symmem::allow_capture_unfit(reason = "debug builds only")]
            tracing::debug!(target: "x", ?field = buf.to_host_vec());
        }
    ));
    assert!(e.is_empty(), "{e:#?}");
}

/// Code behind `#[cfg(..)]` is checked, and the message says so.
#[test]
fn cfg_statements_are_checked() {
    let e = errs(quote!(
        fn f() {
            #[cfg(feature = "debug")]
            s.synchronize();
            #[cfg(test)]
            let v = b.to_host_vec();
            #[cfg(debug_assertions)]
            tracing::debug!(target: "x", ?v = b.to_host_vec());
            match x {
                #[cfg(unix)]
                1 => g.empty_cache(),
                _ => g.reserve_symmetric(1),
            }
            let s = S {
                #[cfg(any())]
                a: thread::spawn(|| 1),
            };
            g.split_group(x);
        }
    ));
    assert_eq!(e.len(), 7, "{e:#?}");
    let notes: Vec<Option<&str>> = e
        .iter()
        .map(|m| {
            m.split("behind `#[cfg(")
                .nth(1)
                .and_then(|r| r.split(")]`").next())
        })
        .collect();
    assert_eq!(
        notes,
        [
            Some("feature = \"debug\""),
            Some("test"),
            Some("debug_assertions"),
            Some("unix"),
            None,
            Some("any ()"),
            None
        ],
        "{e:#?}"
    );
    assert!(e[0].contains("checked in every configuration"), "{}", e[0]);
    // The escape hatch works on such a statement.
    let e = errs(quote!(
        fn f() {
            #[cfg(feature = "debug")]
            #[symmem::allow_capture_unfit(reason = "debug builds are never captured")]
            s.synchronize();
        }
    ));
    assert!(e.is_empty(), "{e:#?}");
}

/// Token pieces for the no-panic property of the macro token scan and the `disabled` walk.
const PIECES: &[&str] = &[
    ".",
    "::",
    "<",
    ">",
    "->",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ";",
    "?",
    "=",
    "|",
    "||",
    "#",
    "!",
    "'a",
    "1",
    "\"s\"",
    "fn",
    "async",
    "move",
    "if",
    "Some",
    "v",
    "synchronize",
    "to_host_vec",
    "par_",
    "par_iter",
    "spawn",
    "thread",
    "std",
    "symmem",
    "capture",
    "replay",
    "Command",
    "new",
    "Type",
    "target:",
    "?field",
    "%x",
    "#[cfg(x)]",
    "#[symmem::allow_capture_unfit(reason = \"x\")]",
];

/// Concatenate pieces, keeping the result's brackets balanced (so that it lexes).
fn balanced(picks: &[usize]) -> String {
    let mut out = String::new();
    let mut open: Vec<char> = Vec::new();
    for &k in picks {
        let piece = PIECES[k % PIECES.len()];
        match piece {
            "(" | "{" | "[" => open.push(piece.chars().next().unwrap_or('(')),
            ")" | "}" | "]" => match open.pop() {
                Some('(') => {
                    out.push_str(") ");
                    continue;
                }
                Some('{') => {
                    out.push_str("} ");
                    continue;
                }
                Some(_) => {
                    out.push_str("] ");
                    continue;
                }
                None => continue,
            },
            _ => {}
        }
        out.push_str(piece);
        out.push(' ');
    }
    while let Some(c) = open.pop() {
        out.push(match c {
            '(' => ')',
            '{' => '}',
            _ => ']',
        });
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The token scan of any macro body, and the walk of any `disabled` expression, never
    /// panic.
    #[test]
    fn token_scan_and_disabled_walk_never_panic(
        picks in proptest::collection::vec(0usize..1000, 0..40),
        is_async in proptest::bool::ANY,
    ) {
        let body = balanced(&picks);
        if let Ok(tokens) = body.parse::<TokenStream>() {
            let item = quote!(fn f() { m!(#tokens); let x = n![#tokens]; });
            if let Ok(mut f) = syn::parse2::<syn::ItemFn>(item) {
                let mut errors = Errors::default();
                check_body(&mut f.block, Mode::Checked, is_async, &mut errors);
            }
            if let Ok(e) = syn::parse2::<syn::Expr>(tokens) {
                let mut errors = Errors::default();
                check_disabled(&e, Mode::Checked, is_async, &mut errors);
            }
        }
    }
}
