//! `load_live` against a fake API server on loopback, serving list responses in the shape the
//! real API server returns them (items without kind or apiVersion, paged with `continue`).

mod common;

use cluster::{load_live, LiveError, LiveOptions};
use common::{fixture, opts, role_names, write_kubeconfig, FakeServer, BASE};
use rbac::{BindingKind, PolicyRule, RoleKind};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::Arc;

fn rules(v: Value) -> Vec<PolicyRule> {
    serde_json::from_value(v).unwrap()
}

#[test]
fn reads_all_four_kinds_following_continue_tokens() {
    let f = fixture();
    let snap = load_live(&opts(&f, None, 7)).unwrap();
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert!(snap.skipped.is_empty(), "{:?}", snap.skipped);

    assert_eq!(
        role_names(&snap),
        vec![
            (RoleKind::ClusterRole, None, "pod-writer"),
            (RoleKind::ClusterRole, None, "aggregate-view"),
            (RoleKind::Role, Some("team-a"), "secret-reader"),
            (RoleKind::Role, Some("kube-system"), "pod-exec"),
        ]
    );
    let pw = snap.cluster_role("pod-writer").unwrap();
    assert_eq!(pw.labels.get("team").map(String::as_str), Some("platform"));
    assert_eq!(
        pw.rules,
        rules(
            json!([{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["create", "delete"]}])
        )
    );
    let agg = snap.cluster_role("aggregate-view").unwrap();
    assert_eq!(agg.aggregation.as_ref().map(Vec::len), Some(1));
    assert!(agg.rules.is_empty());
    let pe = snap.role("kube-system", "pod-exec").unwrap();
    assert_eq!(
        pe.rules,
        rules(
            json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"], "resourceNames": ["debug"]}])
        )
    );
    assert_eq!(pe.rules[0].resource_names, ["debug"]);
    let sr = snap.role("team-a", "secret-reader").unwrap();
    assert_eq!(
        sr.rules,
        rules(json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]))
    );
    assert!(!sr.defaulted_namespace);

    assert_eq!(snap.bindings.len(), 2);
    let crb = &snap.bindings[0];
    assert_eq!(
        (crb.kind, crb.name.as_str(), crb.namespace.as_deref()),
        (BindingKind::ClusterRoleBinding, "deployers", None)
    );
    assert_eq!(
        (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
        ("ClusterRole", "pod-writer")
    );
    assert_eq!(crb.subjects.len(), 1);
    assert_eq!(crb.subjects[0].to_string(), "ServiceAccount ci/deployer");
    let rb = &snap.bindings[1];
    assert_eq!(
        (rb.kind, rb.name.as_str(), rb.namespace.as_deref()),
        (BindingKind::RoleBinding, "readers", Some("team-a"))
    );
    assert_eq!(
        snap.bound_role(rb).map(|r| r.name.as_str()),
        Some("secret-reader")
    );
    let subjects: Vec<String> = rb
        .subjects
        .iter()
        .map(|s| rb.effective_subject(s).unwrap().to_string())
        .collect();
    assert_eq!(
        subjects,
        ["Group team-a-devs", "ServiceAccount team-a/builder"]
    );

    // Origins: the context names the source; pages (zero-based) count across the whole read.
    let origins: Vec<(&str, usize, Option<usize>)> = snap
        .roles
        .iter()
        .map(|r| &r.origin)
        .chain(snap.bindings.iter().map(|b| &b.origin))
        .map(|o| (o.file.as_str(), o.document, o.item))
        .collect();
    assert_eq!(
        origins,
        [
            ("live:alpha", 0, Some(0)),
            ("live:alpha", 1, Some(0)),
            ("live:alpha", 3, Some(0)),
            ("live:alpha", 4, Some(0)),
            ("live:alpha", 2, Some(0)),
            ("live:alpha", 5, Some(0)),
        ]
    );

    // The requests: limit on every one, continue tokens followed (and percent-encoded).
    let seen = f.a.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            format!("{BASE}/clusterroles?limit=7"),
            format!("{BASE}/clusterroles?limit=7&continue=tok1"),
            format!("{BASE}/clusterrolebindings?limit=7"),
            format!("{BASE}/roles?limit=7"),
            format!("{BASE}/roles?limit=7&continue=r%2F2%2B%3D"),
            format!("{BASE}/rolebindings?limit=7"),
        ]
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer token-alice")));
    assert!(f.b.seen().is_empty());
}

#[test]
fn default_page_size_is_500() {
    let f = fixture();
    let mut o = opts(&f, Some("alpha"), 0);
    o.page_size = LiveOptions::default().page_size;
    let snap = load_live(&o).unwrap();
    assert_eq!(snap.roles.len(), 4);
    let seen = f.a.seen();
    assert!(
        seen[0].target.ends_with("/clusterroles?limit=500"),
        "{seen:?}"
    );
    assert!(
        seen[1]
            .target
            .ends_with("/clusterroles?limit=500&continue=tok1"),
        "{seen:?}"
    );
}

#[test]
fn context_selects_cluster_and_user() {
    let f = fixture();
    let snap = load_live(&opts(&f, Some("gamma"), 100)).unwrap();
    assert_eq!(
        role_names(&snap),
        vec![(RoleKind::ClusterRole, None, "only-on-b")]
    );
    assert!(snap.bindings.is_empty());
    assert_eq!(snap.roles[0].origin.file, "live:gamma");
    assert!(
        f.a.seen().is_empty(),
        "context gamma must not talk to cluster A"
    );
    let seen = f.b.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer token-alice")));
}

#[test]
fn forbidden_names_url_and_status() {
    let f = fixture();
    let err = load_live(&opts(&f, Some("beta"), 50)).unwrap_err();
    let url = format!("{}{BASE}/clusterroles?limit=50", f.a.url());
    match &err {
        LiveError::Http {
            url: u,
            status,
            reason,
            ..
        } => {
            assert_eq!(u, &url);
            assert_eq!(*status, 403);
            assert_eq!(reason, "Forbidden");
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("403"), "{msg}");
    assert!(
        msg.contains("forbidden: the kubeconfig user cannot list clusterroles"),
        "{msg}"
    );
    assert!(msg.contains("User \"bob\" cannot list"), "{msg}");
    // Bob's token was sent, and the read stopped at the first failure.
    let seen = f.a.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer token-bob"));
}

#[test]
fn non_status_error_body_still_names_status() {
    // A proxy answering 502 with plain text, not a metav1.Status.
    let server = FakeServer::start(Arc::new(|_: &str, _: Option<&str>| {
        (502, "upstream down".to_string())
    }));
    let dir = tempfile::tempdir().unwrap();
    let kc = write_kubeconfig(dir.path(), &server.url(), &server.url());
    let err = load_live(&LiveOptions {
        kubeconfig: Some(kc),
        ..LiveOptions::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, LiveError::Http { status: 502, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("{}{BASE}/clusterroles?limit=500", server.url())),
        "{msg}"
    );
    assert!(msg.contains("upstream down"), "{msg}");
}

#[test]
fn unknown_context_lists_the_known_ones() {
    let f = fixture();
    let err = load_live(&opts(&f, Some("delta"), 10)).unwrap_err();
    assert_eq!(
        err,
        LiveError::UnknownContext {
            context: "delta".into(),
            available: vec!["alpha".into(), "beta".into(), "gamma".into()],
        }
    );
    assert!(err.to_string().contains("alpha, beta, gamma"), "{err}");
    assert!(f.a.seen().is_empty() && f.b.seen().is_empty());
}

#[test]
fn missing_and_invalid_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = load_live(&LiveOptions {
        kubeconfig: Some(missing.clone()),
        ..LiveOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, LiveError::KubeconfigRead { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("not found"), "{err}");

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "clusters: [ {").unwrap();
    let err = load_live(&LiveOptions {
        kubeconfig: Some(bad),
        ..LiveOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, LiveError::KubeconfigInvalid { .. }),
        "{err:?}"
    );

    let nocontext = dir.path().join("nocontext");
    std::fs::write(
        &nocontext,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .unwrap();
    let err = load_live(&LiveOptions {
        kubeconfig: Some(nocontext),
        ..LiveOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, LiveError::KubeconfigInvalid { .. }),
        "{err:?}"
    );
}

#[test]
fn connection_refused_names_the_server() {
    // A port that was just free: nothing listens on it any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let kc = write_kubeconfig(dir.path(), &url, &url);
    let err = load_live(&LiveOptions {
        kubeconfig: Some(kc),
        ..LiveOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, LiveError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn works_from_inside_a_tokio_runtime() {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snap = rt
        .block_on(async { load_live(&opts(&f, None, 500)) })
        .unwrap();
    assert_eq!(snap.roles.len(), 4);
    assert_eq!(snap.bindings.len(), 2);
}
