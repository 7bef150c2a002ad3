//! Reading the RBAC objects of a live cluster through a kubeconfig.
//!
//! [`load_live`] lists the four RBAC kinds (ClusterRoles, ClusterRoleBindings, Roles and
//! RoleBindings in all namespaces) from `rbac.authorization.k8s.io/v1`, page by page with
//! `limit` and `continue`, and feeds every item into an [`rbac::Snapshot`] exactly as a file
//! loaded with `kubectl get ... -o json` would be. The raw JSON is used, so no Kubernetes
//! version's typed bindings decide what a field may hold.
//!
//! Any failed list (a 403 for one kind, say) fails the whole load: a snapshot that silently
//! lacks one kind would make every later answer wrong.

#![warn(missing_docs)]

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use rbac::objects::Origin;
use rbac::{LoadOptions, Snapshot};
use serde_json::Value;
use std::error::Error as StdError;
use std::path::PathBuf;
use thiserror::Error;

/// The RBAC API group and version that is listed.
pub const RBAC_API: &str = "rbac.authorization.k8s.io/v1";

/// The kinds read, in the order they are listed: (resource, kind).
pub const RESOURCES: [(&str, &str); 4] = [
    ("clusterroles", "ClusterRole"),
    ("clusterrolebindings", "ClusterRoleBinding"),
    ("roles", "Role"),
    ("rolebindings", "RoleBinding"),
];

/// Where and how to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// Kubeconfig file; `None` reads `KUBECONFIG` (all its paths, merged) or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Context to use; `None` uses the kubeconfig's `current-context`.
    pub context: Option<String>,
    /// Items asked for per request (`limit`); 0 asks for everything at once.
    pub page_size: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            kubeconfig: None,
            context: None,
            page_size: 500,
        }
    }
}

/// Why a live read failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LiveError {
    /// No kubeconfig path was given, `KUBECONFIG` is unset and there is no home directory.
    #[error("no kubeconfig found: give --kubeconfig, or set KUBECONFIG")]
    NoKubeconfig,
    /// The kubeconfig file could not be read (missing, unreadable).
    #[error("kubeconfig {path}: {message}")]
    KubeconfigRead {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The kubeconfig was read but is not usable (bad YAML, no current context, missing
    /// cluster or user, bad certificate data, ...).
    #[error("invalid kubeconfig: {message}")]
    KubeconfigInvalid {
        /// Why.
        message: String,
    },
    /// The requested context is not in the kubeconfig.
    #[error("context {context:?} not found in the kubeconfig (contexts: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownContext {
        /// The context asked for.
        context: String,
        /// The contexts the kubeconfig has.
        available: Vec<String>,
    },
    /// The client could not be built from the configuration (TLS setup, proxy settings).
    #[error("cannot set up a client for {server}: {message}")]
    Client {
        /// The cluster's server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// Getting credentials failed (an exec plugin, a token file).
    #[error("cannot authenticate to {server}: {message}")]
    Auth {
        /// The cluster's server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot connect to {server}: {message}")]
    Connect {
        /// The cluster's server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// The server answered a list with an HTTP error status.
    #[error("GET {url}: HTTP {status}{}: {hint}{}", if reason.is_empty() { String::new() } else { format!(" {reason}") }, if message.is_empty() { String::new() } else { format!(" (server said: {message})") })]
    Http {
        /// The full URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The status's reason (`Forbidden`, ...), from the server's `Status` or HTTP.
        reason: String,
        /// The server's message, if any.
        message: String,
        /// What it means for this read, e.g. `forbidden: the kubeconfig user cannot list
        /// clusterroles`.
        hint: String,
    },
    /// The server's answer is not a list.
    #[error("GET {url}: unexpected response: {message}")]
    Decode {
        /// The full URL requested.
        url: String,
        /// Why.
        message: String,
    },
    /// The tokio runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

/// Reads the RBAC objects of the cluster that `opts` selects. Blocking: it runs its own
/// single-threaded tokio runtime (on a helper thread when called from inside a runtime).
pub fn load_live(opts: &LiveOptions) -> Result<Snapshot, LiveError> {
    let run = || -> Result<Snapshot, LiveError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LiveError::Runtime(e.to_string()))?;
        rt.block_on(load_live_async(opts))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // `block_on` inside a runtime panics; run ours where no runtime is current.
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(LiveError::Runtime("the loader thread panicked".into())))
        })
    } else {
        run()
    }
}

/// [`load_live`] for callers that already run tokio.
pub async fn load_live_async(opts: &LiveOptions) -> Result<Snapshot, LiveError> {
    let kc = match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(kubeconfig_error)?;

    if let Some(ctx) = &opts.context {
        if !kc.contexts.iter().any(|c| &c.name == ctx) {
            return Err(LiveError::UnknownContext {
                context: ctx.clone(),
                available: kc.contexts.iter().map(|c| c.name.clone()).collect(),
            });
        }
    }
    let context_name = opts
        .context
        .clone()
        .or_else(|| kc.current_context.clone())
        .filter(|c| !c.is_empty());

    let kopts = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &kopts)
        .await
        .map_err(kubeconfig_error)?;
    let base = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let server = base.clone();
    let client = Client::try_from(config).map_err(|e| LiveError::Client {
        server: server.clone(),
        message: chain(&e),
    })?;

    let label = format!("live:{}", context_name.as_deref().unwrap_or(&server));
    let mut snap = Snapshot::default();
    let load_opts = LoadOptions::default();
    let mut page_index = 0usize;

    for (resource, kind) in RESOURCES {
        let mut token: Option<String> = None;
        loop {
            let path = list_path(resource, opts.page_size, token.as_deref());
            let url = format!("{base}{path}");
            let mut list = get_json(&client, &path, &url, &server, resource).await?;
            let items = match list.get_mut("items").map(Value::take) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a,
                Some(_) => {
                    return Err(LiveError::Decode {
                        url,
                        message: "`items` is not an array".into(),
                    })
                }
            };
            for (i, mut item) in items.into_iter().enumerate() {
                if let Value::Object(map) = &mut item {
                    // Items of a list response carry neither kind nor apiVersion.
                    map.entry("kind")
                        .or_insert_with(|| Value::String(kind.into()));
                    map.entry("apiVersion")
                        .or_insert_with(|| Value::String(RBAC_API.into()));
                }
                let origin = Origin {
                    file: label.clone(),
                    document: page_index,
                    item: Some(i),
                };
                snap.add_value(item, origin, &load_opts);
            }
            page_index += 1;
            let next = list
                .get("metadata")
                .and_then(|m| m.get("continue"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            match next {
                None => break,
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(LiveError::Decode {
                        url,
                        message: format!("the server returned the same continue token {t:?} again"),
                    });
                }
                Some(t) => token = Some(t),
            }
        }
    }
    Ok(snap)
}

/// The path and query of one list request.
fn list_path(resource: &str, limit: u32, token: Option<&str>) -> String {
    let mut path = format!("/apis/{RBAC_API}/{resource}");
    let mut sep = '?';
    if limit > 0 {
        path.push_str(&format!("{sep}limit={limit}"));
        sep = '&';
    }
    if let Some(t) = token {
        path.push_str(&format!("{sep}continue={}", encode_query(t)));
    }
    path
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn get_json(
    client: &Client,
    path: &str,
    url: &str,
    server: &str,
    resource: &str,
) -> Result<Value, LiveError> {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| LiveError::Decode {
            url: url.to_string(),
            message: format!("cannot build the request: {e}"),
        })?;
    let text = client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(status) => {
            let code = status.code;
            // kube puts this reason on a Status it made up from a non-Status body.
            let reason =
                if status.reason.is_empty() || status.reason == "Failed to parse error data" {
                    http::StatusCode::from_u16(code)
                        .ok()
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("")
                        .to_string()
                } else {
                    status.reason.clone()
                };
            LiveError::Http {
                url: url.to_string(),
                status: code,
                reason,
                message: status.message.trim().to_string(),
                hint: status_hint(code, resource),
            }
        }
        kube::Error::Auth(a) => LiveError::Auth {
            server: server.to_string(),
            message: chain(&a),
        },
        kube::Error::FromUtf8(u) => LiveError::Decode {
            url: url.to_string(),
            message: format!("body is not UTF-8: {u}"),
        },
        // kube's own wrapper words ("ServiceError", "HyperError") say nothing to a user.
        kube::Error::Service(e) => LiveError::Connect {
            server: server.to_string(),
            message: chain(&*e),
        },
        kube::Error::HyperError(e) => LiveError::Connect {
            server: server.to_string(),
            message: chain(&e),
        },
        other => LiveError::Connect {
            server: server.to_string(),
            message: chain(&other),
        },
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| LiveError::Decode {
        url: url.to_string(),
        message: format!("invalid JSON: {e}"),
    })?;
    if !v.is_object() {
        return Err(LiveError::Decode {
            url: url.to_string(),
            message: "not a JSON object".into(),
        });
    }
    Ok(v)
}

fn status_hint(code: u16, resource: &str) -> String {
    match code {
        401 => "unauthorized: the server rejected the kubeconfig credentials".into(),
        403 => format!("forbidden: the kubeconfig user cannot list {resource}"),
        404 => format!("not found: the server does not serve {RBAC_API} {resource}"),
        410 => "gone: the list expired while paging; try again (or a larger page size)".into(),
        429 => "too many requests: the server is throttling; try again".into(),
        c if c >= 500 => format!("server error while listing {resource}"),
        _ => format!("the server refused to list {resource}"),
    }
}

fn kubeconfig_error(e: KubeconfigError) -> LiveError {
    match e {
        KubeconfigError::FindPath => LiveError::NoKubeconfig,
        KubeconfigError::ReadConfig(io, path) => LiveError::KubeconfigRead {
            path: path.display().to_string(),
            message: if io.kind() == std::io::ErrorKind::NotFound {
                "not found".into()
            } else {
                io.to_string()
            },
        },
        other => LiveError::KubeconfigInvalid {
            message: chain(&other),
        },
    }
}

/// An error and its sources, `a: b: c`, without repeating a source its parent already shows.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_encoding() {
        assert_eq!(
            list_path("roles", 500, None),
            "/apis/rbac.authorization.k8s.io/v1/roles?limit=500"
        );
        assert_eq!(
            list_path("roles", 0, Some("a+b/c=")),
            "/apis/rbac.authorization.k8s.io/v1/roles?continue=a%2Bb%2Fc%3D"
        );
        assert_eq!(
            list_path("clusterroles", 2, Some("tok1")),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles?limit=2&continue=tok1"
        );
        assert_eq!(LiveOptions::default().page_size, 500);
    }

    #[test]
    fn http_error_message() {
        let e = LiveError::Http {
            url: "https://k/apis/rbac.authorization.k8s.io/v1/clusterroles?limit=500".into(),
            status: 403,
            reason: "Forbidden".into(),
            message: "clusterroles is forbidden".into(),
            hint: status_hint(403, "clusterroles"),
        };
        assert_eq!(
            e.to_string(),
            "GET https://k/apis/rbac.authorization.k8s.io/v1/clusterroles?limit=500: HTTP 403 Forbidden: \
             forbidden: the kubeconfig user cannot list clusterroles (server said: clusterroles is forbidden)"
        );
    }
}
