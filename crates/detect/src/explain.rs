//! Turning grants into words and commands: why an alert matters, how to investigate it, how to
//! resolve it, and what the role would look like without pod write.

use crate::alert::Severity;
use rbac::podwrite::{POD_SUBRESOURCES, WRITE_VERBS};
use rbac::{pod_write_grants, Capability, PodWriteGrant, PodWriteOptions, PolicyRule};
use std::collections::BTreeSet;

/// Names that go into the commands.
pub struct Context<'a> {
    /// The role.
    pub role: &'a str,
    /// The acting user.
    pub actor: Option<&'a str>,
    /// The impersonated user, if any.
    pub impersonated: Option<&'a str>,
    /// The audit log to search, if known.
    pub log_hint: Option<&'a str>,
}

/// Quotes a value for a POSIX shell. Names in audit events come from API clients, so they are
/// never pasted into a command unquoted.
pub fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What an attacker can do with these grants, one sentence per kind of power.
pub fn why(grants: &[PodWriteGrant], sev: Severity) -> Vec<String> {
    let caps: BTreeSet<&Capability> = grants.iter().map(|g| &g.capability).collect();
    let mut out = Vec::new();
    if sev == Severity::Critical {
        out.push("The role has `*` verbs on `*` resources in the core group: its holders control every pod, secret and service account, which is cluster takeover.".to_string());
    }
    let has = |c: Capability| caps.contains(&c);
    if has(Capability::CreatePods) {
        out.push("Holders can create pods that run any image under any service account of the namespace (so they get its token), and mount host paths or run privileged where admission allows: a short path to node and cluster takeover.".into());
    }
    if has(Capability::ModifyPods) {
        out.push("Holders can change the image of running pods (it is mutable), running their own code with those pods' identities and secrets.".into());
    }
    if has(Capability::Exec) || has(Capability::Attach) {
        out.push("Holders can run commands in, or attach to, running containers and read the secrets and service-account tokens mounted there.".into());
    }
    if has(Capability::DebugContainers) {
        out.push("Holders can add ephemeral debug containers to running pods, sharing their namespaces and volumes: code execution inside those pods.".into());
    }
    if has(Capability::PortForward) || has(Capability::Proxy) {
        out.push("Holders can reach pod ports directly through the API server, around network policies and service authentication.".into());
    }
    if has(Capability::DeletePods) || has(Capability::DeleteAllPods) || has(Capability::Evict) {
        out.push("Holders can delete or evict pods: denial of service, or forcing workloads to reschedule onto a node they control.".into());
    }
    if has(Capability::ModifyStatus) {
        out.push("Holders can rewrite pod status (readiness, addresses), misleading controllers and services about where to send traffic.".into());
    }
    if has(Capability::BindToNodes) {
        out.push("Holders can bind pending pods to nodes of their choice, placing workloads on a node they control.".into());
    }
    if has(Capability::Resize) {
        out.push(
            "Holders can change pods' CPU and memory allocations, starving workloads or the node."
                .into(),
        );
    }
    for c in &caps {
        if let Capability::OtherSubresource(s) = c {
            out.push(format!("Holders can write the pods/{s} subresource."));
        }
    }
    let narrowed: BTreeSet<&str> = grants
        .iter()
        .flat_map(|g| g.resource_names.iter().map(String::as_str))
        .collect();
    if !narrowed.is_empty() && grants.iter().all(|g| g.narrowed()) {
        out.push(format!(
            "Every grant is limited to pods named {}; pods with those names in any namespace are affected, and a holder who can create such a pod gains the rest.",
            narrowed.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

/// A kubectl + jq pipeline over the bindings of `role`; `raw` prints strings for shell use.
fn jq_bindings(kind: &str, role: &str, action: &str, raw: bool) -> String {
    let all = if kind == "rolebindings" { " -A" } else { "" };
    format!(
        "kubectl get {kind}{all} -o json | jq {} --arg role {} '.items[] | select(.roleRef.kind == \"ClusterRole\" and .roleRef.name == $role) | {action}'",
        if raw { "-r" } else { "-c" },
        sh(role)
    )
}

/// Investigation steps, with this alert's names filled into runnable commands.
pub fn investigation(c: &Context) -> Vec<String> {
    let role = sh(c.role);
    let mut out = vec![
        format!("Review what the role grants now: kubectl get clusterrole {role} -o yaml"),
        format!(
            "List who is bound to it cluster-wide: {}",
            jq_bindings(
                "clusterrolebindings",
                c.role,
                "{binding: .metadata.name, subjects}",
                false
            )
        ),
        format!(
            "...and per namespace: {}",
            jq_bindings(
                "rolebindings",
                c.role,
                "{namespace: .metadata.namespace, binding: .metadata.name, subjects}",
                false
            )
        ),
    ];
    if let Some(a) = c.actor {
        out.push(format!(
            "See everything the actor can do: kubectl auth can-i --list --as {}",
            sh(a)
        ));
        if let Some(i) = c.impersonated {
            out.push(format!(
                "The actor impersonated {}: check who may impersonate: kubectl auth can-i impersonate users --as {} ; kubectl auth can-i --list --as {}",
                sh(i),
                sh(a),
                sh(i)
            ));
        }
        let log = c.log_hint.map(sh).unwrap_or_else(|| "AUDIT_LOG".into());
        out.push(format!(
            "Find the actor's other RBAC changes in the audit log: jq -c --arg u {} 'select(.user.username == $u and (.objectRef.resource // \"\" | test(\"^(cluster)?role(binding)?s$\")) and (.verb | IN(\"create\", \"update\", \"patch\", \"delete\")))' {log}",
            sh(a)
        ));
    }
    out.push(format!(
        "With kubeward, against the cluster (or a snapshot file instead of --live): who holds this role and what it grants: kubeward rbac pod-writers --live --format json | jq -c --arg role {role} 'select(.name == $role)'"
    ));
    out.push("With kubeward: every path to granting pod write (create or change cluster roles, escalate, bind, impersonate, create bindings), aggregation and system:masters included: kubeward rbac role-admins --live".to_string());
    out.push("Without kubeward: find who else can create or change cluster roles (and so could have made this change): kubectl get clusterroles -o json | jq -r '.items[] | select(any(.rules[]?; ((.apiGroups // []) | index(\"rbac.authorization.k8s.io\") or index(\"*\")) and ((.resources // []) | index(\"clusterroles\") or index(\"*\")) and ((.verbs // []) | index(\"create\") or index(\"update\") or index(\"patch\") or index(\"escalate\") or index(\"*\")))) | .metadata.name' — then list the bindings of each role found".to_string());
    // The alert's link to the code change: the commit that gave the role pod write, its
    // author, and every later change to the role or its bindings.
    out.push(format!(
        "If RBAC manifests live in Git, find the commit that gave the role pod write, who made it, and every later change to it or its bindings (run in the repository): kubeward git --role {role}"
    ));
    out
}

/// Resolution steps, with this alert's names filled into runnable commands.
pub fn resolution(c: &Context) -> Vec<String> {
    let role = sh(c.role);
    let mut out = vec![
        format!("If the change was not authorised, delete the role: kubectl delete clusterrole {role}"),
        format!(
            "...and the bindings that hand it out: {} | xargs -r kubectl delete clusterrolebinding",
            jq_bindings("clusterrolebindings", c.role, ".metadata.name", true)
        ),
        format!(
            "...including RoleBindings in namespaces: {} | while read -r ns name; do kubectl delete rolebinding -n \"$ns\" \"$name\"; done",
            jq_bindings("rolebindings", c.role, "\"\\(.metadata.namespace) \\(.metadata.name)\"", true)
        ),
        "If the role is needed, replace its rules with `least_privilege_rules` (the same rules with pod write taken out) and grant pod access in a namespaced Role only where required.".to_string(),
    ];
    if let Some(a) = c.actor {
        out.push(format!(
            "Review and reduce the actor's own rights to change cluster roles (escalate, bind, create/update/patch clusterroles); rotate its credentials if it should not have made this change: kubectl auth can-i --list --as {}",
            sh(a)
        ));
    }
    out
}

fn is_pod_resource(r: &str) -> bool {
    r == "*"
        || r == "pods"
        || r.strip_prefix("pods/").is_some_and(|s| !s.is_empty())
        || r.strip_prefix("*/")
            .is_some_and(|s| POD_SUBRESOURCES.contains(&s))
}

/// The role's rules with pod write taken out.
///
/// A rule that grants pod write is split: its non-pod resources keep their verbs; its pod
/// resources keep only verbs that write nothing (`get` stays only where it cannot open an exec,
/// attach or port-forward stream). A `*` resource cannot be narrowed in RBAC, so it is dropped
/// and has to be replaced by the resources the role really needs.
pub fn least_privilege(rules: &[PolicyRule], opts: PodWriteOptions) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if pod_write_grants(r, i, opts).is_empty() {
            out.push(serde_json::to_value(r).unwrap_or_default());
            continue;
        }
        let (pod, other): (Vec<String>, Vec<String>) = r
            .resources
            .iter()
            .cloned()
            .partition(|x| is_pod_resource(x));
        if !other.is_empty() {
            out.push(
                serde_json::to_value(PolicyRule {
                    resources: other,
                    ..r.clone()
                })
                .unwrap_or_default(),
            );
        }
        let expanded: Vec<String> = if r.verbs.iter().any(|v| v == "*") {
            vec!["get".into(), "list".into(), "watch".into()]
        } else {
            r.verbs.clone()
        };
        let read_verbs: Vec<String> = expanded
            .into_iter()
            .filter(|v| !WRITE_VERBS.contains(&v.as_str()))
            .collect();
        let pod: Vec<String> = pod.into_iter().filter(|x| x != "*").collect();
        if pod.is_empty() || read_verbs.is_empty() {
            continue;
        }
        let kept = PolicyRule {
            verbs: read_verbs,
            resources: pod,
            ..r.clone()
        };
        // `get` on an exec-like entry still opens streams on old clusters: drop those entries.
        let kept = if pod_write_grants(&kept, i, opts).is_empty() {
            kept
        } else {
            PolicyRule {
                resources: kept
                    .resources
                    .iter()
                    .filter(|x| {
                        let one = PolicyRule {
                            resources: vec![(*x).clone()],
                            ..kept.clone()
                        };
                        pod_write_grants(&one, i, opts).is_empty()
                    })
                    .cloned()
                    .collect(),
                ..kept
            }
        };
        if !kept.resources.is_empty() {
            out.push(serde_json::to_value(kept).unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(j: &str) -> PolicyRule {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn investigation_names_the_role_quoted_everywhere() {
        let c = Context {
            role: "it's-a-role",
            actor: Some("alice"),
            impersonated: None,
            log_hint: Some("audit.log"),
        };
        let steps = investigation(&c);
        let quoted = sh("it's-a-role");
        assert!(steps
            .iter()
            .any(|s| s.contains(&format!("kubectl get clusterrole {quoted} -o yaml"))));
        assert!(steps.iter().any(|s| s.contains(&format!(
            "kubeward rbac pod-writers --live --format json | jq -c --arg role {quoted}"
        ))));
        assert!(steps
            .iter()
            .any(|s| s.ends_with("kubeward rbac role-admins --live")));
        assert!(steps
            .iter()
            .any(|s| s.ends_with(&format!("kubeward git --role {quoted}"))));
        // The raw name never appears unquoted in a command.
        assert!(
            steps.iter().all(|s| !s.contains(" it's-a-role")),
            "{steps:?}"
        );
        let fixes = resolution(&c);
        assert!(fixes[0].ends_with(&format!("kubectl delete clusterrole {quoted}")));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh("a'b; rm -rf /"), r"'a'\''b; rm -rf /'");
    }

    #[test]
    fn least_privilege_splits_rules() {
        let opts = PodWriteOptions::default();
        let rules = vec![
            r(
                r#"{"apiGroups":[""],"resources":["pods","services","pods/exec","pods/log"],"verbs":["get","list","create"]}"#,
            ),
            r(r#"{"apiGroups":["apps"],"resources":["deployments"],"verbs":["*"]}"#),
            r(r#"{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}"#),
        ];
        let lp = least_privilege(&rules, opts);
        let want = serde_json::json!([
            {"verbs":["get","list","create"],"apiGroups":[""],"resources":["services"]},
            {"verbs":["get","list"],"apiGroups":[""],"resources":["pods","pods/log"]},
            {"verbs":["*"],"apiGroups":["apps"],"resources":["deployments"]}
        ]);
        assert_eq!(serde_json::Value::Array(lp.clone()), want);
        let back: Vec<PolicyRule> = lp
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert!(rbac::role_pod_write(&back, opts).is_empty());
    }
}
