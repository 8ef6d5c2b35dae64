//! Registering the bus's Prometheus metrics. Both sides of a command count it (the
//! caller in `client`, the answering service in `server`), so the one helper they
//! share lives here, below both, rather than in either of them.

/// Registers a metric in the default registry; a second registration (several
/// instances in one test process) reuses the first.
pub(crate) fn register<M: prometheus::core::Collector + Clone + 'static>(m: Result<M, prometheus::Error>) -> M {
    match m {
        Ok(m) => {
            let _ = prometheus::register(Box::new(m.clone()));
            m
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
}
