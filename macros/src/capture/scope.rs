//! Where the capture rules apply: the mode a function's `capture` argument asks for, and the
//! scope of each point of the body walk (checked, or why not).

/// How a body is to be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Apply the rules (`capture = "checked"`).
    Checked,
    /// No rules; an escape hatch is an error (`capture = "never"`).
    Never,
    /// The capture mode is unknown because its argument was wrong: only remove escape hatches,
    /// report nothing (the argument error is reported).
    Silent,
}

/// Why rules are not applied at some point of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Inside the checked body (closures included).
    Checked,
    /// The function has `capture = "never"`.
    Never,
    /// Inside a nested item (fn, impl, const...).
    NestedItem,
    /// Inside an `async` block or closure of a synchronous body.
    DeferredAsync,
    /// Capture mode unknown.
    Silent,
}

impl Scope {
    /// The scope of a function's body walked in `mode`.
    pub(crate) fn of(mode: Mode) -> Scope {
        match mode {
            Mode::Checked => Scope::Checked,
            Mode::Never => Scope::Never,
            Mode::Silent => Scope::Silent,
        }
    }

    /// The scope inside an `async` block or closure of a synchronous body at this scope.
    pub(crate) fn deferred(self) -> Scope {
        match self {
            Scope::Checked => Scope::DeferredAsync,
            other => other,
        }
    }
}
