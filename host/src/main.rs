//! The `sparkwasm` command: a thin binary over the library (see `cli`).

mod cli;

/// mimalloc (its 2.x line) rather than glibc's malloc: every row allocates (its request, headers,
/// body, the response's buffers, the chain's futures) on a worker and much of it is freed on
/// another thread; glibc's consolidation and chunk unlinking were a quarter of the run's CPU at
/// 4,000 requests in flight. Measured against glibc (interleaved runs, release): 4,000 in flight
/// with the legacy chain 25% less CPU; 2M rows 28% less wall time, for a higher peak RSS (234 MiB
/// instead of 108 before small bodies were copied out of the read buffer; mimalloc 3 kept 316-369).
/// Without transparent huge pages: mimalloc asks for them on its 1 GiB arena (built with `no_thp`
/// it does not), and with them RSS grew in 2 MiB steps (a slow-sink run's flat 94-98 MiB became
/// 120-135 with 13 MiB jumps) and 4,000 in flight peaked at 328 instead of 261 MiB, for no CPU gain
/// at 4,000 in flight and within the VM's noise at 64 (interleaved, release). On a kernel whose THP
/// mode is `always` (not only `madvise`), huge pages come without asking: `main` turns them off for
/// the process first.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and changes only this
    // process's huge-page policy; a kernel without it returns an error, which is ignored.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    cli::main()
}
