//! The escape hatch `#[symmem::allow_capture_unfit(reason = "...")]`: finding and removing it
//! on a statement, validating its arguments, and the errors for a hatch where it has no effect.

use super::scope::Scope;
use crate::errors::Errors;
use crate::syntax::{expr_attrs_mut, is_hatch, item_attrs_mut, HATCH};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Meta, Stmt, Token};

const HATCH_FORM: &str =
    "#[symmem::allow_capture_unfit(reason = \"why this never runs during capture\")]";

/// Validate an escape hatch's arguments, pushing what is wrong; whether it is well formed.
pub(crate) fn validate(attr: &Attribute, errors: &mut Errors) -> bool {
    let list = match &attr.meta {
        Meta::List(list) => list,
        _ => {
            errors.spanned(
                attr,
                format!("`#[{HATCH}]` needs a reason: write `{HATCH_FORM}`"),
            );
            return false;
        }
    };
    let parsed =
        list.parse_args_with(Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated);
    let Ok(items) = parsed else {
        errors.spanned(
            &list.tokens,
            format!("`#[{HATCH}]` takes one argument, `reason = \"...\"`: write `{HATCH_FORM}`"),
        );
        return false;
    };
    let mut ok = true;
    let mut reason = None;
    for nv in &items {
        if !nv.path.is_ident("reason") {
            errors.spanned(
                &nv.path,
                format!("unknown argument of `#[{HATCH}]`: expected `reason = \"...\"`"),
            );
            ok = false;
        } else if reason.is_some() {
            errors.spanned(&nv.path, "duplicate `reason`: give one reason");
            ok = false;
        } else {
            reason = Some(&nv.value);
        }
    }
    match reason {
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        })) if s.value().trim().is_empty() => {
            errors.spanned(
                s,
                "the reason is empty: say why this statement never runs during capture (or why it is fine there)",
            );
            ok = false;
        }
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(_),
            ..
        })) => {}
        Some(other) => {
            errors.spanned(
                other,
                "the reason must be a string literal: `reason = \"...\"`",
            );
            ok = false;
        }
        None if ok => {
            errors.spanned(
                attr,
                format!("`#[{HATCH}]` needs a reason: write `{HATCH_FORM}`"),
            );
            ok = false;
        }
        None => {}
    }
    ok
}

/// Why the well-formed hatch number `index` of a statement has no effect there (`on_item`: the
/// statement is an item), or `None` when it silences the statement's violations (or errors are
/// not reported at `scope`).
pub(crate) fn problem(index: usize, on_item: bool, scope: Scope) -> Option<String> {
    if index > 0 {
        return Some("duplicate `#[allow_capture_unfit]` on one statement: keep one".to_string());
    }
    if on_item {
        return Some(format!(
            "`#[{HATCH}]` goes on a statement that runs code, not on an item: nested items are not capture-checked; remove it"
        ));
    }
    match scope {
        Scope::Checked | Scope::Silent => None,
        Scope::Never => Some(format!(
            "`#[{HATCH}]` has no effect: the function has `capture = \"never\"`, so its body is not checked; remove the attribute"
        )),
        Scope::NestedItem => Some(format!(
            "`#[{HATCH}]` has no effect here: items nested in the body are not capture-checked (annotate the nested function with `#[symmetric_memory]` to check it); remove the attribute"
        )),
        Scope::DeferredAsync => Some(format!(
            "`#[{HATCH}]` has no effect inside an `async` block of a synchronous body; put it on the statement that holds the `async` block"
        )),
    }
}

/// Report a hatch whose statement broke no rule.
pub(crate) fn unused(attr: &Attribute, errors: &mut Errors) {
    errors.spanned(
        attr,
        format!(
            "unused escape hatch: nothing in this statement breaks a capture rule; remove `#[{HATCH}]`"
        ),
    );
}

/// Remove the hatches of `attrs`, a position where they do not belong (`place`), with an error
/// each when `report`.
pub(crate) fn strip_misplaced(
    attrs: Option<&mut Vec<Attribute>>,
    place: &str,
    report: bool,
    errors: &mut Errors,
) {
    let Some(attrs) = attrs else { return };
    for attr in take(attrs) {
        if report {
            errors.spanned(
                &attr,
                format!(
                    "`#[{HATCH}]` goes on a statement of the body (a `let` or an expression statement), not on {place}: move it to the statement"
                ),
            );
        }
    }
}

/// Remove and return the escape hatches of `attrs`.
pub(crate) fn take(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (hatches, rest): (Vec<_>, Vec<_>) = std::mem::take(attrs).into_iter().partition(is_hatch);
    *attrs = rest;
    hatches
}

/// Remove and return the escape hatches on a statement. Outer attributes of an expression
/// statement attach to its leftmost operand (`#[a] x.f()?;` puts `#[a]` on `x`), so the whole
/// leftmost chain is searched.
pub(crate) fn take_from_statement(stmt: &mut Stmt) -> Vec<Attribute> {
    match stmt {
        Stmt::Local(l) => take(&mut l.attrs),
        Stmt::Macro(m) => take(&mut m.attrs),
        Stmt::Item(i) => item_attrs_mut(i).map(take).unwrap_or_default(),
        Stmt::Expr(e, _) => {
            let mut out = Vec::new();
            take_leftmost(e, &mut out);
            out
        }
    }
}

fn take_leftmost(e: &mut Expr, out: &mut Vec<Attribute>) {
    if let Some(attrs) = expr_attrs_mut(e) {
        out.extend(take(attrs));
    }
    let next: Option<&mut Expr> = match e {
        Expr::Binary(b) => Some(&mut b.left),
        Expr::MethodCall(m) => Some(&mut m.receiver),
        Expr::Try(t) => Some(&mut t.expr),
        Expr::Field(f) => Some(&mut f.base),
        Expr::Index(i) => Some(&mut i.expr),
        Expr::Cast(c) => Some(&mut c.expr),
        Expr::Await(a) => Some(&mut a.base),
        Expr::Assign(a) => Some(&mut a.left),
        Expr::Call(c) => Some(&mut c.func),
        Expr::Range(r) => r.start.as_deref_mut(),
        _ => None,
    };
    if let Some(next) = next {
        take_leftmost(next, out);
    }
}
