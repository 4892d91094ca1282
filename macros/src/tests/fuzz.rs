//! No-panic fuzzing of [`crate::expand::expand`]: thousands of generated attribute argument
//! lists and function shapes (as token strings). Every input must produce tokens (the expansion
//! or `compile_error!`s), never a panic; when the input is a function, the output must parse as
//! Rust items; valid arguments on a clean function must expand without errors.

use crate::expand::expand;
use proc_macro2::TokenStream;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "group", "disabled", "capture", "crate", "grp", "Group", "name", "enabled", "r#group", "async",
    "self", "_",
];
const VALUES: &[&str] = &[
    "\"tp\"",
    "\"\"",
    "\"1x\"",
    "\"a b\"",
    "\"never\"",
    "\"checked\"",
    "\"nevr\"",
    "\"::symmem\"",
    "\"::\"",
    "\"a::<b>\"",
    "true",
    "false",
    "!self.on",
    "1",
    "1.5",
    "'c'",
    "b\"x\"",
    "tp",
    "x == y",
    "f::<A, B>(1, 2)",
    "{ let a = 1; a > 0 }",
    "|| true",
    "(a, b)",
    "[1, 2]",
    "",
];
const SEPARATORS: &[&str] = &[", ", ",", " ", " = ", ": ", "; ", ",, "];

const STMTS: &[&str] = &[
    "let a = symmem::alloc::<f32>(4)?;",
    "s.synchronize()?;",
    "let v = b.to_host_vec()?;",
    "std::thread::sleep(d);",
    "thread::spawn(move || drop(g));",
    "let f = async { 1 };",
    "let c = async move |x: u32| x;",
    "g.reserve_symmetric(1 << 20)?;",
    "#[symmem::allow_capture_unfit(reason = \"start-up\")] g.reserve_symmetric(1)?;",
    "#[symmem::allow_capture_unfit(reason = \"\")] s.synchronize()?;",
    "#[allow_capture_unfit] s.synchronize()?;",
    "#[allow_capture_unfit(reason = \"x\")] let a = 1;",
    "let x = f(#[allow_capture_unfit(reason = \"x\")] 1);",
    "fn nested() { s.synchronize(); }",
    "#[symmetric_memory(group = \"dp\")] fn inner() {}",
    "let _ = format!(\"{}\", b.to_host_vec()?.len());",
    "let v = vec![0u8; 4];",
    "match x { #[allow_capture_unfit(reason = \"x\")] _ => {} }",
    "let s = S { #[allow_capture_unfit(reason = \"x\")] a: 1 };",
    "if a { return Ok(()); }",
    "loop { break; }",
    "let __symmem_window = 3;",
    "x.await;",
    "impl X { fn m(&self) { s.synchronize(); } }",
    "let c = || thread::scope(|s| ());",
    "<Buffer<f32>>::to_host_vec(&b)?;",
    "Stream::synchronize(&s)?;",
    "let t = thread::Builder::new();",
    "macro_rules! m { () => {} }",
    "unsafe { g(); }",
];

const PREFIXES: &[&str] = &[
    "fn",
    "pub fn",
    "pub(crate) fn",
    "async fn",
    "unsafe fn",
    "const fn",
    "extern \"C\" fn",
    "pub async unsafe fn",
    "#[inline] /// doc\n fn",
    "#[symmetric_memory(group = \"x\")] fn",
    "#[symmem::allow_capture_unfit(reason = \"x\")] fn",
];
const SIGNATURES: &[&str] = &[
    "f()",
    "f(&self, h: &Buffer<bf16>) -> Result<Buffer<bf16>, Error>",
    "f<'a, T: Copy>(x: &'a T) -> &'a T where T: Send",
    "f(self: Box<Self>, (a, b): (u32, u32)) -> impl Sized",
    "f(mut self, _: u8) -> !",
    "r#type(x: impl Fn() -> u32) -> Self",
    "f<const N: usize>(a: [u8; N])",
];
const OTHER_ITEMS: &[&str] = &[
    "struct S;",
    "struct S { a: u32 }",
    "enum E { A }",
    "impl S { fn f() {} }",
    "trait T { fn f(&self); }",
    "fn f(&self);",
    "pub fn f(x: u32) -> u32;",
    "mod m {}",
    "static X: u32 = 1;",
    "const X: u32 = 1;",
    "use a::b;",
    "type T = u32;",
    "extern \"C\" { fn f(); }",
    "macro_rules! m { () => {} }",
    "",
    "fn",
    "fn f(",
    "fn f() -> {}",
    "this is not rust",
    "{ }",
    "#[inner] fn f() { #![allow(unused)] 1 }",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(list)
}

fn attr_strategy() -> impl Strategy<Value = String> {
    let arg =
        (pick(KEYS), pick(SEPARATORS), pick(VALUES)).prop_map(|(k, s, v)| format!("{k}{s}{v}"));
    prop::collection::vec((arg, pick(SEPARATORS)), 0..5).prop_map(|args| {
        args.into_iter()
            .map(|(a, sep)| format!("{a}{sep}"))
            .collect::<String>()
    })
}

fn item_strategy() -> impl Strategy<Value = String> {
    let func = (
        pick(PREFIXES),
        pick(SIGNATURES),
        prop::collection::vec(pick(STMTS), 0..6),
        any::<bool>(),
    )
        .prop_map(|(p, s, stmts, tail)| {
            let tail = if tail { " Ok(())" } else { "" };
            format!("{p} {s} {{ {}{tail} }}", stmts.join(" "))
        });
    prop_oneof![4 => func, 1 => pick(OTHER_ITEMS).prop_map(String::from)]
}

fn tokens(s: &str) -> Option<TokenStream> {
    s.parse().ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Arbitrary argument lists and items: tokens out, no panic.
    #[test]
    fn expand_never_panics(attr in attr_strategy(), item in item_strategy()) {
        let (Some(a), Some(i)) = (tokens(&attr), tokens(&item)) else { return Ok(()) };
        let is_fn = syn::parse2::<syn::ItemFn>(i.clone()).is_ok();
        let out = expand(a, i);
        if is_fn {
            prop_assert!(syn::parse2::<syn::File>(out.clone()).is_ok(), "unparsable output for {attr:?} {item:?}: {out}");
        }
        prop_assert!(!out.is_empty() || item.trim().is_empty());
    }

    /// Valid arguments on clean functions expand without errors.
    #[test]
    fn valid_input_expands_cleanly(
        group in "[A-Za-z_][A-Za-z0-9_]{0,10}",
        disabled in prop::option::of(pick(&["true", "false", "!self.on", "x == y", "f::<A, B>(1, 2)"])),
        never in any::<bool>(),
        prefix in pick(&["fn", "pub fn", "async fn", "unsafe fn", "extern \"C\" fn"]),
        sig in pick(SIGNATURES),
        stmts in prop::collection::vec(pick(&["let a = symmem::alloc::<f32>(4)?;", "if a { return Ok(()); }", "let __symmem_window = 3;", "loop { break; }"]), 0..4),
    ) {
        let mut attr = format!("group = \"{group}\"");
        if let Some(d) = disabled { attr.push_str(&format!(", disabled = {d}")); }
        if never { attr.push_str(", capture = \"never\""); }
        let item = format!("{prefix} {sig} {{ {} }}", stmts.join(" "));
        let out = expand(attr.parse().unwrap(), item.parse().unwrap());
        let text = out.to_string();
        prop_assert!(!text.contains("compile_error"), "{attr} / {item}: {text}");
        prop_assert!(syn::parse2::<syn::File>(out).is_ok());
        let quoted = format!("\"{group}\"");
        prop_assert!(text.contains(&quoted), "{}", text);
    }

    /// Random token soup (balanced by construction of `TokenStream` parsing).
    #[test]
    fn token_soup_never_panics(attr in "[a-z=\",:;!(){}\\[\\] 0-9]{0,40}", item in "[a-z=\",:;!(){}<>&'\\[\\] #0-9]{0,80}") {
        if let (Some(a), Some(i)) = (tokens(&attr), tokens(&item)) {
            let _ = expand(a, i);
        }
    }
}

// Every argument form, as a `macro_rules!` would pass it: values (and whole arguments) in
// invisible groups (`Delimiter::None`), `crate` paths with generic arguments, and functions
// returning deferred work (futures, iterators, closures, streams), with `return`s and tails.

const CRATE_PATHS: &[&str] = &[
    "\"symmem<u8>\"",
    "\"a::<b>\"",
    "\"a::b<'c>::d\"",
    "\"<T as X>::y\"",
    "\"Fn(u8) -> u8\"",
    "\"::sm\"",
    "\"crate::re::sm\"",
    "\"self\"",
    "\"std\"",
    "\"::\"",
    "\"a::\"",
    "\"\"",
    "\"a b\"",
    "sm",
    "::symmem",
    "symmem<u8>",
];
const GROUPED_VALUES: &[&str] = &[
    "\"tp\"",
    "\"never\"",
    "\"checked\"",
    "\"!self.on\"",
    "\"no\"",
    "true",
    "!self.on",
    "x == y",
    "GROUP",
    "1",
    "\"1x\"",
    "(\"tp\")",
    "concat!(\"t\", \"p\")",
];
const RETURN_TYPES: &[&str] = &[
    "",
    "-> u32",
    "-> impl Future<Output = Result<u32, Error>> + Send + '_",
    "-> impl Future<Output = impl Sized>",
    "-> impl core::future::Future",
    "-> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = u32> + ::core::marker::Send + 'async_trait>>",
    "-> Pin<Box<dyn Future<Output = ()>>>",
    "-> BoxFuture<'a, u32>",
    "-> LocalBoxFuture<'static, ()>",
    "-> Box<dyn Future<Output = u32> + Unpin>",
    "-> impl Iterator<Item = Result<Buffer<f32>, Error>> + '_",
    "-> impl DoubleEndedIterator + ExactSizeIterator",
    "-> impl Fn(usize) -> Buffer<f32>",
    "-> Box<dyn FnMut() + Send>",
    "-> &'static dyn Fn()",
    "-> impl Stream<Item = u32>",
    "-> BoxStream<'static, u32>",
    "-> (impl Future<Output = u32>)",
    "-> !",
    "-> Pin<Box<dyn Stream<Item = u8>>>",
    "-> Pin<u8>",
    "-> Box<u8>",
];
const DEFERRED_BODIES: &[&str] = &[
    "",
    "g()",
    "async move { 1 }",
    "Box::pin(async move { let __self = self; let __ret: u32 = { 1 }; __ret })",
    "if x { return g(); } h()",
    "return g();",
    "let c = || return 1; c",
    "fn inner() -> u32 { return 2; } inner()",
    "panic!(\"x\")",
    "loop { return f; }",
    "(0..n).map(|i| symmem::alloc(i))",
    "move || symmem::alloc::<f32>(n)",
    "let body = async { 1 }; { return rt.block_on(body); }",
    "let x = ; x",
    "let b = symmem::opt_out().is_active(); b",
    "#[symmem::allow_capture_unfit(reason = \"x\")] s.synchronize()?; g()",
];

fn none_group(tokens: TokenStream) -> proc_macro2::TokenTree {
    proc_macro2::TokenTree::Group(proc_macro2::Group::new(
        proc_macro2::Delimiter::None,
        tokens,
    ))
}

/// One `key = value` argument; the value (or the whole argument) possibly in invisible groups.
fn grouped_arg_strategy() -> impl Strategy<Value = TokenStream> {
    let value = prop_oneof![pick(GROUPED_VALUES), pick(CRATE_PATHS), pick(VALUES)];
    (pick(KEYS), value, 0..3u8, any::<bool>()).prop_map(|(k, v, depth, whole)| {
        let key = tokens(k).unwrap_or_default();
        let mut value = tokens(v).unwrap_or_default();
        for _ in 0..depth {
            value = none_group(value).into();
        }
        let mut arg = key;
        arg.extend(tokens("=").unwrap_or_default());
        arg.extend(value);
        if whole {
            none_group(arg).into()
        } else {
            arg
        }
    })
}

/// `key = value` with a value meant for that key (grouped or not), so that valid arguments
/// meet the bad ones.
fn keyed_arg_strategy() -> impl Strategy<Value = TokenStream> {
    let key_value = prop_oneof![
        2 => Just(("group", "\"tp\"")),
        2 => pick(CRATE_PATHS).prop_map(|v| ("crate", v)),
        1 => pick(GROUPED_VALUES).prop_map(|v| ("disabled", v)),
        1 => pick(GROUPED_VALUES).prop_map(|v| ("capture", v)),
    ];
    (key_value, 0..3u8).prop_map(|((k, v), depth)| {
        let mut value = tokens(v).unwrap_or_default();
        for _ in 0..depth {
            value = none_group(value).into();
        }
        let mut arg = tokens(&format!("{k} =")).unwrap_or_default();
        arg.extend(value);
        arg
    })
}

fn grouped_attr_strategy() -> impl Strategy<Value = TokenStream> {
    let arg = prop_oneof![grouped_arg_strategy(), keyed_arg_strategy()];
    prop::collection::vec((arg, prop::bool::weighted(0.9)), 0..5).prop_map(|args| {
        let mut out = TokenStream::new();
        for (arg, comma) in args {
            out.extend(arg);
            if comma {
                out.extend(tokens(",").unwrap_or_default());
            }
        }
        out
    })
}

/// A function returning (or not) deferred work; the return type possibly in an invisible
/// group (a `$t:ty`).
fn deferred_item_strategy() -> impl Strategy<Value = TokenStream> {
    (
        pick(&["fn", "pub fn", "async fn", "unsafe fn", "extern \"C\" fn"]),
        pick(&["f", "f<'a>(&'a self)", "main", "r#type"]),
        pick(RETURN_TYPES),
        pick(DEFERRED_BODIES),
        any::<bool>(),
    )
        .prop_map(|(prefix, name, ret, body, group_ret)| {
            let name = if name.contains('(') {
                name.to_string()
            } else {
                format!("{name}()")
            };
            let mut out = tokens(&format!("{prefix} {name}")).unwrap_or_default();
            let ret_tokens = tokens(ret).unwrap_or_default();
            let mut ret_iter = ret_tokens.clone().into_iter();
            match (group_ret, ret_iter.next(), ret_iter.next()) {
                (true, Some(dash), Some(gt)) => {
                    out.extend([dash, gt]);
                    out.extend([none_group(ret_iter.collect())]);
                }
                _ => out.extend(ret_tokens),
            }
            out.extend(tokens(&format!("{{ {body} }}")).unwrap_or_default());
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// 10,000 inputs of every argument form (invisible groups, generic `crate` paths) on
    /// functions returning deferred work: tokens out, never a panic; a function is always
    /// emitted, and the output parses.
    #[test]
    fn grouped_arguments_and_deferred_returns_never_panic(
        attr in grouped_attr_strategy(),
        item in prop_oneof![3 => deferred_item_strategy(), 1 => item_strategy().prop_map(|s| tokens(&s).unwrap_or_default())],
    ) {
        let text = item.to_string();
        let is_fn = syn::parse2::<syn::ItemFn>(item.clone()).is_ok();
        let out = std::panic::catch_unwind(|| expand(attr.clone(), item.clone()));
        let out = match out {
            Ok(out) => out,
            Err(_) => return Err(TestCaseError::fail(format!("panicked on {attr} / {text}"))),
        };
        if is_fn {
            prop_assert!(syn::parse2::<syn::File>(out.clone()).is_ok(), "unparsable output for {attr} / {text}: {out}");
            let f: syn::File = syn::parse2(out.clone()).unwrap();
            prop_assert!(f.items.iter().any(|i| matches!(i, syn::Item::Fn(_))), "function lost: {attr} / {text}: {out}");
        }
        prop_assert!(!out.is_empty() || text.trim().is_empty());
    }
}
