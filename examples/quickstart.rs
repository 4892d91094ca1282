//! Quick start: start ranks, allocate in an annotated function, all-reduce, check.
//!
//! ```text
//! cargo run --example quickstart                       # CUDA if 2 GPUs and NCCL are found, else host ranks
//! SYMMEM_BACKEND=host cargo run --example quickstart   # the host backend (ranks are threads)
//! ```
//!
//! Each rank fills a buffer with `rank + 1`; `partial` (annotated) copies it into a buffer from
//! the `tp` group's symmetric pool; the all-reduce sums it over the ranks on the symmetric path.
//! The benchmark-grade example is `tp_mlp` (`cargo run --release --example tp_mlp`).

use symmem::{symmetric_memory, BackendChoice, Buffer, Error, RankConfig, ReduceOp};

/// Ranks to start (threads of this process; on CUDA one GPU each).
const RANKS: usize = 2;
/// Elements per buffer.
const LEN: usize = 1024;

/// The annotated function: every `symmem::alloc` in its body comes from the `tp` group's
/// symmetric pool, and routing returns to what it was when the body ends.
#[symmetric_memory(group = "tp")]
fn partial(x: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
    let mut out = symmem::alloc::<f32>(x.len())?;
    out.copy_from(x)?; // device to device, on the rank's stream
    Ok(out)
}

/// Start the ranks, run one all-reduce on each, check the sums and print one line.
fn main() -> Result<(), Error> {
    let backend = BackendChoice::from_env()?; // SYMMEM_BACKEND=auto|host|cuda, default auto
    let results = symmem::run(
        backend,
        RANKS,
        RankConfig::default(),
        |ctx| -> Result<Vec<f32>, Error> {
            // A tensor-parallel group "tp" of all ranks (one colour; ordered by rank).
            let tp = ctx.split_group("tp", &ctx.world(), 0, ctx.rank() as u32)?;
            let x = symmem::alloc_from_host(&vec![ctx.rank() as f32 + 1.0; LEN])?;
            let mut y = partial(&x)?;
            assert!(
                y.is_symmetric(),
                "the annotated body allocated from tp's symmetric pool"
            );
            tp.all_reduce(&mut y, ReduceOp::Sum)?; // NCCL's symmetric kernels on CUDA
            y.to_host_vec()
        },
    )?;

    let want = (RANKS * (RANKS + 1) / 2) as f32; // 1 + 2 + ... + RANKS
    for (rank, r) in results.into_iter().enumerate() {
        let sums = r?;
        assert!(sums.iter().all(|&v| v == want), "rank {rank}: wrong sum");
    }
    println!("quickstart: {RANKS} ranks, all-reduce of {LEN} f32 = {want} everywhere: PASS");
    Ok(())
}
