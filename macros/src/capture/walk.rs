//! The body walk: visits a checked body (closures and macro arguments included, nested items
//! not), reports what [`super::rules`] flags unless an escape hatch covers it, and removes
//! every escape hatch from the output.

use super::hatch;
use super::rules::{self, Violation};
use super::scope::{Mode, Scope};
use crate::errors::Errors;
use crate::syntax::{expr_attrs_mut, has_symmetric_memory, item_attrs_mut};
use quote::quote;
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, Item, Macro, Stmt, Token};

/// Walk `block` (the body of a function, `is_async` when it is an `async fn`) in `mode`,
/// removing escape hatches and pushing rule violations and misuse to `errors`.
pub(crate) fn check_body(block: &mut Block, mode: Mode, is_async: bool, errors: &mut Errors) {
    let mut walker = Walker {
        scope: Scope::of(mode),
        is_async,
        frames: Vec::new(),
        errors,
    };
    walker.visit_block_mut(block);
}

/// An escape hatch in force over one statement.
struct Frame {
    attr: Attribute,
    used: bool,
}

struct Walker<'e> {
    scope: Scope,
    is_async: bool,
    frames: Vec<Frame>,
    errors: &'e mut Errors,
}

impl Walker<'_> {
    fn with_scope(&mut self, scope: Scope, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.scope, scope);
        let frames = std::mem::take(&mut self.frames);
        f(self);
        self.frames = frames;
        self.scope = saved;
    }

    fn silent(&self) -> bool {
        self.scope == Scope::Silent
    }

    /// Report a rule violation, unless the scope is unchecked or an escape hatch covers it.
    fn report(&mut self, violation: Option<Violation>) {
        let Some(v) = violation else { return };
        if self.scope != Scope::Checked {
            return;
        }
        if let Some(frame) = self.frames.last_mut() {
            frame.used = true;
            return;
        }
        self.errors.spanned(&v.tokens, v.message());
    }

    /// Remove escape hatches from a position where they do not belong, with an error each.
    fn strip_misplaced(&mut self, attrs: Option<&mut Vec<Attribute>>, place: &str) {
        let report = !self.silent();
        hatch::strip_misplaced(attrs, place, report, self.errors);
    }

    /// Walk an `async` block or closure: in a synchronous body it is flagged, and its inside
    /// runs after the window has closed.
    fn deferred(&mut self, closure: bool, tokens: proc_macro2::TokenStream) -> Scope {
        if self.is_async {
            return self.scope;
        }
        self.report(rules::deferred(closure, tokens));
        self.scope.deferred()
    }

    /// Check the arguments of a macro when they parse as expressions.
    fn check_macro(&mut self, mac: &Macro) {
        let exprs: Vec<Expr> = if let Ok(list) =
            mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        {
            list.into_iter().collect()
        } else if let Ok(pair) = mac.parse_body_with(|input: syn::parse::ParseStream| {
            let a: Expr = input.parse()?;
            input.parse::<Token![;]>()?;
            let b: Expr = input.parse()?;
            Ok(vec![a, b])
        }) {
            pair
        } else {
            return;
        };
        for mut e in exprs {
            self.visit_expr_mut(&mut e);
        }
    }
}

impl VisitMut for Walker<'_> {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let hatches = hatch::take_from_statement(stmt);
        let on_item = matches!(stmt, Stmt::Item(_));
        let mut pushed = false;
        for (i, attr) in hatches.into_iter().enumerate() {
            if self.silent() || !hatch::validate(&attr, self.errors) {
                // Reported as malformed; it still covers its statement, so that the violation
                // it was meant for is not reported on top.
                if i == 0 && !on_item && self.scope == Scope::Checked {
                    self.frames.push(Frame { attr, used: true });
                    pushed = true;
                }
                continue;
            }
            match hatch::problem(i, on_item, self.scope) {
                Some(message) => self.errors.spanned(&attr, message),
                None if self.scope == Scope::Checked => {
                    self.frames.push(Frame { attr, used: false });
                    pushed = true;
                }
                None => {}
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
        if pushed {
            if let Some(frame) = self.frames.pop() {
                if !frame.used {
                    hatch::unused(&frame.attr, self.errors);
                }
            }
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        self.strip_misplaced(expr_attrs_mut(e), "an expression inside a statement");
        match e {
            Expr::MethodCall(m) => {
                self.report(rules::method_call(m));
                visit_mut::visit_expr_method_call_mut(self, m);
            }
            Expr::Call(c) => {
                if let Expr::Path(p) = &*c.func {
                    self.report(rules::path(p, Some(&*c)));
                    for arg in c.args.iter_mut() {
                        self.visit_expr_mut(arg);
                    }
                } else {
                    visit_mut::visit_expr_call_mut(self, c);
                }
            }
            Expr::Path(p) => self.report(rules::path(p, None)),
            Expr::Async(a) => {
                let (kw, mv) = (&a.async_token, &a.capture);
                let scope = self.deferred(false, quote!(#kw #mv));
                self.with_scope(scope, |w| visit_mut::visit_expr_async_mut(w, a));
            }
            Expr::Closure(c) if c.asyncness.is_some() => {
                let (kw, mv, or1, or2) = (&c.asyncness, &c.capture, &c.or1_token, &c.or2_token);
                let scope = self.deferred(true, quote!(#kw #mv #or1 #or2));
                self.with_scope(scope, |w| visit_mut::visit_expr_closure_mut(w, c));
            }
            Expr::Macro(m) => {
                let mac = m.mac.clone();
                self.check_macro(&mac);
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_stmt_macro_mut(&mut self, m: &mut syn::StmtMacro) {
        self.strip_misplaced(Some(&mut m.attrs), "a macro");
        let mac = m.mac.clone();
        self.check_macro(&mac);
    }

    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        self.strip_misplaced(Some(&mut l.attrs), "a `let` here");
        visit_mut::visit_local_mut(self, l);
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        self.strip_misplaced(Some(&mut arm.attrs), "a match arm");
        visit_mut::visit_arm_mut(self, arm);
    }

    fn visit_field_value_mut(&mut self, f: &mut syn::FieldValue) {
        self.strip_misplaced(Some(&mut f.attrs), "a struct field");
        visit_mut::visit_field_value_mut(self, f);
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        if let Item::Fn(f) = item {
            if has_symmetric_memory(&f.attrs) {
                return; // expanded (and checked) by its own attribute
            }
        }
        self.strip_misplaced(item_attrs_mut(item), "an item");
        let scope = if self.silent() {
            Scope::Silent
        } else {
            Scope::NestedItem
        };
        self.with_scope(scope, |w| visit_mut::visit_item_mut(w, item));
    }

    fn visit_impl_item_fn_mut(&mut self, f: &mut syn::ImplItemFn) {
        if !has_symmetric_memory(&f.attrs) {
            self.strip_misplaced(Some(&mut f.attrs), "an item");
            visit_mut::visit_impl_item_fn_mut(self, f);
        }
    }

    fn visit_trait_item_fn_mut(&mut self, f: &mut syn::TraitItemFn) {
        if !has_symmetric_memory(&f.attrs) {
            self.strip_misplaced(Some(&mut f.attrs), "an item");
            visit_mut::visit_trait_item_fn_mut(self, f);
        }
    }
}
