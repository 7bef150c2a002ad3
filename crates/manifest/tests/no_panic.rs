//! Robustness: reading, holding and judging manifests never panics, whatever the bytes, and
//! an object that is read is always located inside its file.

use manifest::{read_file, Evaluator, ManifestSet};
use proptest::prelude::*;

/// Pieces of real manifests, Helm templates, Kustomize files and junk, to build inputs that
/// get past the first parse error more often than random bytes do.
const PIECES: &[&str] = &[
    "---\n",
    "--- # c\n",
    "...\n",
    "apiVersion: rbac.authorization.k8s.io/v1\n",
    "kind: ClusterRole\n",
    "kind: Role\n",
    "kind: RoleBinding\n",
    "kind: ClusterRoleBinding\n",
    "kind: List\n",
    "items:\n- kind: ClusterRole\n  metadata: {name: i}\n",
    "metadata:\n  name: a\n",
    "metadata: {name: b, namespace: ns}\n",
    "  labels: {rbac.authorization.k8s.io/aggregate-to-edit: \"true\"}\n",
    "aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {x: y}\n",
    "rules:\n- apiGroups: ['']\n  resources: [pods, pods/exec]\n  verbs: ['*']\n",
    "rules: null\n",
    "roleRef: {kind: ClusterRole, name: a}\n",
    "roleRef: {kind: Role, name: b}\n",
    "subjects: [{kind: User, name: u}, {kind: ServiceAccount, name: s}]\n",
    "  name: {{ .Values.name }}\n",
    "$patch: delete\n",
    "&a [*a, *a]\n",
    "{\"kind\":\"ClusterRole\",\"metadata\":{\"name\":\"j\"},\"rules\":[]}\n",
    "[1, 2\n",
    ": : :\n",
    "\t\u{feff}\n",
    "# comment\n",
    "\n",
];

fn check(path: &str, bytes: &[u8]) {
    let r = read_file(path, bytes);
    let lines = String::from_utf8_lossy(bytes).lines().count().max(1);
    for o in &r.objects {
        assert!(o.line >= 1 && o.line <= lines, "{o:?} in {lines} lines");
        assert!(o.document >= 1);
    }
    let mut set = ManifestSet::new();
    set.set_file(path, r);
    set.set_file(
        "k/kustomization.yaml",
        read_file("k/kustomization.yaml", bytes),
    );
    // Built once: it parses the embedded bootstrap policy.
    static EVAL: std::sync::OnceLock<Evaluator> = std::sync::OnceLock::new();
    let _ = EVAL.get_or_init(Evaluator::default).scan(&set);
    let _ = set.skipped_files();
    set.remove_file(path);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check("any.yaml", &bytes);
        check("any.json", &bytes);
    }

    #[test]
    fn manifest_like_text(idx in proptest::collection::vec(0..PIECES.len(), 0..40)) {
        let text: String = idx.iter().map(|&i| PIECES[i]).collect();
        check("m.yaml", text.as_bytes());
    }
}
