//! Argument parsing and validation: valid arguments and defaults, every error of one attribute
//! reported together, group names, duplicates and bare keys, syntax recovery.

use crate::args::{validate, Capture, RawArgs, Validated};
use crate::errors::Errors;
use proc_macro2::Span;
use quote::quote;
use syn::LitStr;

fn run(attr: proc_macro2::TokenStream) -> (Validated, Vec<String>) {
    let raw: RawArgs = syn::parse2(attr).unwrap();
    let mut errors = Errors::default();
    let v = validate(raw, &mut errors);
    (v, errors.messages())
}

#[test]
fn valid_arguments() {
    let (v, e) = run(quote!(
        group = "tp",
        disabled = !self.on,
        capture = "never",
        crate = "my::symmem"
    ));
    assert!(e.is_empty(), "{e:?}");
    let args = v.args.unwrap();
    assert_eq!(args.group.value(), "tp");
    assert!(args.disabled.is_some());
    assert_eq!(args.capture, Capture::Never);
    let k = &args.krate;
    assert_eq!(quote!(#k).to_string(), "my :: symmem");
}

#[test]
fn defaults() {
    let (v, e) = run(quote!(group = "tp",));
    assert!(e.is_empty());
    let args = v.args.unwrap();
    assert_eq!(args.capture, Capture::Checked);
    let k = &args.krate;
    assert_eq!(quote!(#k).to_string(), ":: symmem");
}

#[test]
fn all_errors_together() {
    let (v, e) = run(quote!(
        grop = "tp",
        capture = "nevr",
        disabled = "yes",
        crate = symmem,
        x
    ));
    assert!(v.args.is_none());
    assert_eq!(v.capture, None);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(e[0].contains("did you mean `group`"), "{}", e[0]);
    assert!(e[1].contains("did you mean \"never\""), "{}", e[1]);
    assert!(e[2].contains("not a string"), "{}", e[2]);
    assert!(e[3].contains("crate = \"symmem\""), "{}", e[3]);
    assert!(e[4].contains("unknown argument `x`"), "{}", e[4]);
    let (_, e) = run(quote!(capture = "never"));
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("missing `group"), "{}", e[0]);
}

#[test]
fn group_names() {
    for bad in ["", "1tp", "t p", "tp-1", &"a".repeat(65)] {
        let lit = LitStr::new(bad, Span::call_site());
        let (_, e) = run(quote!(group = #lit));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(e[0].contains("invalid group name"), "{}", e[0]);
    }
    for good in ["tp", "_x", "dp_2", "A"] {
        let lit = LitStr::new(good, Span::call_site());
        let (_, e) = run(quote!(group = #lit));
        assert!(e.is_empty(), "{good}: {e:?}");
    }
    let (_, e) = run(quote!(group = tp));
    assert!(e[0].contains("write `group = \"tp\"`"), "{}", e[0]);
    let (_, e) = run(quote!(group = TP_GROUP));
    assert!(e[0].contains("not a constant"), "{}", e[0]);
    let (_, e) = run(quote!(group = GROUP_NAME::X));
    assert!(e[0].contains("constants and expressions"), "{}", e[0]);
}

#[test]
fn duplicates_and_bare_keys() {
    let (_, e) = run(quote!(group = "a", group = "b", disabled));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("duplicate argument `group`"));
    assert!(e[1].contains("`disabled` needs a value"));
}

#[test]
fn syntax_recovery() {
    let (_, e) = run(quote!("tp", group(x), capture: "never", disabled = a b, group = "ok"));
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].contains("the group must be named"));
    assert!(e[1].contains("`group(...)`"));
    assert!(e[2].contains("not `capture: value`"));
    assert!(e[3].contains("expected `,`"));
    // A malformed `group` hides the "missing group" error.
    let (_, e) = run(quote!(group: "tp"));
    assert_eq!(e.len(), 1, "{e:#?}");
}

/// The facade's name in the calling package's manifest: `::sm` for a renamed dependency.
#[test]
fn facade_name_from_the_manifest() {
    use crate::args::facade_name;
    let renamed = r#"
[package]
name = "app"

[dependencies]
serde = "1"
sm = { package = "symmem", path = "../symmem" } # renamed
"#;
    assert_eq!(facade_name(renamed).as_deref(), Some("sm"));
    let table =
        "[target.'cfg(unix)'.dev-dependencies.my-sm]\npackage = \"symmem\"\nversion = \"0.1\"\n";
    assert_eq!(facade_name(table).as_deref(), Some("my_sm"));
    assert_eq!(facade_name("[dependencies]\nsymmem = \"0.1\"\n"), None);
    assert_eq!(
        facade_name(
            "[dependencies]\nsymmem = { version = \"0.1\" }\nsm = { package = \"symmem\" }\n"
        ),
        None,
        "named `symmem` too: `::symmem` works"
    );
    assert_eq!(facade_name("[package]\nname = \"symmem\"\n"), None);
    assert_eq!(
        facade_name("[dependencies]\nx = { package = \"symmem-runtime\" }\n"),
        None
    );
    assert_eq!(
        facade_name("[dependencies]\nfoo = { package = \"symmem\" }"),
        Some("foo".into())
    );
    // Not a dependency table.
    assert_eq!(
        facade_name("[features]\nsm = { package = \"symmem\" }\n"),
        None
    );
}

/// `disabled = "<expression>"` suggests the expression without the quotes.
#[test]
fn disabled_string_suggests_the_expression() {
    let (_, e) = run(quote!(group = "tp", disabled = "!self.on"));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = !self.on`")),
        "{e:?}"
    );
    let (_, e) = run(quote!(group = "tp", disabled = "yes"));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = true`")),
        "{e:?}"
    );
    let (_, e) = run(quote!(group = "tp", disabled = "no"));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = false`")),
        "{e:?}"
    );
    let (_, e) = run(quote!(group = "tp", disabled = "x == y"));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = x == y`")),
        "{e:?}"
    );
    let (_, e) = run(quote!(group = "tp", disabled = "false"));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = false`")),
        "{e:?}"
    );
    let (_, e) = run(quote!(group = "tp", disabled = ""));
    assert!(
        e.iter().any(|m| m.contains("write `disabled = true`")),
        "{e:?}"
    );
}

/// `macro_rules!` fragments (`$g:literal`, `$g:expr`) arrive in invisible groups: accepted.
#[test]
fn invisible_groups_in_every_argument() {
    use proc_macro2::{Delimiter, Group, TokenTree};
    let none = |t: proc_macro2::TokenStream| TokenTree::Group(Group::new(Delimiter::None, t));
    let (g, d, c, k) = (
        none(quote!("tp")),
        none(quote!(x == 1)),
        none(quote!("never")),
        none(quote!("my::sm")),
    );
    let (v, e) = run(quote!(group = #g, disabled = #d, capture = #c, crate = #k));
    assert!(e.is_empty(), "{e:?}");
    let args = v.args.unwrap();
    assert_eq!(args.group.value(), "tp");
    assert_eq!(args.capture, Capture::Never);
    let k = &args.krate;
    assert_eq!(quote!(#k).to_string(), "my :: sm");
    // A constant in a fragment is still a constant.
    let konst = none(quote!(GROUP));
    let (_, e) = run(quote!(group = #konst));
    assert!(e.iter().any(|m| m.contains("not a constant")), "{e:?}");
}
