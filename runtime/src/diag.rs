//! The one place the runtime reports diagnostics that are not errors (a policy line, a
//! fallback taken, a misuse healed): [`warn`].
//!
//! Every such line of the runtime goes through here, prefixed `symmem: `, so that the logging
//! facade (`tracing`, issue 15) plugs in at one point; until then they go to stderr. Nothing a
//! caller must act on is reported here only: those are `Error`s.

/// Report `message`, prefixed `symmem: ` unless it already is (an `Error`'s text, a policy
/// line).
#[cold]
#[inline(never)]
pub(crate) fn warn(message: std::fmt::Arguments<'_>) {
    eprintln!("{}", line(message));
}

/// The reported line of `message`.
fn line(message: std::fmt::Arguments<'_>) -> String {
    let text = message.to_string();
    if text.starts_with("symmem: ") {
        text
    } else {
        format!("symmem: {text}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_once() {
        assert_eq!(super::line(format_args!("a note")), "symmem: a note");
        assert_eq!(
            super::line(format_args!("symmem: an error text")),
            "symmem: an error text"
        );
    }
}
