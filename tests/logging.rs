//! The runtime's logging through `tracing` (target `symmem`), seen by a subscriber the test
//! installs (the library never installs one): segment creation and window registration at
//! debug, each collective at trace with its path, and nothing at all from windows and cached
//! allocations (the hot path).

use std::sync::{Arc, Mutex};

use symmem::ReduceOp;
use tracing_subscriber::layer::SubscriberExt;

/// `LEVEL message field=value ...` of every event of target `symmem`.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0.insert_str(0, &format!("{v:?}"));
                } else {
                    self.0.push_str(&format!(" {}={v:?}", f.name()));
                }
            }
        }
        if event.metadata().target() != "symmem" {
            return;
        }
        let mut v = V(String::new());
        event.record(&mut v);
        let line = format!("{} {}", event.metadata().level(), v.0);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

#[test]
fn segments_windows_and_collectives_are_reported_and_the_hot_path_is_silent() {
    let lines = Lines::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(lines.clone()))
        .expect("the only subscriber of this test binary");
    let snapshot = || lines.0.lock().unwrap().clone();

    let silent = symmem::host::run(2, |ctx| -> symmem::Result<usize> {
        let world = ctx.world();
        let mut y = world.with_window(|| symmem::alloc_zeroed::<f32>(1024))?;
        world.all_reduce(&mut y, ReduceOp::Sum)?;
        let mut plain = symmem::alloc_zeroed::<f32>(16)?;
        world.all_reduce(&mut plain, ReduceOp::Sum)?;
        world.barrier()?;
        // Warm: the pools hold cached blocks now; windows and allocations report nothing.
        let before = snapshot().len();
        for _ in 0..100 {
            let _w = world.window();
            let b = symmem::alloc::<f32>(1024)?;
            drop(b);
        }
        let after = snapshot().len();
        world.barrier()?;
        Ok(after - before)
    })
    .expect("the ranks start");
    for (rank, r) in silent.into_iter().enumerate() {
        assert_eq!(
            r.expect("rank body"),
            0,
            "rank {rank}: windows or cached allocations reported something: {:?}",
            snapshot()
        );
    }
    let all = snapshot();
    let has = |level: &str, words: &[&str]| {
        all.iter()
            .any(|l| l.starts_with(level) && words.iter().all(|w| l.contains(w)))
    };
    assert!(
        has(
            "DEBUG",
            &[
                "symmetric segment created and registered",
                "pool=\"world\"",
                "window="
            ]
        ),
        "{all:#?}"
    );
    assert!(has("DEBUG", &["segment created", "bytes="]), "{all:#?}");
    assert!(
        has(
            "TRACE",
            &[
                "collective queued",
                "collective=\"all_reduce\"",
                "path=\"symmetric\"",
                "count=1024"
            ]
        ),
        "{all:#?}"
    );
    assert!(
        has(
            "TRACE",
            &["collective queued", "path=\"plain\"", "count=16"]
        ),
        "{all:#?}"
    );
    // Teardown releases the segments (reported at debug).
    assert!(has("DEBUG", &["segment released"]), "{all:#?}");
    assert!(
        !all.iter()
            .any(|l| l.starts_with("WARN") || l.starts_with("ERROR")),
        "a clean run warns about nothing: {all:#?}"
    );
}
