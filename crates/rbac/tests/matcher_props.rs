//! Property tests of the RBAC matcher and of the pod-write definition.
//!
//! - `rule_allows` agrees with a naive reference written straight from upstream
//!   `pkg/apis/rbac/v1/evaluation_helpers.go` (and `RuleAllows` in
//!   `plugin/pkg/auth/authorizer/rbac/rbac.go`), on rules and requests drawn from small
//!   alphabets full of edge cases so that near-misses are frequent.
//! - `pod_write_grants` is non-empty exactly when a brute-force search over pod write requests
//!   finds one the matcher allows (a write verb the API server serves on `pods` or on the
//!   subresource, or `get` on exec/attach/portforward before 1.35), every grant it returns is
//!   allowed, and `role_pod_write` does not depend on rule order.

use proptest::prelude::*;
use rbac::{
    pod_write_grants, role_pod_write, rule_allows, Capability, PodWriteOptions, PolicyRule,
    Request, POD_SUBRESOURCES,
};
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------------------------
// Alphabets
// ---------------------------------------------------------------------------------------------

const VERBS: &[&str] = &[
    "",
    "*",
    "create",
    "CREATE",
    "get",
    "list",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "escalate",
];
const GROUPS: &[&str] = &[
    "",
    "*",
    "apps",
    "metrics.k8s.io",
    "rbac.authorization.k8s.io",
    "Apps",
];
const RULE_RESOURCES: &[&str] = &[
    "",
    "*",
    "pods",
    "pods/*",
    "pods/exec",
    "pods/attach",
    "pods/status",
    "pods/finalizers",
    "pods/",
    "pods/exec/x",
    "*/exec",
    "*/scale",
    "*/status",
    "*/*",
    "*/",
    "Pods",
    "exec",
    "deployments",
    "deployments/scale",
];
const REQ_RESOURCES: &[&str] = &["", "*", "pods", "Pods", "exec", "deployments", "pods/exec"];
const REQ_SUBRESOURCES: &[&str] = &[
    "",
    "*",
    "exec",
    "attach",
    "scale",
    "status",
    "finalizers",
    "exec/x",
    "/",
];
const NAMES: &[&str] = &["a", "b", ""];
const RULE_URLS: &[&str] = &[
    "*", "/healthz", "/api/*", "/api**", "/api", "/", "", "**", "*x", "/metrics",
];
const REQ_PATHS: &[&str] = &[
    "/healthz",
    "/healthz/x",
    "/api",
    "/api/",
    "/api/v1",
    "/apix",
    "/",
    "",
    "*x",
    "x",
];

fn pick(xs: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(xs).prop_map(str::to_string)
}

fn list(xs: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(pick(xs), 0..=max)
}

fn arb_rule() -> impl Strategy<Value = PolicyRule> {
    (
        list(VERBS, 4),
        list(GROUPS, 3),
        list(RULE_RESOURCES, 4),
        // Names: usually none, sometimes a short list.
        prop_oneof![2 => Just(Vec::new()), 1 => list(NAMES, 3)],
        prop_oneof![3 => Just(Vec::new()), 1 => list(RULE_URLS, 3)],
    )
        .prop_map(
            |(verbs, api_groups, resources, resource_names, non_resource_urls)| PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls,
            },
        )
}

/// An owned request (the matcher's `Request` borrows).
#[derive(Debug, Clone)]
enum Req {
    Resource {
        verb: String,
        group: String,
        resource: String,
        sub: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Req {
    fn as_request(&self) -> Request<'_> {
        match self {
            Req::Resource {
                verb,
                group,
                resource,
                sub,
                name,
            } => Request::Resource {
                verb,
                api_group: group,
                resource,
                subresource: sub,
                name,
            },
            Req::NonResource { verb, path } => Request::NonResource { verb, path },
        }
    }
}

fn arb_req() -> impl Strategy<Value = Req> {
    prop_oneof![
        4 => (pick(VERBS), pick(GROUPS), pick(REQ_RESOURCES), pick(REQ_SUBRESOURCES), pick(NAMES)).prop_map(
            |(verb, group, resource, sub, name)| Req::Resource {
                verb,
                group,
                resource,
                sub,
                name,
            }
        ),
        1 => (pick(VERBS), pick(REQ_PATHS)).prop_map(|(verb, path)| Req::NonResource { verb, path }),
    ]
}

fn arb_opts() -> impl Strategy<Value = PodWriteOptions> {
    any::<bool>().prop_map(|exec_via_get| PodWriteOptions { exec_via_get })
}

// ---------------------------------------------------------------------------------------------
// The naive reference, written from upstream Go without looking at the port
// ---------------------------------------------------------------------------------------------

/// `RuleAllows` as upstream writes it.
fn reference_allows(rule: &PolicyRule, req: &Req) -> bool {
    let has =
        |list: &[String], want: &str| list.iter().any(|x| x.as_str() == "*" || x.as_str() == want);
    match req {
        Req::Resource {
            verb,
            group,
            resource,
            sub,
            name,
        } => {
            // combinedResource := resource; if subresource != "" { combined += "/" + subresource }
            let combined = if sub.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{sub}")
            };
            let resource_ok = rule.resources.iter().any(|r| {
                if r == "*" || *r == combined {
                    return true;
                }
                if sub.is_empty() {
                    return false;
                }
                // "*/<sub>": split at the first '/', the head must be exactly "*" and the tail
                // exactly the requested subresource.
                match r.split_once('/') {
                    Some(("*", tail)) => tail == sub,
                    _ => false,
                }
            });
            let name_ok =
                rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name);
            has(&rule.verbs, verb) && has(&rule.api_groups, group) && resource_ok && name_ok
        }
        Req::NonResource { verb, path } => {
            let url_ok = rule.non_resource_urls.iter().any(|u| {
                if u == "*" || u == path {
                    return true;
                }
                // strings.HasSuffix(ruleURL, "*") && strings.HasPrefix(path, strings.TrimRight(ruleURL, "*"))
                let prefix: String = {
                    let mut s = u.clone();
                    while s.ends_with('*') {
                        s.pop();
                    }
                    s
                };
                prefix.len() < u.len()
                    && path.len() >= prefix.len()
                    && path.as_bytes()[..prefix.len()] == *prefix.as_bytes()
            });
            has(&rule.verbs, verb) && url_ok
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The brute-force pod-write reference (built on the crate's own matcher)
// ---------------------------------------------------------------------------------------------

const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const GET_STREAMS: &[&str] = &["exec", "attach", "portforward"];

/// The subresources worth asking about: none, the real ones, and any `pods/<x>` the rule names
/// (except `pods/*`, which names the literal subresource `*`).
fn candidate_subs(rule: &PolicyRule) -> Vec<String> {
    let mut subs: Vec<String> = vec![String::new()];
    subs.extend(POD_SUBRESOURCES.iter().map(|s| s.to_string()));
    for r in &rule.resources {
        let mut parts = r.splitn(2, '/');
        if let (Some("pods"), Some(tail)) = (parts.next(), parts.next()) {
            if tail != "*" && !subs.iter().any(|s| s == tail) {
                subs.push(tail.to_string());
            }
        }
    }
    subs
}

/// The write verbs the API server serves on each pod subresource (from the pod REST storage:
/// `connect` subresources take POST = `create`, proxy every method, status-like ones PUT and
/// PATCH). A subresource not listed (named literally in a rule) is asked with every write verb.
const SERVED: &[(&str, &[&str])] = &[
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

fn candidate_verbs(sub: &str, opts: PodWriteOptions) -> Vec<&'static str> {
    let mut v = match SERVED.iter().find(|(s, _)| *s == sub) {
        Some((_, verbs)) => verbs.to_vec(),
        None => WRITE.to_vec(),
    };
    if opts.exec_via_get && GET_STREAMS.contains(&sub) {
        v.push("get");
    }
    v
}

fn is_nameless(verb: &str, sub: &str) -> bool {
    sub.is_empty() && (verb == "create" || verb == "deletecollection")
}

fn pod_req<'a>(verb: &'a str, sub: &'a str, name: &'a str) -> Request<'a> {
    Request::Resource {
        verb,
        api_group: "",
        resource: "pods",
        subresource: sub,
        name,
    }
}

/// The names to try: `""` for nameless requests, otherwise each listed name and a fresh one.
fn candidate_names(rule: &PolicyRule, verb: &str, sub: &str) -> Vec<String> {
    if is_nameless(verb, sub) {
        vec![String::new()]
    } else {
        let mut n = rule.resource_names.clone();
        n.push("zz-some-other-pod".into());
        n
    }
}

/// Whether some pod write request is allowed by the rule.
fn brute_force_grants(rule: &PolicyRule, opts: PodWriteOptions) -> bool {
    candidate_subs(rule).iter().any(|sub| {
        candidate_verbs(sub, opts).into_iter().any(|verb| {
            candidate_names(rule, verb, sub)
                .iter()
                .any(|name| rule_allows(rule, &pod_req(verb, sub, name)))
        })
    })
}

/// The exact grant set the definition should produce: `(verb, resource, names)`.
fn brute_force_set(
    rule: &PolicyRule,
    opts: PodWriteOptions,
) -> BTreeSet<(String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for sub in candidate_subs(rule) {
        for verb in candidate_verbs(&sub, opts) {
            let resource = if sub.is_empty() {
                "pods".to_string()
            } else {
                format!("pods/{sub}")
            };
            if rule.resource_names.is_empty() {
                let name = if is_nameless(verb, &sub) {
                    ""
                } else {
                    "zz-some-other-pod"
                };
                if rule_allows(rule, &pod_req(verb, &sub, name)) {
                    out.insert((verb.to_string(), resource, Vec::new()));
                }
            } else {
                let names: Vec<String> = rule
                    .resource_names
                    .iter()
                    .filter(|n| {
                        (!is_nameless(verb, &sub) || n.is_empty())
                            && rule_allows(rule, &pod_req(verb, &sub, n))
                    })
                    .cloned()
                    .collect();
                if !names.is_empty() {
                    out.insert((verb.to_string(), resource, names));
                }
            }
        }
    }
    out
}

type GrantKey = (Capability, String, String, Vec<String>);

fn grant_set(rules: &[PolicyRule], opts: PodWriteOptions) -> BTreeSet<GrantKey> {
    role_pod_write(rules, opts)
        .into_iter()
        .map(|g| {
            (
                g.capability,
                g.verb.to_string(),
                g.resource,
                g.resource_names,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// (a) The port agrees with upstream semantics on every request.
    #[test]
    fn rule_allows_matches_reference(rule in arb_rule(), req in arb_req()) {
        prop_assert_eq!(rule_allows(&rule, &req.as_request()), reference_allows(&rule, &req), "rule {:?} req {:?}", rule, req);
    }

    /// (a') Matching on the combined string and on the parts agree.
    #[test]
    fn combined_and_parts_matchers_agree(rule in arb_rule(), req in arb_req()) {
        if let Req::Resource { resource, sub, .. } = &req {
            let combined = if sub.is_empty() { resource.clone() } else { format!("{resource}/{sub}") };
            prop_assert_eq!(
                rbac::rule::resource_matches(&rule, &combined, sub),
                rbac::rule::resource_parts_match(&rule, resource, sub),
                "rule {:?} req {:?}", rule, req
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// (b) Non-empty exactly when brute force finds an allowed pod write request, and the
    /// grants are exactly the brute-force set.
    #[test]
    fn pod_write_matches_brute_force(rule in arb_rule(), opts in arb_opts()) {
        let grants = pod_write_grants(&rule, 0, opts);
        prop_assert_eq!(!grants.is_empty(), brute_force_grants(&rule, opts), "rule {:?} opts {:?} grants {:?}", rule, opts, grants);
        let got: BTreeSet<(String, String, Vec<String>)> =
            grants.iter().map(|g| (g.verb.to_string(), g.resource.clone(), g.resource_names.clone())).collect();
        prop_assert_eq!(got, brute_force_set(&rule, opts), "rule {:?} opts {:?}", rule, opts);
    }

    /// (c) Every grant is a request the matcher allows, for every name it lists.
    #[test]
    fn every_grant_is_allowed(rule in arb_rule(), opts in arb_opts(), index in 0usize..50) {
        for g in pod_write_grants(&rule, index, opts) {
            prop_assert_eq!(g.rule_index, index);
            let sub = match g.resource.as_str() {
                "pods" => "",
                r => r.strip_prefix("pods/").expect("resource is pods or pods/<sub>"),
            };
            prop_assert!(!sub.is_empty() || g.resource == "pods");
            prop_assert!(candidate_verbs(sub, opts).contains(&g.verb), "{:?}", g);
            prop_assert!(g.verb != "get" || (opts.exec_via_get && GET_STREAMS.contains(&sub)), "{:?}", g);
            if g.resource_names.is_empty() {
                let name = if is_nameless(g.verb, sub) { "" } else { "any-pod" };
                prop_assert!(rule_allows(&rule, &pod_req(g.verb, sub, name)), "rule {:?} grant {:?}", rule, g);
                // An unrestricted grant is one the rule does not narrow.
                prop_assert!(rule.resource_names.is_empty());
            } else {
                for n in &g.resource_names {
                    prop_assert!(rule_allows(&rule, &pod_req(g.verb, sub, n)), "rule {:?} grant {:?} name {:?}", rule, g, n);
                    prop_assert!(!is_nameless(g.verb, sub) || n.is_empty());
                }
            }
            // The capability follows from the verb and subresource.
            let want_cap = match (sub, g.verb) {
                ("", "create") => Capability::CreatePods,
                ("", "update" | "patch") => Capability::ModifyPods,
                ("", "delete") => Capability::DeletePods,
                ("", _) => Capability::DeleteAllPods,
                ("exec", _) => Capability::Exec,
                ("attach", _) => Capability::Attach,
                ("portforward", _) => Capability::PortForward,
                ("ephemeralcontainers", _) => Capability::DebugContainers,
                ("status", _) => Capability::ModifyStatus,
                ("eviction", _) => Capability::Evict,
                ("binding", _) => Capability::BindToNodes,
                ("proxy", _) => Capability::Proxy,
                ("resize", _) => Capability::Resize,
                (other, _) => Capability::OtherSubresource(other.to_string()),
            };
            prop_assert_eq!(&g.capability, &want_cap);
        }
    }

    /// The 1.35 definition is the older one minus the `get` stream grants.
    #[test]
    fn new_clusters_only_drop_get(rule in arb_rule()) {
        let old = grant_set(std::slice::from_ref(&rule), PodWriteOptions { exec_via_get: true });
        let new = grant_set(std::slice::from_ref(&rule), PodWriteOptions { exec_via_get: false });
        let old_without_get: BTreeSet<GrantKey> = old.iter().filter(|g| g.1 != "get").cloned().collect();
        prop_assert_eq!(new, old_without_get);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (d) Rule order does not change what a role grants (ignoring `rule_index`), and each grant
    /// points at a rule that grants it.
    #[test]
    fn role_pod_write_is_order_independent(
        (rules, shuffled) in prop::collection::vec(arb_rule(), 0..6)
            .prop_flat_map(|rules| (Just(rules.clone()), Just(rules).prop_shuffle())),
        opts in arb_opts(),
    ) {
        prop_assert_eq!(grant_set(&rules, opts), grant_set(&shuffled, opts));
        for g in role_pod_write(&shuffled, opts) {
            let own = pod_write_grants(&shuffled[g.rule_index], g.rule_index, opts);
            prop_assert!(own.contains(&g), "{:?} not produced by rule {}", g, g.rule_index);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed cases for the edges the alphabets aim at
// ---------------------------------------------------------------------------------------------

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule::new(groups, resources, verbs).with_names(names)
}

#[test]
fn reference_sanity() {
    let r = |v: &str, g: &str, res: &str, s: &str, n: &str| Req::Resource {
        verb: v.into(),
        group: g.into(),
        resource: res.into(),
        sub: s.into(),
        name: n.into(),
    };
    // The reference itself reproduces the upstream table.
    assert!(reference_allows(
        &rule(&[""], &["*/exec"], &["create"], &[]),
        &r("create", "", "pods", "exec", "p")
    ));
    assert!(!reference_allows(
        &rule(&[""], &["*/exec"], &["create"], &[]),
        &r("create", "", "pods", "", "")
    ));
    assert!(!reference_allows(
        &rule(&[""], &["pods/*"], &["create"], &[]),
        &r("create", "", "pods", "exec", "p")
    ));
    assert!(!reference_allows(
        &rule(&[""], &["pods"], &["create"], &["a"]),
        &r("create", "", "pods", "", "")
    ));
    let mut u = rule(&[], &[], &["get"], &[]);
    u.non_resource_urls = vec!["/x**".into()];
    assert!(reference_allows(
        &u,
        &Req::NonResource {
            verb: "get".into(),
            path: "/xyz".into()
        }
    ));
    assert!(!reference_allows(
        &u,
        &Req::NonResource {
            verb: "get".into(),
            path: "/y".into()
        }
    ));
}

#[test]
fn brute_force_sanity() {
    let o = PodWriteOptions::default();
    assert!(brute_force_grants(
        &rule(&[""], &["pods"], &["create"], &[]),
        o
    ));
    assert!(!brute_force_grants(
        &rule(&[""], &["pods"], &["create"], &["a"]),
        o
    ));
    assert!(brute_force_grants(
        &rule(&[""], &["pods"], &["create"], &[""]),
        o
    ));
    assert!(brute_force_grants(
        &rule(&[""], &["pods/finalizers"], &["update"], &[]),
        o
    ));
    assert!(!brute_force_grants(
        &rule(&[""], &["pods/*"], &["*"], &[]),
        o
    ));
    assert!(!brute_force_grants(
        &rule(&[""], &["*/scale"], &["*"], &[]),
        o
    ));
    assert!(brute_force_grants(
        &rule(&["*"], &["*/exec"], &["get"], &[]),
        o
    ));
    assert!(!brute_force_grants(
        &rule(&["*"], &["*/exec"], &["get"], &[]),
        PodWriteOptions {
            exec_via_get: false
        }
    ));
    // Verbs a subresource does not serve grant nothing.
    assert!(!brute_force_grants(
        &rule(&[""], &["pods/exec"], &["update", "delete"], &[]),
        o
    ));
    assert!(brute_force_grants(
        &rule(&[""], &["pods/proxy"], &["delete"], &[]),
        o
    ));
}
