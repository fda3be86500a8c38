//! The engine every plugin of a run shares: component model, the pooling allocator sized for the
//! instances the pools may hold (a few per plugin and worker thread, never one per row in flight),
//! epoch interruption (a ticker thread advances the epoch every [`TICK`]) and wasmtime's on-disk
//! compile cache, so that a second run does not recompile.

use super::budget::TICK;
use super::sandbox::TABLE_ELEMENTS;

/// The engine and its compile cache (whose counters tell whether a component was compiled or
/// loaded). `instances`: the most component instances alive at once; `memory_mb`: the largest
/// memory cap of any plugin.
pub(super) fn start(
    instances: u32,
    memory_mb: u32,
) -> wasmtime::Result<(wasmtime::Engine, wasmtime::Cache)> {
    let max_memory = (memory_mb as usize) << 20;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    // A component holds several core instances, memories and tables (a Rust guest a few, a
    // componentize-py guest about twenty core instances): the pool is sized for the larger.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 32)
        .total_memories(instances * 8)
        .total_tables(instances * 32)
        .total_stacks(instances)
        .max_memory_size(max_memory)
        .max_memories_per_module(2)
        .max_memories_per_component(8)
        .max_core_instances_per_component(64)
        .max_tables_per_module(8)
        .table_elements(TABLE_ELEMENTS)
        // Every call runs on a fiber stack from the pool; returning it with madvise and faulting it
        // back in on the next call would cost more than the call itself.
        .async_stack_keep_resident(256 << 10);
    let cache = compile_cache()?;
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
        // Reserve address space for the cap, not wasmtime's default 4 GiB per memory slot.
        .memory_reservation(max_memory as u64)
        .cache(Some(cache.clone()));
    let engine = wasmtime::Engine::new(&config)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("sparkwasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map_err(wasmtime::Error::from)?;
    Ok((engine, cache))
}

/// wasmtime's compile cache, under `$SPARKWASM_CACHE_DIR` or `~/.cache/sparkwasm/wasmtime`, created
/// private to the user (cached artifacts are native code that is loaded without being re-verified).
fn compile_cache() -> wasmtime::Result<wasmtime::Cache> {
    let dir = std::env::var_os("SPARKWASM_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/sparkwasm"))
        })
        .ok_or_else(|| {
            wasmtime::Error::msg("no cache directory: set SPARKWASM_CACHE_DIR (or HOME)")
        })?
        .join("wasmtime");
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(wasmtime::Error::from)?;
        let meta = std::fs::metadata(&dir).map_err(wasmtime::Error::from)?;
        // /proc/self belongs to the user this process runs as.
        let me = std::fs::metadata("/proc/self")
            .map_err(wasmtime::Error::from)?
            .uid();
        if meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
            return Err(wasmtime::Error::msg(format!(
                "compile cache {} must belong to this user and not be writable by others",
                dir.display()
            )));
        }
    }
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(dir);
    wasmtime::Cache::new(config)
}
