//! The receiver for the API server's webhook audit backend: `POST` of an `EventList` (or one
//! `Event`, or a JSON array of Events), gzip allowed, acknowledged once the batch is handed to
//! the queue (and committed to the spool when there is one).

use crate::metrics::Metrics;
use crate::pipeline::{Origin, Queue, Work};
use crate::spool::InboxWriter;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What the handlers share.
pub struct App {
    /// The queue to the processor.
    pub queue: Arc<Queue>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The spool's inbox writer, when batches are kept on disk.
    pub spool: Option<InboxWriter>,
    /// Largest body, before and after decompression.
    pub max_body: usize,
    /// Required bearer token.
    pub token: Option<String>,
    /// Set during shutdown: new batches are refused with 503.
    pub draining: AtomicBool,
    /// Set when processing stopped for good.
    pub fatal: Arc<AtomicBool>,
    /// Last time (seconds since start) a refusal for a full queue was logged.
    last_full_log: AtomicU64,
    started: Instant,
}

impl App {
    /// The shared state.
    pub fn new(
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        spool: Option<InboxWriter>,
        max_body: usize,
        token: Option<String>,
        fatal: Arc<AtomicBool>,
    ) -> App {
        App {
            queue,
            metrics,
            spool,
            max_body,
            token,
            draining: AtomicBool::new(false),
            fatal,
            last_full_log: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        }
    }
}

/// The top level of a webhook body. Other fields of an Event are skipped (still checked to be
/// JSON).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
}

/// Appends one JSON value as one line. A raw newline byte can only be whitespace between
/// tokens in valid JSON (inside strings it must be escaped), so a pretty-printed value becomes
/// one line by turning those bytes into spaces.
fn push_line(out: &mut Vec<u8>, v: &[u8]) {
    let at = out.len();
    out.extend_from_slice(v);
    if memchr::memchr2(b'\n', b'\r', v).is_some() {
        for b in &mut out[at..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    out.push(b'\n');
}

/// A webhook body cut into events.
#[derive(Debug, Default)]
pub struct Framed {
    /// The events, one per line.
    pub lines: Vec<u8>,
    /// How many.
    pub events: u64,
    /// Items that are not JSON objects (so not Events), by index: counted as malformed and
    /// left out (the byte prefilter would otherwise pass over them unseen).
    pub not_objects: Vec<usize>,
}

impl Framed {
    fn items(items: &[&RawValue], cap: usize) -> Framed {
        let mut f = Framed {
            lines: Vec::with_capacity(cap + items.len()),
            ..Framed::default()
        };
        for (i, it) in items.iter().enumerate() {
            if it.get().starts_with('{') {
                push_line(&mut f.lines, it.get().as_bytes());
                f.events += 1;
            } else {
                f.not_objects.push(i);
            }
        }
        f
    }
}

/// Turns a webhook body into events, one per line, and counts them. `Err` is the reason for a
/// 400: not JSON, or not an audit Event, EventList or array of Events.
pub fn frame_body(body: &[u8]) -> Result<Framed, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err("empty body: expected an audit.k8s.io EventList or Event".into()),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body)
                .map_err(|e| format!("body is not a JSON array of Events: {e}"))?;
            Ok(Framed::items(&items, body.len()))
        }
        Some(b'{') => {
            let env: Envelope =
                serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
            if let Some(v) = &env.api_version {
                if !v.starts_with("audit.k8s.io/") {
                    return Err(format!(
                        "apiVersion is {v:?}: expected audit.k8s.io/v1 (an audit EventList or Event)"
                    ));
                }
            }
            match env.kind.as_deref() {
                Some("EventList") => {
                    let items = env.items.unwrap_or_default();
                    Ok(Framed::items(&items, body.len()))
                }
                Some("Event") => {
                    let mut f = Framed {
                        lines: Vec::with_capacity(body.len() + 1),
                        events: 1,
                        not_objects: Vec::new(),
                    };
                    push_line(&mut f.lines, body);
                    Ok(f)
                }
                Some(k) => Err(format!(
                    "kind is {k:?}: expected EventList or Event (audit.k8s.io)"
                )),
                None => Err("no kind: expected an audit.k8s.io EventList or Event".into()),
            }
        }
        Some(_) => Err("body is not JSON: expected an audit.k8s.io EventList or Event".into()),
    }
}

fn refuse(app: &App, status: StatusCode, reason: &'static str, msg: String) -> Response {
    app.metrics.refused(reason, 0);
    (status, format!("{msg}\n")).into_response()
}

/// Whether a body error is the length limit.
fn is_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// `POST` handler for the webhook path.
pub async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    if app.draining.load(Ordering::Relaxed) || app.fatal.load(Ordering::Relaxed) {
        return refuse(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down: retry later".into(),
        );
    }
    if let Some(tok) = &app.token {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), tok.as_bytes()));
        if !ok {
            tracing::warn!("webhook request without the right bearer token refused");
            return refuse(
                &app,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid Authorization: Bearer token is required".into(),
            );
        }
    }
    let too_large = |app: &App, what: &str| {
        tracing::warn!(
            limit = app.max_body,
            "webhook body {what} is over the limit of {} bytes: refused with 413 (raise --max-body-bytes, or enable the API server's --audit-webhook-truncate-enabled)",
            app.max_body
        );
        refuse(
            app,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body {what} is over the limit of {} bytes", app.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body as u64) {
        return too_large(&app, &format!("of {} bytes", declared.unwrap_or(0)));
    }
    let raw = match axum::body::to_bytes(body, app.max_body).await {
        Ok(b) => b,
        Err(e) => {
            let inner = e.into_inner();
            if is_limit(inner.as_ref()) {
                return too_large(&app, "read");
            }
            return refuse(
                &app,
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the body: {inner}"),
            );
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    let app2 = app.clone();
    // Decompression and JSON checks are CPU work: off the I/O threads.
    let framed = tokio::task::spawn_blocking(move || -> Result<Framed, Box<Response>> {
        let app = app2;
        let plain: Cow<[u8]> = match encoding.as_deref() {
            None | Some("identity") | Some("") => Cow::Borrowed(&raw[..]),
            Some("gzip") | Some("x-gzip") => {
                let mut out = Vec::with_capacity(raw.len() * 4);
                let mut dec =
                    flate2::read::MultiGzDecoder::new(&raw[..]).take(app.max_body as u64 + 1);
                if let Err(e) = dec.read_to_end(&mut out) {
                    return Err(Box::new(refuse(
                        &app,
                        StatusCode::BAD_REQUEST,
                        "bad_gzip",
                        format!("Content-Encoding is gzip but the body is not: {e}"),
                    )));
                }
                if out.len() > app.max_body {
                    return Err(Box::new(too_large(&app, "decompressed")));
                }
                Cow::Owned(out)
            }
            Some(other) => {
                return Err(Box::new(refuse(
                    &app,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "bad_encoding",
                    format!("Content-Encoding {other:?} is not supported (use gzip or none)"),
                )))
            }
        };
        frame_body(&plain).map_err(|reason| {
            tracing::warn!("webhook body refused with 400: {reason}");
            Box::new(refuse(&app, StatusCode::BAD_REQUEST, "bad_request", reason))
        })
    })
    .await;
    let Framed {
        lines,
        events,
        not_objects,
    } = match framed {
        Ok(Ok(x)) => x,
        Ok(Err(resp)) => return *resp,
        Err(e) => {
            return refuse(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("internal error: {e}"),
            )
        }
    };
    if !not_objects.is_empty() {
        app.metrics
            .events_malformed
            .fetch_add(not_objects.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            "webhook batch: items {not_objects:?} are not JSON objects (not audit Events); skipped"
        );
    }
    if events == 0 {
        app.metrics
            .requests_accepted
            .fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK.into_response();
    }
    if !app.queue.try_reserve(events) {
        app.metrics.refused("queue_full", events);
        // Logged at most once a second: under overload every request would log.
        let now = app.started.elapsed().as_secs();
        let last = app.last_full_log.swap(now, Ordering::Relaxed);
        if last != now {
            tracing::warn!(
                "queue full: webhook batches refused with 429 (the API server retries them); see kubeward_events_dropped_total"
            );
        }
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "queue full: retry later\n",
        )
            .into_response();
    }
    let mut inbox = None;
    let mut lines = lines;
    if let Some(spool) = &app.spool {
        let (stored, l) = spool.push(events, lines).await;
        lines = l;
        match stored {
            Ok(id) => inbox = Some(id),
            Err(e) => {
                app.queue.release(events);
                tracing::error!("batch refused with 503: {e}");
                app.metrics.refused("spool_error", events);
                return (StatusCode::SERVICE_UNAVAILABLE, "cannot store the batch\n")
                    .into_response();
            }
        }
    }
    let sent = app.queue.send(Work {
        lines,
        events,
        origin: Origin::Webhook { inbox },
        received: started,
    });
    if !sent && inbox.is_none() {
        app.queue.release(events);
        app.metrics.refused("shutting_down", events);
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    // Received: every item of an accepted batch, the malformed ones included.
    app.metrics
        .events_received
        .fetch_add(events + not_objects.len() as u64, Ordering::Relaxed);
    app.metrics
        .requests_accepted
        .fetch_add(1, Ordering::Relaxed);
    app.metrics.ack.observe(started.elapsed());
    StatusCode::OK.into_response()
}

/// Comparison that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lists_events_and_arrays() {
        let f = frame_body(
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"a":1},
            {"b":
            "x\ny"}, 42]}"#,
        )
        .unwrap();
        assert_eq!((f.events, f.not_objects), (2, vec![2]));
        assert_eq!(
            f.lines,
            b"{\"a\":1}\n{\"b\":             \"x\\ny\"}\n".to_vec()
        );
        let f = frame_body(br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}"#)
            .unwrap();
        assert_eq!(f.events, 1);
        let f = frame_body(br#"[{"kind":"Event"},{"kind":"Event"}]"#).unwrap();
        assert_eq!(f.events, 2);
        let f = frame_body(br#"{"kind":"EventList","items":null}"#).unwrap();
        assert_eq!(f.events, 0);
    }

    #[test]
    fn refuses_what_is_not_an_audit_body() {
        for (body, want) in [
            (&b"not json"[..], "not JSON"),
            (b"{\"kind\":\"EventList\",", "not valid JSON"),
            (b"{\"kind\":\"Pod\"}", "kind is \"Pod\""),
            (
                b"{\"apiVersion\":\"v1\",\"kind\":\"EventList\"}",
                "apiVersion",
            ),
            (b"{}", "no kind"),
            (b"  ", "empty"),
            (b"[1,", "array"),
        ] {
            let e = frame_body(body).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
