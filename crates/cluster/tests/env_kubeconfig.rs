//! With no `--kubeconfig`, the `KUBECONFIG` variable is used. Its own test binary, so setting
//! the variable cannot race with other tests.

mod common;

use cluster::{load_live, LiveOptions};
use common::{fixture, BASE};

#[test]
fn kubeconfig_from_environment_and_current_context() {
    let f = fixture();
    std::env::set_var("KUBECONFIG", &f.kubeconfig);
    let snap = load_live(&LiveOptions::default()).unwrap();
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert_eq!(snap.roles.len(), 4);
    assert_eq!(snap.bindings.len(), 2);
    assert_eq!(snap.roles[0].origin.file, "live:alpha");
    let seen = f.a.seen();
    assert_eq!(seen[0].target, format!("{BASE}/clusterroles?limit=500"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer token-alice"));

    // --context still picks another context of that file.
    let snap = load_live(&LiveOptions {
        context: Some("gamma".into()),
        ..LiveOptions::default()
    })
    .unwrap();
    assert_eq!(snap.roles.len(), 1);
    assert_eq!(f.b.seen().len(), 4);
    std::env::remove_var("KUBECONFIG");
}
