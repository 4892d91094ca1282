//! Validation of the attribute's arguments: required `group`, value types, unknown and
//! duplicated keys, the group-name rule (from `symmem_rules::names`). Every problem becomes an
//! error on the offending tokens; all of them are collected before the expansion reports them.

use super::parse::{RawArg, RawArgs, KEYS};
use super::suggest::{did_you_mean, unknown_key_message};
use crate::errors::Errors;
use proc_macro2::Span;
use quote::quote;
use symmem_rules::names::{group_name_problem, GROUP_NAME_RULE};
use syn::{Expr, ExprLit, Lit, LitStr, Path};

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
    /// Path of the facade crate (`crate = "..."`, else the facade's name in the calling
    /// package's manifest: `::symmem`, or `::sm` for `sm = { package = "symmem", .. }`).
    pub(crate) krate: Path,
    /// The span of the `crate = ".."` string, when one was given.
    pub(crate) krate_span: Option<Span>,
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
    let mut krate: Option<(Path, Span)> = None;
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
        krate_span: krate.as_ref().map(|(_, s)| *s),
        krate: krate.map_or_else(super::facade::default_path, |(p, _)| p),
    });
    Validated {
        args,
        capture: capture_mode,
    }
}

/// `value` without the invisible groups (`Delimiter::None`) a `macro_rules!` fragment
/// (`$g:literal`, `$g:expr`) arrives in.
pub(crate) fn ungroup(value: &Expr) -> &Expr {
    match value {
        Expr::Group(g) if g.attrs.is_empty() => ungroup(&g.expr),
        other => other,
    }
}

fn as_lit_str(value: &Expr) -> Option<&LitStr> {
    match ungroup(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s),
            attrs,
        }) if attrs.is_empty() => Some(s),
        _ => None,
    }
}

/// Why `value` is not a string literal, with the form to write instead.
fn not_a_string(key: &str, value: &Expr, example: &str) -> String {
    match ungroup(value) {
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
                "invalid group name {:?}: {why}; group names are identifiers ({GROUP_NAME_RULE}), e.g. `group = \"tp\"`",
                name
            ),
        );
        return None;
    }
    Some(lit.clone())
}

fn validate_disabled(value: Expr, errors: &mut Errors) -> Option<Expr> {
    match ungroup(&value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let v = s.value();
            // The string's contents, when they are an expression: the same without quotes.
            // The string's contents when they are an expression (`"!self.on"`); a word
            // (`"no"`, `"off"`) is read as the `bool` it means.
            let word = v.trim().to_ascii_lowercase();
            let fix = match s.parse::<Expr>() {
                _ if ["false", "no", "off", "n", "0"].contains(&word.as_str()) => {
                    "false".to_string()
                }
                Ok(Expr::Path(p)) if p.path.get_ident().is_some() => "true".to_string(),
                Ok(e) if !matches!(e, Expr::Lit(_)) => v.trim().to_string(),
                _ => "true".to_string(),
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

fn validate_crate(value: &Expr, errors: &mut Errors) -> Option<(Path, Span)> {
    let Some(lit) = as_lit_str(value) else {
        let message = match ungroup(value) {
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
        Ok(path) if !lit.value().trim().is_empty() => {
            if path.segments.iter().any(|s| !s.arguments.is_none()) {
                errors.spanned(
                    lit,
                    format!(
                        "`crate = {:?}` has generic arguments: write the plain path of the symmem facade (a module path, no `<..>`), e.g. `crate = \"::symmem\"`",
                        lit.value()
                    ),
                );
                return None;
            }
            Some((path, lit.span()))
        }
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
