//! The one place the runtime reports what is not an error (a policy line, a fallback taken, a
//! misuse healed, a segment created), through the [`tracing`] facade, target `symmem`.
//!
//! The library never installs a subscriber: without one nothing is printed. With one (the
//! example and the tests install `tracing_subscriber::fmt`), filter with the target, e.g.
//! `RUST_LOG=symmem=debug`. Levels:
//!
//! * `warn`: something did not go as asked but symmem healed it (a plain-path fallback, a
//!   leaked guard, an ignored environment value); `error`: an internal invariant failed and was
//!   contained (reported, never a panic);
//! * `info`: once per process, the NCCL library and symmetric-memory policy found, and the
//!   backend `auto` chose;
//! * `debug`: a pool segment created or released, a symmetric window registered;
//! * `trace`: every collective queued (group, collective, element type, count, path).
//!
//! Nothing on the window or allocation fast paths reports anything. Nothing a caller must act
//! on is reported here only: those are `Error`s.

/// The target of every event of the runtime.
pub(crate) const TARGET: &str = "symmem";

/// `message` without a leading `symmem: ` (an `Error`'s text, a policy line): the target says
/// it already.
fn unprefixed(message: std::fmt::Arguments<'_>) -> String {
    let text = message.to_string();
    match text.strip_prefix("symmem: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// A `warn` event (cold, out of line: the callers' paths stay small).
#[cold]
#[inline(never)]
pub(crate) fn warn(message: std::fmt::Arguments<'_>) {
    tracing::warn!(target: TARGET, "{}", unprefixed(message));
}

/// An `error` event: an internal invariant failed and was contained.
#[cold]
#[inline(never)]
pub(crate) fn error(message: std::fmt::Arguments<'_>) {
    tracing::error!(target: TARGET, "{}", unprefixed(message));
}

/// An `info` event (reported once per process by its callers).
#[cold]
#[inline(never)]
pub(crate) fn info(message: std::fmt::Arguments<'_>) {
    tracing::info!(target: TARGET, "{}", unprefixed(message));
}

/// A `debug` event of a pool: `what` (`segment created`, ...) with the pool, bytes and, for
/// symmetric segments, the NCCL window index.
#[cold]
#[inline(never)]
pub(crate) fn segment(what: &'static str, pool: &str, bytes: usize, window: Option<u64>) {
    match window {
        Some(w) => tracing::debug!(target: TARGET, pool, bytes, window = w, "{what}"),
        None => tracing::debug!(target: TARGET, pool, bytes, "{what}"),
    }
}

/// An NVTX range (feature `nvtx`), open until the guard drops, on the calling thread's range
/// stack; without the feature a zero-sized value with no drop.
#[must_use = "the range ends when the guard drops"]
pub(crate) struct NvtxRange(());

impl NvtxRange {
    /// Open the range `symmem <what> <group>`.
    #[inline(always)]
    pub(crate) fn push(what: &'static str, group: &str) -> NvtxRange {
        #[cfg(feature = "nvtx")]
        nvtx::range_push!("symmem {what} {group}");
        #[cfg(not(feature = "nvtx"))]
        let _ = (what, group);
        NvtxRange(())
    }
}

#[cfg(feature = "nvtx")]
impl Drop for NvtxRange {
    fn drop(&mut self) {
        nvtx::range_pop!();
    }
}

/// A `trace` event of a queued collective, and its NVTX range (feature `nvtx`) for as long as
/// the caller keeps the guard (the launch). Only the level check (one relaxed load of the
/// callsite's interest) runs when no subscriber wants the event.
#[inline(always)]
pub(crate) fn collective(
    group: &str,
    collective: &'static str,
    dtype: crate::dtype::DType,
    count: usize,
    symmetric: bool,
) -> NvtxRange {
    tracing::trace!(
        target: TARGET,
        group,
        collective,
        dtype = %dtype,
        count,
        path = if symmetric { "symmetric" } else { "plain" },
        "collective queued"
    );
    NvtxRange::push(collective, group)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects `level target: message` lines of every event.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct V(String);
            impl tracing::field::Visit for V {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!(" {}={v:?}", f.name()));
                }
            }
            let mut v = V(String::new());
            event.record(&mut v);
            let m = event.metadata();
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}:{}", m.level(), m.target(), v.0));
        }
    }

    fn collect(f: impl FnOnce()) -> Vec<String> {
        let lines = Lines::default();
        let sub = tracing_subscriber::registry().with(lines.clone());
        with_default(sub, f);
        let v = lines.0.lock().unwrap().clone();
        v
    }

    #[test]
    fn every_level_reaches_a_subscriber_under_the_symmem_target() {
        let lines = collect(|| {
            super::warn(format_args!("a note {}", 1));
            super::error(format_args!("broken"));
            super::info(format_args!("policy"));
            super::segment("segment created", "tp", 4096, Some(3));
            let _range = super::collective("tp", "all_reduce", crate::dtype::DType::BF16, 8, true);
        });
        assert_eq!(lines.len(), 5, "{lines:?}");
        // A message that carries the crate's prefix already (an `Error`'s text) loses it.
        let again = collect(|| super::warn(format_args!("symmem: an error text")));
        assert!(again[0].ends_with("message=an error text"), "{again:?}");
        assert!(lines[0].starts_with("WARN symmem:") && lines[0].contains("a note 1"));
        assert!(lines[1].starts_with("ERROR symmem:"), "{lines:?}");
        assert!(lines[2].starts_with("INFO symmem:"), "{lines:?}");
        assert!(
            lines[3].starts_with("DEBUG symmem:")
                && lines[3].contains("pool=\"tp\"")
                && lines[3].contains("bytes=4096")
                && lines[3].contains("window=3"),
            "{lines:?}"
        );
        assert!(
            lines[4].starts_with("TRACE symmem:")
                && lines[4].contains("collective=\"all_reduce\"")
                && lines[4].contains("path=\"symmetric\""),
            "{lines:?}"
        );
    }
}
