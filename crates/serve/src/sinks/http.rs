//! Delivery to an HTTP receiver: the oldest alert of the outbox is POSTed until the receiver
//! answers 2xx, with exponential backoff between failures, then the next. One at a time and in
//! order: receivers see alerts in the order they were raised.

use super::Outbox;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for the sinks: rustls, no proxies from the environment.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .user_agent(concat!("kubeward/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Delivers the outbox to `url` until `finish` is set and the outbox is empty.
pub async fn run(
    outbox: Arc<Outbox>,
    url: String,
    client: reqwest::Client,
    max_backoff: Duration,
    finish: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some((id, body)) = outbox.peek() else {
            if finish.load(Ordering::Relaxed) {
                return;
            }
            // Woken by a push; the timeout also notices `finish`.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), outbox.notify.notified()).await;
            continue;
        };
        let res = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let failure = match res {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                outbox.remove(id);
                metrics.sink_delivered(&outbox.name);
                backoff = FIRST_BACKOFF;
            }
            Some(why) => {
                metrics.sink_failure(&outbox.name);
                tracing::warn!(
                    sink = %outbox.name,
                    "delivery failed ({why}); retrying in {:.1}s",
                    backoff.as_secs_f64()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
