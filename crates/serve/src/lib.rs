//! `kubeward serve`: real-time detection from the API server's audit webhook and from followed
//! audit log files, with alert delivery.
//!
//! Built like a small log pipeline (sources → queue → detection → sinks):
//!
//! - [`sources::webhook`]: `POST` of EventList batches (HTTP or HTTPS, optional mTLS or bearer
//!   token), acknowledged once handed to the bounded queue, and, with a spool file, once committed
//!   to it; 429 when the queue is full.
//! - [`sources::follow`]: files the log backend writes, followed across rotation and truncation.
//! - [`pipeline`]: the queue and the processor thread, which runs `detect`'s engine, collector
//!   and stateful tracker exactly as `kubeward detect` does.
//! - [`sinks`]: stdout, a JSON-lines file, and HTTP receivers (JSON, Slack, Falco) fed from an
//!   outbox with retries.
//! - [`metrics`]: `/metrics` in the Prometheus text format.

#![warn(missing_docs)]

pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod sinks;
pub mod sources;
pub mod spool;
mod tls;

pub use config::ServeArgs;

use crate::config::{LogFormat, Settings};
use crate::metrics::Metrics;
use crate::pipeline::{Origin, Processor, Queue, Work};
use crate::sinks::{HttpSink, Outbox, Sinks};
use crate::sources::follow::{FollowOptions, Follower};
use crate::sources::webhook::App;
use crate::spool::Spool;
use axum::routing::{get, post};
use axum::Router;
use detect::clusterrole_pod_write::RuleOptions;
use detect::{Engine, EngineOptions, Suppressions, Tracker};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why `kubeward serve` could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A bad option or config file.
    #[error("{0}")]
    Config(String),
    /// A file or socket.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS setup.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state file.
    #[error(transparent)]
    State(#[from] detect::StateError),
    /// The spool file.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// Detection stopped while running (the state file failed); batches not processed are
    /// still in the spool.
    #[error("stateful detection stopped; see the log above")]
    Stopped,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Runs `kubeward serve` until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let settings = Settings::resolve(args)?;
    init_logging(settings.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kubeward-serve")
        .build()
        .map_err(io_err("cannot start the runtime"))?;
    rt.block_on(serve(settings))
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    // A second initialisation (tests calling `run` twice) keeps the first.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Opens the tracker (state file or memory), seeded from snapshots and the bootstrap policy.
fn open_tracker(s: &Settings, opts: RuleOptions, sup: Suppressions) -> Result<Tracker, ServeError> {
    let store = match &s.state {
        Some(p) => store::Store::open(p).map_err(detect::StateError::from)?,
        None => store::Store::in_memory().map_err(detect::StateError::from)?,
    };
    let mut tracker = Tracker::open(store, opts, sup)?;
    if !s.rbac_snapshot.is_empty() {
        let snap = rbac::Snapshot::load(&s.rbac_snapshot, &rbac::LoadOptions::default());
        for e in &snap.errors {
            if let rbac::LoadError::Read { .. } = e {
                return Err(ServeError::Config(format!("--rbac-snapshot: {e}")));
            }
            tracing::warn!("--rbac-snapshot: {e} (skipped)");
        }
        let label = s
            .rbac_snapshot
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        tracker.seed(&snap, &label)?;
    }
    tracker.assume_bootstrap();
    Ok(tracker)
}

async fn serve(s: Settings) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let suppressions = Suppressions::new(&s.suppress);
    let rule = RuleOptions {
        pod_write: rbac::PodWriteOptions::for_version(s.kube_version),
        cluster: s.cluster.clone(),
        kube_version: s.kube_version,
        log_hint: None,
    };
    let engine_opts = EngineOptions {
        rule: rule.clone(),
        prefilter: true,
        max_record: s.max_line_bytes,
        stateful: s.stateful,
        // The webhook and the log backend write native audit.k8s.io Events: the fast path,
        // with no managed-cluster unwrapping.
        input_format: audit::InputFormat::K8s,
        envelopes: false,
    };
    let tracker = if s.stateful {
        Some(open_tracker(&s, rule, suppressions.clone())?)
    } else {
        None
    };

    // Where followed files stopped last time (read before the tracker moves to its thread).
    let mut positions = std::collections::HashMap::new();
    if let Some(t) = &tracker {
        if s.state.is_some() {
            for p in &s.follow {
                let paths: Vec<std::path::PathBuf> = if p.contains(['*', '?', '[']) {
                    glob::glob(p)
                        .map(|g| g.flatten().collect())
                        .unwrap_or_default()
                } else {
                    vec![p.into()]
                };
                for path in paths {
                    let key = std::fs::canonicalize(&path)
                        .unwrap_or(path)
                        .display()
                        .to_string();
                    if let Some(pos) = t.position(&key)? {
                        positions.insert(key, pos);
                    }
                }
            }
        }
    }

    let (queue, rx) = Queue::new(s.queue_events, metrics.clone());
    let fatal = Arc::new(AtomicBool::new(false));
    let (recv_spool, proc_spool) = match &s.spool {
        Some(p) => (
            Some(
                spool::InboxWriter::spawn(Spool::open(p)?)
                    .map_err(io_err("cannot start the spool writer"))?,
            ),
            Some(Spool::open_for_deletes(p)?),
        ),
        None => (None, None),
    };
    // Batches acknowledged by an earlier run and not processed: first in line.
    if let Some(sp) = &proc_spool {
        let items = sp.inbox()?;
        if !items.is_empty() {
            let events: u64 = items.iter().map(|i| i.events).sum();
            tracing::info!(
                "{} batches ({events} events) acknowledged by an earlier run are processed first",
                items.len()
            );
        }
        for it in items {
            // Taken whatever the queue's size: they were acknowledged already.
            queue.force_reserve(it.events);
            queue.send(Work {
                lines: it.lines,
                events: it.events,
                origin: Origin::Webhook { inbox: Some(it.id) },
                received: Instant::now(),
            });
        }
    }

    let mut http = Vec::new();
    for (i, t) in s.http.iter().enumerate() {
        let name = format!("{} {i}", t.format.as_str());
        let outbox = Arc::new(Outbox::new(name, s.spool.as_deref(), metrics.clone())?);
        http.push(HttpSink {
            target: t.clone(),
            outbox,
        });
    }
    let deliveries: Vec<(Arc<Outbox>, String)> = http
        .iter()
        .map(|h| (h.outbox.clone(), h.target.url.clone()))
        .collect();
    let sinks = Sinks::new(s.stdout, s.alerts_file.as_deref(), http, metrics.clone()).map_err(
        io_err(format!(
            "cannot open the alerts file {}",
            s.alerts_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )),
    )?;
    let processor = Processor {
        engine: Engine::new(engine_opts.clone(), suppressions.clone()),
        engine_opts,
        tracker,
        sinks,
        spool: proc_spool,
        metrics: metrics.clone(),
        queue: queue.clone(),
        show_suppressed: s.show_suppressed,
        fatal: fatal.clone(),
        alerts_db: match (&s.state, &s.spool) {
            (Some(state), Some(_)) => {
                Some(store::Store::open(state).map_err(detect::StateError::from)?)
            }
            _ => None,
        },
    };
    /// Closes the queue when the processor ends, also by a panic (which stops the server).
    struct Closer(Arc<Queue>, Arc<AtomicBool>);
    impl Drop for Closer {
        fn drop(&mut self) {
            self.0.close();
            if std::thread::panicking() {
                self.1.store(true, Ordering::Relaxed);
            }
        }
    }
    let closer = Closer(queue.clone(), fatal.clone());
    let proc_handle = std::thread::Builder::new()
        .name("kubeward-detect".into())
        .spawn(move || {
            let _closer = closer;
            processor.run(rx)
        })
        .map_err(io_err("cannot start the detection thread"))?;

    let finish = Arc::new(AtomicBool::new(false));
    let client = sinks::http::client().map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut delivery_tasks = Vec::new();
    for (outbox, url) in deliveries {
        delivery_tasks.push(tokio::spawn(sinks::http::run(
            outbox,
            url,
            client.clone(),
            s.sink_max_backoff,
            finish.clone(),
            metrics.clone(),
        )));
    }

    let stop_follow = Arc::new(AtomicBool::new(false));
    let follow_handle = if s.follow.is_empty() {
        None
    } else {
        let f = Follower::new(
            FollowOptions {
                patterns: s.follow.clone(),
                interval: s.follow_interval,
                max_line: s.max_line_bytes,
                track_positions: s.state.is_some(),
                positions,
            },
            queue.clone(),
            metrics.clone(),
            stop_follow.clone(),
        );
        Some(
            std::thread::Builder::new()
                .name("kubeward-follow".into())
                .spawn(move || f.run())
                .map_err(io_err("cannot start the follower thread"))?,
        )
    };

    let app = Arc::new(App::new(
        queue.clone(),
        metrics.clone(),
        recv_spool,
        s.max_body,
        s.bearer_token.clone(),
        fatal.clone(),
    ));
    let router = Router::new()
        .route(&s.webhook_path, post(sources::webhook::receive))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        // The body limit is enforced by the handler, which logs and counts refusals.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app.clone());
    let handle = axum_server::Handle::new();
    let tls = match &s.tls {
        Some((cert, key)) => Some(tls::server_config(cert, key, s.client_ca.as_deref())?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let svc = router.into_make_service();
    let server_handle = handle.clone();
    let listen = s.listen;
    let server = tokio::spawn(async move {
        match tls {
            Some(cfg) => {
                axum_server::bind_rustls(listen, cfg)
                    .handle(server_handle)
                    .serve(svc)
                    .await
            }
            None => {
                axum_server::bind(listen)
                    .handle(server_handle)
                    .serve(svc)
                    .await
            }
        }
    });
    let Some(bound) = handle.listening().await else {
        let e = match server.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => std::io::Error::other("the server stopped"),
            Err(e) => std::io::Error::other(e.to_string()),
        };
        return Err(ServeError::Io {
            what: format!("cannot listen on {listen}"),
            source: e,
        });
    };
    tracing::info!(
        addr = %bound,
        "listening on {scheme}://{bound}{} (health /healthz, /readyz; metrics /metrics)",
        s.webhook_path
    );
    if let Some(p) = &s.ready_file {
        // Written whole, then renamed: a reader never sees half an address.
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{bound}\n"))
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(io_err(format!("cannot write {}", p.display())))?;
    }

    wait_for_stop(&s, &queue, &fatal).await;

    // Drain: refuse new batches, finish the requests in progress, stop following, process
    // everything accepted, then give the HTTP sinks time to deliver.
    tracing::info!("shutting down: draining the queue and flushing sinks");
    app.draining.store(true, Ordering::Relaxed);
    handle.graceful_shutdown(Some(Duration::from_secs(5)));
    let _ = server.await;
    stop_follow.store(true, Ordering::Relaxed);
    if let Some(h) = follow_handle {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    queue.stop();
    drop(app);
    let sinks = tokio::task::spawn_blocking(move || proc_handle.join())
        .await
        .ok()
        .and_then(Result::ok);
    finish.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(s.drain_timeout, async {
        for t in &mut delivery_tasks {
            let _ = t.await;
        }
    })
    .await;
    if drained.is_err() {
        for t in &delivery_tasks {
            t.abort();
        }
    }
    if let Some(sinks) = &sinks {
        for h in &sinks.http {
            if let Some(n) = pending(&h.outbox) {
                if h.outbox.durable() {
                    tracing::warn!(sink = %h.outbox.name, "{n} alerts not delivered yet: kept in the spool for the next start");
                } else {
                    tracing::error!(sink = %h.outbox.name, "{n} alerts not delivered and lost (no --spool or --state to keep them)");
                }
            }
        }
    }
    let m = &metrics;
    tracing::info!(
        "stopped: {} events received, {} parsed, {} malformed, {} refused",
        m.events_received.load(Ordering::Relaxed),
        m.events_parsed.load(Ordering::Relaxed),
        m.events_malformed.load(Ordering::Relaxed),
        m.events_dropped.load(Ordering::Relaxed),
    );
    if fatal.load(Ordering::Relaxed) {
        return Err(ServeError::Stopped);
    }
    Ok(())
}

/// Alerts still waiting in an outbox.
fn pending(o: &Outbox) -> Option<u64> {
    Some(o.len()).filter(|&n| n > 0)
}

/// Waits for SIGTERM or SIGINT (or a fatal error); SIGHUP reloads suppressions meanwhile.
async fn wait_for_stop(s: &Settings, queue: &Queue, fatal: &AtomicBool) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); return; }
            _ = int.recv() => { tracing::info!("SIGINT"); return; }
            _ = hup.recv() => match &s.config {
                Some(p) => match config::reload_suppressions(p) {
                    Ok(c) => {
                        tracing::info!("SIGHUP: reloading suppressions from {}", p.display());
                        queue.reload(Suppressions::new(&c));
                    }
                    Err(e) => tracing::error!("SIGHUP: {e}; the suppressions in use are kept"),
                },
                None => tracing::warn!("SIGHUP: no --config to reload"),
            },
            _ = tick.tick() => if fatal.load(Ordering::Relaxed) { return; },
        }
    }
}

async fn readyz(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    if app.draining.load(Ordering::Relaxed) || app.fatal.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if app.queue.is_full() {
        (StatusCode::SERVICE_UNAVAILABLE, "queue full\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics_text(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
