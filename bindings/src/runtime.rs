//! The library's own tokio runtime.
//!
//! Exported `async fn`s are polled by the host (Kotlin coroutines, Swift
//! concurrency), on threads that tokio knows nothing about. Anything that
//! needs tokio's reactor or timer would fail there with "there is no reactor
//! running". So every piece of real work is *spawned* onto this runtime and
//! the exported future only awaits the `JoinHandle`, which is an ordinary
//! future that any executor can poll.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::StarlingError;

/// Number of worker threads. Phones have few big cores and the store is
/// behind one writer lock; two workers keep event delivery responsive.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process-wide runtime, built on first use and never shut down (hosts
/// unload native libraries only with the process).
pub(crate) fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(8)
            .thread_name("starling-rt")
            .enable_all()
            .build()
            // Building a runtime fails only if the OS refuses to start
            // threads; nothing useful can run then.
            .unwrap_or_else(|e| panic!("starling: cannot start the tokio runtime: {e}"))
    })
}

/// Runs blocking work (SQLite, key derivation) on the runtime's blocking pool
/// and awaits it. A panic in `work` becomes [`StarlingError::Internal`].
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, StarlingError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StarlingError> + Send + 'static,
{
    runtime().spawn_blocking(work).await?
}
