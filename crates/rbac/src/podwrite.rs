//! The one definition of "grants write on pods".
//!
//! A rule grants pod write when the authorizer ([`rule_allows`]) would let its holder make at
//! least one *pod write request*: a write verb (`create`, `update`, `patch`, `delete`,
//! `deletecollection`) on core-group `pods`, a write verb that a pod subresource serves
//! ([`SUBRESOURCE_VERBS`]: `create` on `pods/exec`, `update`/`patch` on `pods/status`, ...), or
//! `get` on `pods/exec`, `pods/attach` or `pods/portforward` (a WebSocket upgrade is a GET,
//! and before Kubernetes 1.35 the API server checked only `get` for it: kubernetes#134577).
//!
//! Instead of pattern-matching the rule's strings, each such request is put to the matcher.
//! That is what makes the answer exact: `pods/*` matches no real subresource, `*/scale`
//! matches nothing pods have, `metrics.k8s.io` pods are not core pods, and a name-restricted
//! rule cannot authorize the nameless `create` and `deletecollection`.

use crate::rule::{rule_allows, PolicyRule, Request};
use serde::Serialize;
use std::fmt;

/// The subresources that pods really have (`*/<sub>` counts for these only).
pub const POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "portforward",
    "proxy",
    "ephemeralcontainers",
    "status",
    "eviction",
    "binding",
    "resize",
];

/// The write verbs. `*` in a rule matches all of them (and `get`).
pub const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// Subresources reachable with `get` over a WebSocket upgrade.
const GET_UPGRADE_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward"];

/// The write verbs the API server serves on each pod subresource: a rule allowing, say,
/// `delete` on `pods/exec` lets its holder do nothing, so it is not a grant. Subresources not
/// listed here (named literally in a rule, e.g. `pods/finalizers`) take every write verb.
pub const SUBRESOURCE_VERBS: &[(&str, &[&str])] = &[
    ("exec", &["create"]),
    ("attach", &["create"]),
    ("portforward", &["create"]),
    ("proxy", &["create", "update", "patch", "delete"]),
    ("ephemeralcontainers", &["update", "patch"]),
    ("status", &["update", "patch"]),
    ("eviction", &["create"]),
    ("binding", &["create"]),
    ("resize", &["update", "patch"]),
];

/// The write verbs that mean something on `pods` (`""`) or on a subresource.
pub fn write_verbs_for(subresource: &str) -> &'static [&'static str] {
    if subresource.is_empty() {
        return WRITE_VERBS;
    }
    SUBRESOURCE_VERBS
        .iter()
        .find(|(s, _)| *s == subresource)
        .map_or(WRITE_VERBS, |(_, v)| v)
}

/// A Kubernetes `major.minor` version, for the version-dependent parts of the definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    /// Major version (1).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl KubeVersion {
    /// Parses `1.35`, `v1.35`, `1.35.2` or `v1.35.0-eks-1234`.
    pub fn parse(s: &str) -> Option<KubeVersion> {
        let s = s.trim().trim_start_matches(['v', 'V']);
        let mut it = s.split(['.', '-', '+']);
        let major = it.next()?.parse().ok()?;
        let minor_raw = it.next()?;
        // GKE and EKS sometimes write "1.29+" as the minor version.
        let minor = minor_raw.trim_end_matches('+').parse().ok()?;
        Some(KubeVersion { major, minor })
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Options of the pod-write definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodWriteOptions {
    /// Count `get` on `pods/exec|attach|portforward` as exec/attach/port-forward. True for
    /// clusters before 1.35 and when the version is unknown.
    pub exec_via_get: bool,
}

impl Default for PodWriteOptions {
    fn default() -> Self {
        PodWriteOptions { exec_via_get: true }
    }
}

impl PodWriteOptions {
    /// The options for a cluster of this version (`None`: unknown, assume the older behaviour).
    pub fn for_version(v: Option<KubeVersion>) -> Self {
        let exec_via_get = match v {
            Some(v) => {
                v < KubeVersion {
                    major: 1,
                    minor: 35,
                }
            }
            None => true,
        };
        PodWriteOptions { exec_via_get }
    }
}

/// What the holder of a grant can do to pods, in the words an investigator uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `create pods`.
    CreatePods,
    /// `update`/`patch pods`.
    ModifyPods,
    /// `delete pods`.
    DeletePods,
    /// `deletecollection pods`.
    DeleteAllPods,
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
    /// `pods/ephemeralcontainers`.
    DebugContainers,
    /// `pods/status`.
    ModifyStatus,
    /// `pods/eviction`.
    Evict,
    /// `pods/binding`.
    BindToNodes,
    /// `pods/proxy`.
    Proxy,
    /// `pods/resize`.
    Resize,
    /// A write on a subresource named literally in the rule (e.g. `pods/finalizers`).
    OtherSubresource(String),
}

impl Capability {
    fn of(verb: &str, subresource: &str) -> Capability {
        match subresource {
            "" => match verb {
                "create" => Capability::CreatePods,
                "update" | "patch" => Capability::ModifyPods,
                "delete" => Capability::DeletePods,
                _ => Capability::DeleteAllPods,
            },
            "exec" => Capability::Exec,
            "attach" => Capability::Attach,
            "portforward" => Capability::PortForward,
            "ephemeralcontainers" => Capability::DebugContainers,
            "status" => Capability::ModifyStatus,
            "eviction" => Capability::Evict,
            "binding" => Capability::BindToNodes,
            "proxy" => Capability::Proxy,
            "resize" => Capability::Resize,
            other => Capability::OtherSubresource(other.to_string()),
        }
    }

    /// The capability in plain words ("exec into pods").
    pub fn words(&self) -> String {
        match self {
            Capability::CreatePods => "create pods".into(),
            Capability::ModifyPods => "modify pods (update/patch)".into(),
            Capability::DeletePods => "delete pods".into(),
            Capability::DeleteAllPods => "delete all pods (deletecollection)".into(),
            Capability::Exec => "exec into pods".into(),
            Capability::Attach => "attach to pods".into(),
            Capability::PortForward => "port-forward to pods".into(),
            Capability::DebugContainers => "add ephemeral (debug) containers to pods".into(),
            Capability::ModifyStatus => "modify pod status".into(),
            Capability::Evict => "evict pods".into(),
            Capability::BindToNodes => "bind pods to nodes".into(),
            Capability::Proxy => "proxy to pods".into(),
            Capability::Resize => "resize pods (change container resources)".into(),
            Capability::OtherSubresource(s) => format!("write pods/{s}"),
        }
    }

    /// Whether this capability runs code in, or chooses the code of, a pod (create, modify,
    /// exec, attach, debug containers, port-forward, proxy): the grants that lead to takeover.
    pub fn runs_code(&self) -> bool {
        matches!(
            self,
            Capability::CreatePods
                | Capability::ModifyPods
                | Capability::Exec
                | Capability::Attach
                | Capability::DebugContainers
                | Capability::PortForward
                | Capability::Proxy
        )
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words())
    }
}

/// One pod write request that a rule authorizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodWriteGrant {
    /// Index of the rule in the role that grants it.
    pub rule_index: usize,
    /// The request verb (`get` only for the WebSocket exec/attach/port-forward case).
    pub verb: &'static str,
    /// `pods` or `pods/<subresource>`.
    pub resource: String,
    /// Empty: any pod. Otherwise only the pods with these names.
    pub resource_names: Vec<String>,
    /// What it lets the holder do.
    pub capability: Capability,
}

impl PodWriteGrant {
    /// Whether the grant is limited to named pods.
    pub fn narrowed(&self) -> bool {
        !self.resource_names.is_empty()
    }
}

/// Every pod write request that `rule` authorizes (empty: the rule grants no pod write).
pub fn pod_write_grants(
    rule: &PolicyRule,
    rule_index: usize,
    opts: PodWriteOptions,
) -> Vec<PodWriteGrant> {
    let mut out = Vec::new();
    // Cheap exits first: most rules of most roles are about other groups or read-only verbs.
    if !rule.api_groups.iter().any(|g| g.is_empty() || g == "*") || rule.verbs.is_empty() {
        return out;
    }
    // Subresources the rule names literally (`pods/finalizers`) are write targets too, besides
    // the real ones; `pods/*` names the literal subresource `*`, which no request ever has.
    let literal_subs = rule
        .resources
        .iter()
        .filter_map(|r| r.strip_prefix("pods/"))
        .filter(|s| !s.is_empty() && *s != "*" && !POD_SUBRESOURCES.contains(s));
    let subs = std::iter::once("")
        .chain(POD_SUBRESOURCES.iter().copied())
        .chain(literal_subs);
    for sub in subs {
        for &verb in write_verbs_for(sub).iter().chain(std::iter::once(&"get")) {
            if verb == "get" && !(opts.exec_via_get && GET_UPGRADE_SUBRESOURCES.contains(&sub)) {
                continue;
            }
            // Top-level create and deletecollection carry no object name.
            let nameless = sub.is_empty() && (verb == "create" || verb == "deletecollection");
            let base = |name| Request::Resource {
                verb,
                api_group: "",
                resource: "pods",
                subresource: sub,
                name,
            };
            let resource_names = if rule.resource_names.is_empty() {
                // Any name will do for a named request; a nameless one is asked without one.
                if !rule_allows(rule, &base(if nameless { "" } else { "some-pod" })) {
                    continue;
                }
                Vec::new()
            } else {
                // A nameless request matches only a (strange, but legal) empty name in the list.
                let names: Vec<String> = rule
                    .resource_names
                    .iter()
                    .filter(|n| (!nameless || n.is_empty()) && rule_allows(rule, &base(n.as_str())))
                    .cloned()
                    .collect();
                if names.is_empty() {
                    continue;
                }
                names
            };
            out.push(PodWriteGrant {
                rule_index,
                verb,
                resource: if sub.is_empty() {
                    "pods".into()
                } else {
                    format!("pods/{sub}")
                },
                resource_names,
                capability: Capability::of(verb, sub),
            });
        }
    }
    out
}

/// Every pod write grant of a role's rules, in rule order.
pub fn role_pod_write(rules: &[PolicyRule], opts: PodWriteOptions) -> Vec<PodWriteGrant> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(i, r)| pod_write_grants(r, i, opts))
        .collect()
}

/// Whether a rule is `*` verbs on `*` resources in a group that includes core, with no names:
/// full control of pods and of every other core resource.
pub fn is_wildcard_rule(rule: &PolicyRule) -> bool {
    rule.verbs.iter().any(|v| v == "*")
        && rule.resources.iter().any(|r| r == "*")
        && rule.api_groups.iter().any(|g| g.is_empty() || g == "*")
        && rule.resource_names.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule::new(groups, resources, verbs).with_names(names)
    }

    fn caps(
        r: &PolicyRule,
        opts: PodWriteOptions,
    ) -> Vec<(String, &'static str, Capability, bool)> {
        pod_write_grants(r, 0, opts)
            .into_iter()
            .map(|g| {
                (
                    g.resource.clone(),
                    g.verb,
                    g.capability.clone(),
                    g.narrowed(),
                )
            })
            .collect()
    }

    const OLD: PodWriteOptions = PodWriteOptions { exec_via_get: true };
    const NEW: PodWriteOptions = PodWriteOptions {
        exec_via_get: false,
    };

    #[test]
    fn write_verbs_on_pods() {
        let g = caps(
            &rule(&[""], &["pods"], &["get", "list", "create", "delete"], &[]),
            OLD,
        );
        assert_eq!(
            g,
            vec![
                ("pods".into(), "create", Capability::CreatePods, false),
                ("pods".into(), "delete", Capability::DeletePods, false),
            ]
        );
        let g = caps(
            &rule(
                &[""],
                &["pods"],
                &["update", "patch", "deletecollection"],
                &[],
            ),
            OLD,
        );
        let c: Vec<_> = g.iter().map(|x| x.2.clone()).collect();
        assert_eq!(
            c,
            vec![
                Capability::ModifyPods,
                Capability::ModifyPods,
                Capability::DeleteAllPods
            ]
        );
    }

    #[test]
    fn read_only_and_other_groups_grant_nothing() {
        for r in [
            rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"], &[]),
            rule(&["metrics.k8s.io"], &["pods"], &["*"], &[]),
            rule(&["apps"], &["*"], &["*"], &[]),
            rule(&[], &["pods"], &["*"], &[]),
            rule(&[""], &["pods"], &[], &[]),
            rule(&[""], &["Pods"], &["create"], &[]),
            rule(&[""], &["pods"], &["CREATE"], &[]),
            rule(&[""], &["pods/*"], &["create", "*"], &[]),
            rule(&[""], &["*/scale"], &["update", "patch"], &[]),
            rule(&[""], &["configmaps"], &["*"], &[]),
        ] {
            assert!(caps(&r, OLD).is_empty(), "{r:?}");
        }
        let mut urls = rule(&[], &[], &["*"], &[]);
        urls.non_resource_urls = vec!["*".into()];
        assert!(caps(&urls, OLD).is_empty());
    }

    #[test]
    fn subresources_and_star_sub() {
        let g = caps(&rule(&[""], &["pods/exec"], &["create"], &[]), OLD);
        assert_eq!(
            g,
            vec![("pods/exec".into(), "create", Capability::Exec, false)]
        );
        let g = caps(&rule(&[""], &["*/exec"], &["create"], &[]), OLD);
        assert_eq!(
            g,
            vec![("pods/exec".into(), "create", Capability::Exec, false)]
        );
        let g = caps(
            &rule(
                &[""],
                &["pods/ephemeralcontainers"],
                &["patch", "update"],
                &[],
            ),
            OLD,
        );
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|x| x.2 == Capability::DebugContainers));
        let g = caps(&rule(&[""], &["pods/eviction"], &["create"], &[]), OLD);
        assert_eq!(g[0].2, Capability::Evict);
        // Verbs a subresource does not serve grant nothing.
        assert!(caps(
            &rule(
                &[""],
                &["pods/exec", "pods/eviction"],
                &["delete", "update"],
                &[]
            ),
            OLD
        )
        .is_empty());
        let g = caps(&rule(&[""], &["pods/proxy"], &["*"], &[]), NEW);
        assert_eq!(
            g.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec!["create", "update", "patch", "delete"]
        );
        let g = caps(&rule(&[""], &["pods/finalizers"], &["update"], &[]), OLD);
        assert_eq!(
            g,
            vec![(
                "pods/finalizers".into(),
                "update",
                Capability::OtherSubresource("finalizers".into()),
                false
            )]
        );
        // `*/finalizers` is not a subresource pods serve.
        assert!(caps(&rule(&[""], &["*/finalizers"], &["update"], &[]), OLD).is_empty());
    }

    #[test]
    fn get_on_exec_depends_on_version() {
        let r = rule(&[""], &["pods/exec"], &["get"], &[]);
        assert_eq!(
            caps(&r, OLD),
            vec![("pods/exec".into(), "get", Capability::Exec, false)]
        );
        assert!(caps(&r, NEW).is_empty());
        // "read everything" in core: exec, attach and port-forward before 1.35.
        let r = rule(&[""], &["*"], &["get", "list"], &[]);
        let c: Vec<_> = caps(&r, OLD).into_iter().map(|x| x.2).collect();
        assert_eq!(
            c,
            vec![
                Capability::Exec,
                Capability::Attach,
                Capability::PortForward
            ]
        );
        assert!(caps(&r, NEW).is_empty());
        // get on pods/log is never a write.
        assert!(caps(&rule(&[""], &["pods/log"], &["get"], &[]), OLD).is_empty());
    }

    #[test]
    fn resource_names_narrow() {
        let r = rule(
            &[""],
            &["pods"],
            &["create", "update", "deletecollection"],
            &["debug-shell"],
        );
        let g = caps(&r, OLD);
        assert_eq!(
            g,
            vec![("pods".into(), "update", Capability::ModifyPods, true)]
        );
        let r = rule(&[""], &["pods/exec"], &["create"], &["web-0"]);
        let g = pod_write_grants(&r, 3, OLD);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].resource_names, vec!["web-0".to_string()]);
        assert_eq!(g[0].rule_index, 3);
    }

    #[test]
    fn wildcard_everything() {
        let r = rule(&["*"], &["*"], &["*"], &[]);
        let g = pod_write_grants(&r, 0, OLD);
        // 5 verbs on pods, the served write verbs of the 9 subresources, plus get on 3.
        let served: usize = SUBRESOURCE_VERBS.iter().map(|(_, v)| v.len()).sum();
        assert_eq!(served, 15);
        assert_eq!(g.len(), 5 + served + 3);
        assert!(is_wildcard_rule(&r));
        assert!(!is_wildcard_rule(&rule(&["apps"], &["*"], &["*"], &[])));
    }

    #[test]
    fn versions() {
        assert_eq!(
            KubeVersion::parse("1.35"),
            Some(KubeVersion {
                major: 1,
                minor: 35
            })
        );
        assert_eq!(
            KubeVersion::parse("v1.29.4-eks-1"),
            Some(KubeVersion {
                major: 1,
                minor: 29
            })
        );
        assert_eq!(
            KubeVersion::parse("1.29+"),
            Some(KubeVersion {
                major: 1,
                minor: 29
            })
        );
        assert_eq!(KubeVersion::parse("banana"), None);
        assert!(PodWriteOptions::for_version(KubeVersion::parse("1.34")).exec_via_get);
        assert!(!PodWriteOptions::for_version(KubeVersion::parse("1.35")).exec_via_get);
        assert!(!PodWriteOptions::for_version(KubeVersion::parse("2.0")).exec_via_get);
        assert!(PodWriteOptions::for_version(None).exec_via_get);
    }
}
