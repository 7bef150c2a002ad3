//! `kubeward serve` options: command-line flags, an optional YAML file (`--config`), and the
//! settings resolved from both (a flag wins over the file, the file over the default).

use crate::ServeError;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address (loopback: exposing the receiver is a decision to make explicitly).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";
/// Default webhook path.
pub const DEFAULT_WEBHOOK_PATH: &str = "/audit/webhook";
/// Default body limit: what Falco's k8saudit receiver accepts, above the API server's 10 MiB
/// truncation cap for batches.
pub const DEFAULT_MAX_BODY: usize = 12 << 20;
/// Default queue capacity, in events.
pub const DEFAULT_QUEUE_EVENTS: usize = 200_000;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `kubeward serve` flags. Every one can also be set in the `serve:` section of `--config`
/// (same name with `_` for `-`); a flag given on the command line wins.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// YAML file with a `serve:` section (any option below) and suppressions (as for
    /// `kubeward detect --config`). SIGHUP re-reads its suppressions.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address for the webhook, /healthz, /readyz and /metrics (port 0: any free port; see
    /// --ready-file) [default: 127.0.0.1:8765].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Path the API server POSTs audit batches to [default: /audit/webhook].
    #[arg(long, value_name = "PATH")]
    pub webhook_path: Option<String>,

    /// Largest request body, also after gzip decompression; larger ones get 413 [default: 12M].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_body_bytes: Option<usize>,

    /// Events accepted but not yet processed; beyond this requests get 429 (the API server
    /// retries them) [default: 200000].
    #[arg(long, value_name = "N")]
    pub queue_events: Option<usize>,

    /// Write the bound address (e.g. 127.0.0.1:41234) to this file once listening.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// State file (as for `kubeward detect --state`): stateful detection, alerts stored once
    /// per rule and auditID, followed files' positions, and batches kept on disk from
    /// acknowledgement until processed.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Stateful detection in memory only (no state file).
    #[arg(long)]
    pub stateful: bool,

    /// Seed the stateful model from RBAC snapshot files (as for `kubeward detect`).
    #[arg(long, value_name = "PATH")]
    pub rbac_snapshot: Vec<PathBuf>,

    /// SQLite file holding accepted batches until processed and alerts until an HTTP sink
    /// took them [default: STATE.spool with --state; otherwise in memory].
    #[arg(long, value_name = "PATH")]
    pub spool: Option<PathBuf>,

    /// Follow an audit log file as the log backend writes it (repeatable; globs allowed).
    /// Starts at the end (or the saved position with --state), survives rotation and truncation.
    #[arg(long, value_name = "PATH")]
    pub follow: Vec<String>,

    /// How often followed files are checked [default: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub follow_interval: Option<Duration>,

    /// Append alerts as JSON lines to this file.
    #[arg(long, value_name = "PATH")]
    pub alerts_file: Option<PathBuf>,

    /// Print alerts as JSON lines on standard output.
    #[arg(long)]
    pub stdout: bool,

    /// POST each alert as JSON to this URL (repeatable), with retries and an outbox.
    #[arg(long, value_name = "URL")]
    pub http_sink: Vec<String>,

    /// POST a Slack-compatible message ({"text": ...}) per alert to this incoming-webhook URL.
    #[arg(long, value_name = "URL")]
    pub slack_webhook: Vec<String>,

    /// POST each alert in Falco's output shape to this URL (e.g. Falcosidekick).
    #[arg(long, value_name = "URL")]
    pub falco_sink: Vec<String>,

    /// Longest wait between retries of an HTTP sink [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sink_max_backoff: Option<Duration>,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS, what the API server's
    /// webhook kubeconfig uses with client-certificate(-data).
    #[arg(long, value_name = "PATH")]
    pub client_ca: Option<PathBuf>,

    /// Require `Authorization: Bearer TOKEN` on the webhook, the token read from this file.
    #[arg(long, value_name = "PATH")]
    pub bearer_token_file: Option<PathBuf>,

    /// Cluster label for alerts.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// The cluster's Kubernetes version (as for `kubeward detect`).
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,

    /// Deliver suppressed alerts too (with `suppressed_by`).
    #[arg(long)]
    pub show_suppressed: bool,

    /// Longest line read from followed files [default: 64M].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_line_bytes: Option<usize>,

    /// How long shutdown waits for HTTP sinks to deliver what is pending [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,

    /// Log format on standard error [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The `serve:` section of the config file: the same options as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServe {
    listen: Option<String>,
    webhook_path: Option<String>,
    #[serde(default, deserialize_with = "de_size")]
    max_body_bytes: Option<usize>,
    queue_events: Option<usize>,
    ready_file: Option<PathBuf>,
    state: Option<PathBuf>,
    stateful: Option<bool>,
    #[serde(default)]
    rbac_snapshot: Vec<PathBuf>,
    spool: Option<PathBuf>,
    #[serde(default)]
    follow: Vec<String>,
    #[serde(default, deserialize_with = "de_duration")]
    follow_interval: Option<Duration>,
    alerts_file: Option<PathBuf>,
    stdout: Option<bool>,
    #[serde(default)]
    http_sink: Vec<String>,
    #[serde(default)]
    slack_webhook: Vec<String>,
    #[serde(default)]
    falco_sink: Vec<String>,
    #[serde(default, deserialize_with = "de_duration")]
    sink_max_backoff: Option<Duration>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    bearer_token_file: Option<PathBuf>,
    cluster: Option<String>,
    kube_version: Option<String>,
    show_suppressed: Option<bool>,
    #[serde(default, deserialize_with = "de_size")]
    max_line_bytes: Option<usize>,
    #[serde(default, deserialize_with = "de_duration")]
    drain_timeout: Option<Duration>,
    log_format: Option<LogFormat>,
}

/// The whole config file: the serve section and detect's suppression settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    serve: Option<FileServe>,
    #[serde(default)]
    default_suppressions: Option<bool>,
    #[serde(default)]
    suppressions: Option<serde_json::Value>,
}

/// A size or duration in the config file: a number, or a string as on the command line.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<NumOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrText::Num(n)) => Ok(Some(n as usize)),
        Some(NumOrText::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<NumOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrText::Num(n)) => Ok(Some(Duration::from_secs(n))),
        Some(NumOrText::Text(s)) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `12M`, `64k`, `1G`, `1048576`: bytes (binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'B' => 1,
                _ => return Err(format!("{s:?}: unknown unit (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 12M"))?;
    n.checked_mul(mul)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// `250ms`, `2s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 250ms or 2s"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One HTTP sink: where and in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The receiver's URL.
    pub url: String,
    /// The body shape.
    pub format: HttpFormat,
}

/// The body an HTTP sink posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// The alert's JSON, as in the file sink.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
    /// Falco's alert JSON (Falcosidekick's input).
    Falco,
}

impl HttpFormat {
    /// Name used in logs, metrics and the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpFormat::Json => "http",
            HttpFormat::Slack => "slack",
            HttpFormat::Falco => "falco",
        }
    }
}

/// Everything `kubeward serve` runs with, resolved from flags, the config file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file, re-read on SIGHUP.
    pub config: Option<PathBuf>,
    /// Suppression settings from the config file (detect's format).
    pub suppress: detect::Config,
    /// Listen address.
    pub listen: SocketAddr,
    /// Webhook path.
    pub webhook_path: String,
    /// Body limit in bytes.
    pub max_body: usize,
    /// Queue capacity in events.
    pub queue_events: usize,
    /// Where to write the bound address.
    pub ready_file: Option<PathBuf>,
    /// State file.
    pub state: Option<PathBuf>,
    /// Stateful detection (state file or in memory).
    pub stateful: bool,
    /// RBAC snapshots to seed from.
    pub rbac_snapshot: Vec<PathBuf>,
    /// Spool file.
    pub spool: Option<PathBuf>,
    /// Follow patterns.
    pub follow: Vec<String>,
    /// Follow poll interval.
    pub follow_interval: Duration,
    /// Alerts file.
    pub alerts_file: Option<PathBuf>,
    /// Stdout sink.
    pub stdout: bool,
    /// HTTP sinks.
    pub http: Vec<HttpTarget>,
    /// Longest retry wait.
    pub sink_max_backoff: Duration,
    /// TLS certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Client CA for mTLS.
    pub client_ca: Option<PathBuf>,
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// Cluster label.
    pub cluster: Option<String>,
    /// Kubernetes version.
    pub kube_version: Option<rbac::KubeVersion>,
    /// Deliver suppressed alerts.
    pub show_suppressed: bool,
    /// Longest line of followed files.
    pub max_line_bytes: usize,
    /// Shutdown wait for HTTP sinks.
    pub drain_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

/// Reads the config file: its serve section and its suppressions.
fn read_file(path: &Path) -> Result<(FileServe, detect::Config), ServeError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::Io {
        what: format!("cannot read config {}", path.display()),
        source: e,
    })?;
    let name = path.display().to_string();
    let file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| ServeError::Config(format!("{name}: {e}")))?
    };
    // The suppressions go through detect's own parser, so they are checked the same way as for
    // `kubeward detect` (JSON is YAML, which that parser reads).
    let mut rest = serde_json::Map::new();
    if let Some(d) = file.default_suppressions {
        rest.insert("default_suppressions".into(), d.into());
    }
    if let Some(s) = file.suppressions {
        rest.insert("suppressions".into(), s);
    }
    let suppress = detect::Config::parse(&name, &serde_json::Value::Object(rest).to_string())
        .map_err(|e| ServeError::Config(e.to_string()))?;
    Ok((file.serve.unwrap_or_default(), suppress))
}

/// Re-reads only the suppressions of the config file (SIGHUP).
pub fn reload_suppressions(path: &Path) -> Result<detect::Config, ServeError> {
    read_file(path).map(|(_, s)| s)
}

impl Settings {
    /// Resolves the flags against the config file and the defaults, and checks them.
    pub fn resolve(a: ServeArgs) -> Result<Settings, ServeError> {
        let (f, suppress) = match &a.config {
            Some(p) => read_file(p)?,
            None => (FileServe::default(), detect::Config::default()),
        };
        let listen_text = a
            .listen
            .or(f.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ServeError::Config(format!(
                "listen address {listen_text:?} is not IP:PORT (e.g. 127.0.0.1:8765 or 0.0.0.0:8443)"
            ))
        })?;
        let webhook_path = a
            .webhook_path
            .or(f.webhook_path)
            .unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_string());
        if !webhook_path.starts_with('/') {
            return Err(ServeError::Config(format!(
                "webhook path {webhook_path:?} must start with /"
            )));
        }
        let state = a.state.or(f.state);
        let spool = a
            .spool
            .or(f.spool)
            .or_else(|| state.as_ref().map(|s| spool_for(s)));
        let mut http = Vec::new();
        let pick = |cli: Vec<String>, file: Vec<String>| if cli.is_empty() { file } else { cli };
        for (urls, format) in [
            (pick(a.http_sink, f.http_sink), HttpFormat::Json),
            (pick(a.slack_webhook, f.slack_webhook), HttpFormat::Slack),
            (pick(a.falco_sink, f.falco_sink), HttpFormat::Falco),
        ] {
            for url in urls {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ServeError::Config(format!(
                        "sink URL {url:?} must start with http:// or https://"
                    )));
                }
                http.push(HttpTarget { url, format });
            }
        }
        let tls = match (a.tls_cert.or(f.tls_cert), a.tls_key.or(f.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ServeError::Config(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        let client_ca = a.client_ca.or(f.client_ca);
        if client_ca.is_some() && tls.is_none() {
            return Err(ServeError::Config(
                "--client-ca needs HTTPS (--tls-cert and --tls-key)".into(),
            ));
        }
        let bearer_token = match a.bearer_token_file.or(f.bearer_token_file) {
            Some(p) => {
                let t = std::fs::read_to_string(&p).map_err(|e| ServeError::Io {
                    what: format!("cannot read bearer token file {}", p.display()),
                    source: e,
                })?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(ServeError::Config(format!(
                        "bearer token file {} is empty",
                        p.display()
                    )));
                }
                Some(t)
            }
            None => None,
        };
        let kube_version = match a.kube_version.or(f.kube_version) {
            Some(v) => Some(rbac::KubeVersion::parse(&v).ok_or_else(|| {
                ServeError::Config(format!(
                    "kube version {v:?} is not a Kubernetes version (e.g. 1.34 or v1.35.1)"
                ))
            })?),
            None => None,
        };
        let rbac_snapshot = if a.rbac_snapshot.is_empty() {
            f.rbac_snapshot
        } else {
            a.rbac_snapshot
        };
        let stateful = a.stateful
            || f.stateful.unwrap_or(false)
            || state.is_some()
            || !rbac_snapshot.is_empty();
        Ok(Settings {
            config: a.config,
            suppress,
            listen,
            webhook_path,
            max_body: a
                .max_body_bytes
                .or(f.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY),
            queue_events: a
                .queue_events
                .or(f.queue_events)
                .unwrap_or(DEFAULT_QUEUE_EVENTS)
                .max(1),
            ready_file: a.ready_file.or(f.ready_file),
            state,
            stateful,
            rbac_snapshot,
            spool,
            follow: pick(a.follow, f.follow),
            follow_interval: a
                .follow_interval
                .or(f.follow_interval)
                .unwrap_or(Duration::from_millis(200))
                .max(Duration::from_millis(10)),
            alerts_file: a.alerts_file.or(f.alerts_file),
            stdout: a.stdout || f.stdout.unwrap_or(false),
            http,
            sink_max_backoff: a
                .sink_max_backoff
                .or(f.sink_max_backoff)
                .unwrap_or(Duration::from_secs(30))
                .max(Duration::from_millis(50)),
            tls,
            client_ca,
            bearer_token,
            cluster: a.cluster.or(f.cluster),
            kube_version,
            show_suppressed: a.show_suppressed || f.show_suppressed.unwrap_or(false),
            max_line_bytes: a.max_line_bytes.or(f.max_line_bytes).unwrap_or(64 << 20),
            drain_timeout: a
                .drain_timeout
                .or(f.drain_timeout)
                .unwrap_or(Duration::from_secs(10)),
            log_format: a.log_format.or(f.log_format).unwrap_or(LogFormat::Text),
        })
    }
}

/// The default spool file next to a state file.
pub fn spool_for(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_os_string();
    s.push(".spool");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("12M"), Ok(12 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let p = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/serve.yaml"
        ));
        let s = Settings::resolve(ServeArgs {
            config: Some(p.to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.max_body, DEFAULT_MAX_BODY);
        assert_eq!(s.webhook_path, DEFAULT_WEBHOOK_PATH);
        assert_eq!(s.suppress.suppressions.len(), 1);
    }

    #[test]
    fn the_shipped_kubeconfig_and_audit_policy_fit_together() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"));
        let read = |name: &str| -> serde_json::Value {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let kc = read("audit-webhook.kubeconfig");
        assert_eq!(kc["kind"], "Config");
        let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap();
        assert!(server.ends_with(DEFAULT_WEBHOOK_PATH), "{server}");
        assert_eq!(kc["current-context"], kc["contexts"][0]["name"]);
        let policy = read("audit-policy.yaml");
        assert_eq!(policy["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(policy["kind"], "Policy");
        let first = &policy["rules"][0];
        assert_eq!(first["level"], "RequestResponse");
        assert_eq!(first["resources"][0]["group"], "rbac.authorization.k8s.io");
        let rules = policy["rules"].as_array().unwrap();
        assert_eq!(rules.last().unwrap()["level"], "Metadata");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.yaml");
        std::fs::write(
            &p,
            "serve:\n  listen: 127.0.0.1:9999\n  max_body_bytes: 1M\n  alerts_file: a.jsonl\n  follow_interval: 1s\nsuppressions:\n  - name: x\n    user: bob\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(p.clone()),
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.listen.port(), 1);
        assert_eq!(s.max_body, 1 << 20);
        assert_eq!(s.alerts_file, Some(PathBuf::from("a.jsonl")));
        assert_eq!(s.follow_interval, Duration::from_secs(1));
        assert_eq!(s.suppress.suppressions.len(), 1);
        std::fs::write(&p, "serve:\n  lisen: 1\n").unwrap();
        let e = Settings::resolve(ServeArgs {
            config: Some(p),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }
}
