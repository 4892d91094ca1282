//! Validation of the attribute's arguments: required `group`, value types, unknown and
//! duplicated keys. Every problem becomes an error on the offending tokens; all of them are
//! collected before the expansion reports them.

use crate::errors::Errors;
use crate::parse::{RawArg, RawArgs};
use proc_macro2::Span;
use quote::quote;
use syn::{Expr, ExprLit, Lit, LitStr, Path};

/// The argument keys, in the order the grammar lists them.
pub(crate) const KEYS: &[&str] = &["group", "disabled", "capture", "crate"];

/// Words people write for one of the keys, and the key they mean.
const ALIASES: &[(&str, &str)] = &[
    ("name", "group"),
    ("pool", "group"),
    ("comm", "group"),
    ("group_name", "group"),
    ("enabled", "disabled"),
    ("enable", "disabled"),
    ("skip", "disabled"),
    ("mode", "capture"),
    ("graph", "capture"),
    ("krate", "crate"),
    ("symmem", "crate"),
    ("path", "crate"),
];

/// Whether the body is checked for capture fitness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Capture {
    /// `capture = "checked"` (the default): compile-time checks on.
    Checked,
    /// `capture = "never"`: no checks; the function refuses to run under capture.
    Never,
}

/// Validated arguments.
pub(crate) struct Args {
    /// The group name literal (validated; kept with its span).
    pub(crate) group: LitStr,
    /// The run-time `disabled` expression.
    pub(crate) disabled: Option<Expr>,
    /// The capture mode.
    pub(crate) capture: Capture,
    /// Path of the facade crate (`::symmem` unless `crate = "..."`).
    pub(crate) krate: Path,
}

/// What validation produced: the arguments when they are all valid, and the capture mode when
/// it is known for certain (so that body checks run only when they were asked for).
pub(crate) struct Validated {
    /// The arguments, when no argument error was found.
    pub(crate) args: Option<Args>,
    /// The capture mode, unless the `capture` argument itself was wrong.
    pub(crate) capture: Option<Capture>,
}

/// Validate `raw`, pushing every problem to `errors`.
pub(crate) fn validate(raw: RawArgs, errors: &mut Errors) -> Validated {
    let before = errors.len();
    let group_attempted = raw.group_attempted;
    for e in raw.errors {
        errors.push(e);
    }
    let mut group: Option<LitStr> = None;
    let mut disabled: Option<Expr> = None;
    let mut capture: Option<Capture> = None;
    let mut capture_bad = false;
    let mut krate: Option<Path> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut group_suggested = false;

    for RawArg { key, value } in raw.args {
        let name = key.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
        if !KEYS.contains(&name.as_str()) {
            let message = unknown_key_message(&name);
            group_suggested |= message.contains("did you mean `group`");
            errors.spanned(&key, message);
            continue;
        }
        if seen.contains(&name) {
            errors.spanned(
                &key,
                format!("duplicate argument `{name}`: give each argument once"),
            );
            if name == "capture" {
                capture_bad = true;
            }
            continue;
        }
        seen.push(name.clone());
        let Some(value) = value else {
            let example = match name.as_str() {
                "group" => "group = \"tp\"",
                "disabled" => "disabled = true",
                "capture" => "capture = \"never\"",
                _ => "crate = \"::symmem\"",
            };
            errors.spanned(&key, format!("`{name}` needs a value: write `{example}`"));
            capture_bad |= name == "capture";
            continue;
        };
        match name.as_str() {
            "group" => group = validate_group(&value, errors),
            "disabled" => disabled = validate_disabled(value, errors),
            "capture" => {
                capture = validate_capture(&value, errors);
                capture_bad |= capture.is_none();
            }
            _ => krate = validate_crate(&value, errors),
        }
    }

    if group.is_none() && !group_suggested && !group_attempted && !seen.iter().any(|k| k == "group")
    {
        errors.at(
            Span::call_site(),
            "missing `group = \"...\"`: name the group whose symmetric pool the body allocates from, e.g. `#[symmetric_memory(group = \"tp\")]`",
        );
    }
    let capture_mode = if capture_bad {
        None
    } else {
        Some(capture.unwrap_or(Capture::Checked))
    };
    if errors.len() > before {
        return Validated {
            args: None,
            capture: capture_mode,
        };
    }
    let args = group.map(|group| Args {
        group,
        disabled,
        capture: capture.unwrap_or(Capture::Checked),
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::symmem)),
    });
    Validated {
        args,
        capture: capture_mode,
    }
}

fn unknown_key_message(name: &str) -> String {
    let list = "`group`, `disabled`, `capture`, `crate`";
    if let Some((_, key)) = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
    {
        let extra = if *key == "disabled" && name.to_ascii_lowercase().starts_with("enable") {
            " (with the negated condition: `disabled = !condition`)"
        } else {
            ""
        };
        return format!(
            "unknown argument `{name}`: did you mean `{key}`?{extra} (arguments: {list})"
        );
    }
    match did_you_mean(name, KEYS) {
        Some(key) => {
            format!("unknown argument `{name}`: did you mean `{key}`? (arguments: {list})")
        }
        None => format!("unknown argument `{name}`: expected one of {list}"),
    }
}

/// The closest candidate to `word` by edit distance (case-insensitive), if close enough.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn as_lit_str(value: &Expr) -> Option<&LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s),
            attrs,
        }) if attrs.is_empty() => Some(s),
        _ => None,
    }
}

/// Why `value` is not a string literal, with the form to write instead.
fn not_a_string(key: &str, value: &Expr, example: &str) -> String {
    match value {
        Expr::Path(p) if p.path.get_ident().is_some() => {
            let ident = p.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            if ident.len() > 1 && ident.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                format!(
                    "`{key}` takes a string literal known at compile time, not a constant: write the value itself, e.g. `{example}`"
                )
            } else {
                format!("`{key}` takes a string literal: write `{key} = \"{ident}\"`")
            }
        }
        Expr::Lit(_) => format!("`{key}` takes a string literal, e.g. `{example}`"),
        _ => format!(
            "`{key}` takes a string literal known at compile time, e.g. `{example}` (constants and expressions are not accepted)"
        ),
    }
}

/// Why `name` is not a valid group name (the runtime's `validate_group_name` rules).
pub(crate) fn group_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 bytes")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("it contains a character other than ASCII letters, digits and `_`")
    } else {
        None
    }
}

fn validate_group(value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    let Some(lit) = as_lit_str(value) else {
        errors.spanned(value, not_a_string("group", value, "group = \"tp\""));
        return None;
    };
    let name = lit.value();
    if let Some(why) = group_name_problem(&name) {
        errors.spanned(
            lit,
            format!(
                "invalid group name {:?}: {why}; group names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes), e.g. `group = \"tp\"`",
                name
            ),
        );
        return None;
    }
    Some(lit.clone())
}

fn validate_disabled(value: Expr, errors: &mut Errors) -> Option<Expr> {
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let v = s.value();
            let fix = if v == "true" || v == "false" {
                v
            } else {
                "true".to_string()
            };
            errors.spanned(
                &value,
                format!(
                    "`disabled` takes a `bool` expression, not a string: write `disabled = {fix}`"
                ),
            );
            None
        }
        Expr::Lit(ExprLit { lit, .. }) if !matches!(lit, Lit::Bool(_)) => {
            errors.spanned(
                &value,
                "`disabled` takes a `bool` expression, e.g. `disabled = true` or `disabled = !self.enabled`",
            );
            None
        }
        _ => Some(value),
    }
}

fn validate_capture(value: &Expr, errors: &mut Errors) -> Option<Capture> {
    let Some(lit) = as_lit_str(value) else {
        errors.spanned(value, not_a_string("capture", value, "capture = \"never\""));
        return None;
    };
    match lit.value().as_str() {
        "checked" => Some(Capture::Checked),
        "never" => Some(Capture::Never),
        other => {
            let hint = match did_you_mean(other, &["checked", "never"]) {
                Some(c) => format!(" (did you mean \"{c}\"?)"),
                None => String::new(),
            };
            errors.spanned(
                lit,
                format!(
                    "unknown capture mode {other:?}{hint}: expected \"checked\" (the default: compile-time capture checks) or \"never\" (no checks; the function refuses to run during capture)"
                ),
            );
            None
        }
    }
}

fn validate_crate(value: &Expr, errors: &mut Errors) -> Option<Path> {
    let Some(lit) = as_lit_str(value) else {
        let message = match value {
            Expr::Path(p) => {
                let path = p.path.to_owned();
                format!(
                    "`crate` takes the path as a string literal: write `crate = \"{}\"`",
                    quote!(#path).to_string().replace(' ', "")
                )
            }
            _ => "`crate` takes the path as a string literal, e.g. `crate = \"::symmem\"`"
                .to_string(),
        };
        errors.spanned(value, message);
        return None;
    };
    match lit.parse::<Path>() {
        Ok(path) if !lit.value().trim().is_empty() => Some(path),
        _ => {
            errors.spanned(
                lit,
                format!(
                    "`crate = {:?}` is not a path: write the path of the symmem facade, e.g. `crate = \"::symmem\"` or `crate = \"my_reexports::symmem\"`",
                    lit.value()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("grup", KEYS), Some("group"));
        assert_eq!(did_you_mean("Group", KEYS), Some("group"));
        assert_eq!(did_you_mean("disable", KEYS), Some("disabled"));
        assert_eq!(did_you_mean("captrue", KEYS), Some("capture"));
        assert_eq!(did_you_mean("zzzzzz", KEYS), None);
        assert!(unknown_key_message("enabled").contains("disabled = !condition"));
        assert!(unknown_key_message("name").contains("did you mean `group`"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
