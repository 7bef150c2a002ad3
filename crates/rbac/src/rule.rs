//! `PolicyRule` and the authorizer's matchers, ported rule for rule from upstream
//! `pkg/apis/rbac/v1/evaluation_helpers.go` and `plugin/pkg/auth/authorizer/rbac/rbac.go`.
//!
//! Nothing here is "smart": no verb implies another, `pods` does not cover `pods/exec`,
//! `pods/*` is not a wildcard, and comparisons are case-sensitive, because that is what the
//! API server does.

use serde::{Deserialize, Deserializer, Serialize};

/// The wildcard that matches every verb, group, resource or URL.
pub const ALL: &str = "*";

/// One RBAC `PolicyRule` (rbac.authorization.k8s.io/v1).
///
/// `null` and missing lists both read as empty, as the API server treats them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Verbs, e.g. `get`, `create`, `*`.
    #[serde(default, deserialize_with = "nullable_list")]
    pub verbs: Vec<String>,
    /// API groups; `""` is the core group.
    #[serde(
        default,
        deserialize_with = "nullable_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    /// Resources, optionally `resource/subresource`, `*` or `*/subresource`.
    #[serde(
        default,
        deserialize_with = "nullable_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    /// When not empty, the rule applies only to objects with these names.
    #[serde(
        default,
        deserialize_with = "nullable_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    /// Non-resource URL paths (`/healthz`, `/api/*`).
    #[serde(
        default,
        rename = "nonResourceURLs",
        deserialize_with = "nullable_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// A resource rule: these verbs on these resources in these API groups.
    pub fn new(api_groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let own = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: own(verbs),
            api_groups: own(api_groups),
            resources: own(resources),
            ..Default::default()
        }
    }

    /// The same rule, restricted to objects with these names.
    pub fn with_names(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
}

fn nullable_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The attributes of one request, as the RBAC authorizer sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// A request on an API resource.
    Resource {
        /// The verb, e.g. `create`.
        verb: &'a str,
        /// The API group; `""` for core.
        api_group: &'a str,
        /// The resource, e.g. `pods`.
        resource: &'a str,
        /// The subresource, e.g. `exec`; `""` when none.
        subresource: &'a str,
        /// The object name; `""` for requests that carry none (create, list, deletecollection).
        name: &'a str,
    },
    /// A request on a non-resource URL such as `/healthz`.
    NonResource {
        /// The verb: the lower-case HTTP method (`get`, `post`, ...).
        verb: &'a str,
        /// The URL path.
        path: &'a str,
    },
}

/// `VerbMatches`: `*` or the exact verb.
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// `APIGroupMatches`: `*` or the exact group (`""` is core).
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == ALL || g == group)
}

/// `ResourceMatches`: `*`, the exact `resource[/subresource]`, or `*/subresource`.
///
/// `combined` is `resource` or `resource/subresource`; `subresource` is `""` when none.
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == ALL || r == combined {
            return true;
        }
        // `*/sub` only ever matches requests that have that subresource.
        !subresource.is_empty()
            && r.len() == subresource.len() + 2
            && r.starts_with("*/")
            && r.ends_with(subresource)
    })
}

/// [`resource_matches`] on `resource` and `subresource` without building the combined string.
pub fn resource_parts_match(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    if subresource.is_empty() {
        return resource_matches(rule, resource, "");
    }
    rule.resources.iter().any(|r| {
        r == ALL
            || (r.len() == resource.len() + 1 + subresource.len()
                && r.starts_with(resource)
                && r.as_bytes()[resource.len()] == b'/'
                && r.ends_with(subresource))
            || (r.len() == subresource.len() + 2 && r.starts_with("*/") && r.ends_with(subresource))
    })
}

/// `ResourceNameMatches`: an empty list allows any name; otherwise the exact name.
///
/// A request without a name is matched with `""`, so a name-restricted rule never allows it.
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

/// `NonResourceURLMatches`: `*`, the exact path, or a prefix ending in `*`.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// `RuleAllows`: whether this one rule authorizes the request.
pub fn rule_allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    match *req {
        Request::Resource {
            verb,
            api_group,
            resource,
            subresource,
            name,
        } => {
            if !verb_matches(rule, verb) || !api_group_matches(rule, api_group) {
                return false;
            }
            resource_parts_match(rule, resource, subresource) && resource_name_matches(rule, name)
        }
        Request::NonResource { verb, path } => {
            verb_matches(rule, verb) && non_resource_url_matches(rule, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule::new(groups, resources, verbs).with_names(names)
    }

    fn res<'a>(
        verb: &'a str,
        group: &'a str,
        r: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Request<'a> {
        Request::Resource {
            verb,
            api_group: group,
            resource: r,
            subresource: sub,
            name,
        }
    }

    #[test]
    fn table() {
        // (rule, request, allowed)
        let cases: Vec<(PolicyRule, Request, bool)> = vec![
            (
                rule(&[""], &["pods"], &["create"], &[]),
                res("create", "", "pods", "", ""),
                true,
            ),
            (
                rule(&[""], &["pods"], &["create"], &[]),
                res("update", "", "pods", "", "p"),
                false,
            ),
            (
                rule(&[""], &["pods"], &["update"], &[]),
                res("patch", "", "pods", "", "p"),
                false,
            ),
            (
                rule(&[""], &["pods"], &["*"], &[]),
                res("patch", "", "pods", "", "p"),
                true,
            ),
            (
                rule(&["*"], &["pods"], &["get"], &[]),
                res("get", "apps", "pods", "", "p"),
                true,
            ),
            (
                rule(&["metrics.k8s.io"], &["pods"], &["*"], &[]),
                res("get", "", "pods", "", "p"),
                false,
            ),
            (
                rule(&[""], &["Pods"], &["create"], &[]),
                res("create", "", "pods", "", ""),
                false,
            ),
            (
                rule(&[""], &["pods"], &["CREATE"], &[]),
                res("create", "", "pods", "", ""),
                false,
            ),
            (
                rule(&[""], &["pods"], &["create"], &[]),
                res("create", "", "pods", "exec", "p"),
                false,
            ),
            (
                rule(&[""], &["pods/*"], &["create"], &[]),
                res("create", "", "pods", "exec", "p"),
                false,
            ),
            (
                rule(&[""], &["pods/*"], &["create"], &[]),
                res("create", "", "pods", "*", "p"),
                true,
            ),
            (
                rule(&[""], &["*/exec"], &["create"], &[]),
                res("create", "", "pods", "exec", "p"),
                true,
            ),
            (
                rule(&[""], &["*/exec"], &["create"], &[]),
                res("create", "", "pods", "", ""),
                false,
            ),
            (
                rule(&[""], &["*/exec"], &["create"], &[]),
                res("create", "", "pods", "attach", "p"),
                false,
            ),
            (
                rule(&[""], &["*"], &["create"], &[]),
                res("create", "", "pods", "exec", "p"),
                true,
            ),
            (
                rule(&[""], &["pods"], &["create"], &["a"]),
                res("create", "", "pods", "", ""),
                false,
            ),
            (
                rule(&[""], &["pods"], &["delete"], &["a"]),
                res("delete", "", "pods", "", "a"),
                true,
            ),
            (
                rule(&[""], &["pods"], &["delete"], &["a"]),
                res("delete", "", "pods", "", "b"),
                false,
            ),
            (
                rule(&[], &["pods"], &["*"], &[]),
                res("create", "", "pods", "", ""),
                false,
            ),
            (
                rule(&[""], &["pods"], &[], &[]),
                res("create", "", "pods", "", ""),
                false,
            ),
        ];
        for (i, (r, q, want)) in cases.iter().enumerate() {
            assert_eq!(rule_allows(r, q), *want, "case {i}: {r:?} {q:?}");
        }
    }

    #[test]
    fn non_resource_urls() {
        let mut r = rule(&[], &[], &["get"], &[]);
        r.non_resource_urls = vec!["/apis/*".into(), "/healthz".into(), "/x**".into()];
        let nr = |p| Request::NonResource {
            verb: "get",
            path: p,
        };
        assert!(rule_allows(&r, &nr("/apis/apps/v1")));
        assert!(rule_allows(&r, &nr("/apis/")));
        assert!(!rule_allows(&r, &nr("/apis")));
        assert!(rule_allows(&r, &nr("/healthz")));
        assert!(!rule_allows(&r, &nr("/healthz/ready")));
        assert!(
            rule_allows(&r, &nr("/xyz")),
            "TrimRight drops every trailing *"
        );
        assert!(!rule_allows(
            &r,
            &Request::NonResource {
                verb: "post",
                path: "/healthz"
            }
        ));
        // A URL rule never allows a resource request.
        assert!(!rule_allows(&r, &res("get", "", "pods", "", "p")));
    }

    #[test]
    fn null_lists_deserialize_as_empty() {
        let r: PolicyRule =
            serde_json::from_str(r#"{"verbs":null,"apiGroups":[""],"resources":null}"#).unwrap();
        assert!(r.verbs.is_empty() && r.resources.is_empty());
        assert_eq!(r.api_groups, vec![String::new()]);
    }
}
