//! The crate's two attributes as syn sees them (recognising `#[symmetric_memory]` and the
//! escape hatch by their last path segment), and the outer attributes of expressions and items.

use syn::{Attribute, Expr, Item};

/// The escape hatch's name (its last path segment: `symmem::allow_capture_unfit` or, imported,
/// `allow_capture_unfit`).
pub(crate) const HATCH: &str = "allow_capture_unfit";

/// Whether `attr` is the escape hatch.
pub(crate) fn is_hatch(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == HATCH)
}

/// Whether `attrs` hold a `#[symmetric_memory]` (any path ending in `symmetric_memory`).
pub(crate) fn has_symmetric_memory(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "symmetric_memory")
    })
}

macro_rules! attrs_of {
    ($e:expr, $enum:ident: $($v:ident)*) => {
        match $e {
            $($enum::$v(x) => Some(&mut x.attrs),)*
            _ => None,
        }
    };
}

/// The outer attributes of an expression.
pub(crate) fn expr_attrs_mut(e: &mut Expr) -> Option<&mut Vec<Attribute>> {
    attrs_of!(e, Expr: Array Assign Async Await Binary Block Break Call Cast Closure Const Continue
        Field ForLoop Group If Index Infer Let Lit Loop Macro Match MethodCall Paren Path Range
        Reference Repeat Return Struct Try TryBlock Tuple Unary Unsafe While Yield)
}

/// The outer attributes of an item.
pub(crate) fn item_attrs_mut(i: &mut Item) -> Option<&mut Vec<Attribute>> {
    attrs_of!(i, Item: Const Enum ExternCrate Fn ForeignMod Impl Macro Mod Static Struct Trait
        TraitAlias Type Union Use)
}
