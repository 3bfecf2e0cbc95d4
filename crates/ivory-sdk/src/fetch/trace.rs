//! W3C trace-context propagation without a tracing-backend dependency.
//!
//! The SDK does not know OpenTelemetry. The process that runs connectors (the `ivory` binary)
//! installs a [`TraceContext`] once ([`install_trace_context`]); every [`super::Fetcher`] built
//! afterwards asks it, per request attempt, for the `traceparent` of the current span and sends
//! it upstream. Without one installed, no header is added.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Gives the W3C `traceparent` header value of the current span, if there is one.
#[derive(Clone)]
pub struct TraceContext(Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl TraceContext {
    /// Wraps `current`, called in the request's span for every attempt.
    pub fn new(current: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(current))
    }

    /// The `traceparent` of the current span.
    pub fn traceparent(&self) -> Option<String> {
        (self.0)()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceContext(..)")
    }
}

static INSTALLED: OnceLock<TraceContext> = OnceLock::new();

/// Installs the process-wide trace context every later [`super::FetchConfig::new`] picks up.
/// The first call wins; returns `false` when one was installed already.
pub fn install_trace_context(context: TraceContext) -> bool {
    INSTALLED.set(context).is_ok()
}

/// The process-wide trace context, when one is installed.
pub fn installed_trace_context() -> Option<TraceContext> {
    INSTALLED.get().cloned()
}
