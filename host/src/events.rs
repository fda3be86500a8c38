//! What a run does, as it happens: every stage emits semantic events (a row done or skipped, a
//! request sent or answered, a batch committed, a credential acquired, a plugin failing a row) and
//! the consumers (the progress bar and the summary in `report`, a metrics exporter) observe them.
//! A stage never calls a consumer directly.

use std::sync::Arc;
use std::time::Duration;

/// One thing that happened.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A row went through the chain (or could not: a null id, a failed render) and its result
    /// goes to the sink.
    RowDone {
        /// It counts as success.
        success: bool,
        /// It failed, and a later pass or run sends it again.
        retryable: bool,
        /// Sends beyond the first (resends by plugins, the 401 renewal).
        retries: u32,
        /// From the start of its trip to its outcome; `None` when nothing was sent.
        latency: Option<Duration>,
    },
    /// A row that already landed in an earlier run: not sent.
    RowSkipped,
    /// A request went to the network.
    RequestSent,
    /// The network answered (`status`), or failed (`None`), after `took`.
    RequestAnswered {
        /// The HTTP status; `None` for a transport error.
        status: Option<u16>,
        /// Time on the network.
        took: Duration,
    },
    /// The rate limit held a request back for `waited`.
    RateLimited {
        /// How long.
        waited: Duration,
    },
    /// The adaptive concurrency limit changed (`execution.concurrency: adaptive`).
    ConcurrencyLimit {
        /// Requests allowed on the network at once now.
        limit: usize,
    },
    /// The API's rate-limit headers started (or lengthened) a pause of every request to the host.
    PauseStarted {
        /// For how long.
        wait: Duration,
    },
    /// A request was held by such a pause for `waited`.
    Paused {
        /// How long.
        waited: Duration,
    },
    /// A batch landed in the sink.
    BatchCommitted {
        /// Rows in it.
        rows: usize,
        /// The table version (Delta) or batch id (Spark) it landed as.
        version: i64,
        /// Time to write and commit it.
        took: Duration,
    },
    /// A credential was acquired by `by` (`auth (oauth2_client_credentials, ...)`, an auth plugin).
    CredentialAcquired {
        /// The source.
        by: &'a str,
    },
    /// Acquiring a credential failed.
    CredentialFailed {
        /// The source.
        by: &'a str,
    },
    /// A plugin failed a row: it trapped, ran out of time or memory, broke a rule, or returned an
    /// error of its own.
    PluginFailed {
        /// The plugin's name.
        plugin: &'a str,
    },
}

/// A consumer of events. Called on the thread that emits: keep it short (count, record, return).
pub trait Observer: Send + Sync {
    /// Takes note of `event`.
    fn observe(&self, event: &Event<'_>);
}

/// The run's observers; cheap to clone, handed to every stage.
#[derive(Clone, Default)]
pub struct Events {
    observers: Arc<[Arc<dyn Observer>]>,
}

impl Events {
    /// Events delivered to `observers`, in order.
    pub fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Events {
            observers: observers.into(),
        }
    }

    /// Delivers `event` to every observer.
    pub fn emit(&self, event: Event<'_>) {
        for o in self.observers.iter() {
            o.observe(&event);
        }
    }
}
