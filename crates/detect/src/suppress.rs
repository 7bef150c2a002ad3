//! Suppressions: known-good changes that are counted, and printable, but not alerted.
//!
//! Two are built in: the API server reconciling its bootstrap roles at startup
//! (`system:apiserver`), and the aggregation controller rewriting aggregated roles. Users add
//! their own in the YAML config file:
//!
//! ```yaml
//! default_suppressions: true        # keep the two built-in ones (default)
//! suppressions:
//!   - name: argo-cd syncs its own roles
//!     user: "system:serviceaccount:argocd:argocd-application-controller"
//!     role: "argocd-*"
//!   - name: platform team
//!     group: platform-admins
//! ```
//!
//! Within one entry every field given must match; any entry matching suppresses. `user`, `group`
//! and `role` are globs (`*` any run of characters, `?` one character). `user` is the real
//! actor (`user.username`), not an impersonated identity, so impersonating a suppressed
//! identity does not hide a change.

use crate::alert::Alert;
use serde::Deserialize;
use thiserror::Error;

/// A config file that could not be used. Every problem is listed at once.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not valid YAML, or wrong shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Entries that are well-formed YAML but unusable.
    #[error("{path}: {}", .problems.join("; "))]
    Invalid {
        /// The file.
        path: String,
        /// One message per problem.
        problems: Vec<String>,
    },
}

/// One suppression.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Label shown in `suppressed_by`.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob on the real actor's user name.
    #[serde(default)]
    pub user: Option<String>,
    /// Glob that any of the actor's groups must match.
    #[serde(default)]
    pub group: Option<String>,
    /// Glob on the role name.
    #[serde(default)]
    pub role: Option<String>,
    /// Only for this rule id (default: every rule).
    #[serde(default)]
    pub rule: Option<String>,
}

/// The config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keep the built-in suppressions (default true).
    #[serde(default)]
    pub default_suppressions: Option<bool>,
    /// User suppressions.
    #[serde(default)]
    pub suppressions: Vec<Suppression>,
}

impl Config {
    /// Parses and checks a config file's text; `path` is for messages.
    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        for (i, s) in cfg.suppressions.iter().enumerate() {
            let label = s
                .name
                .clone()
                .unwrap_or_else(|| format!("suppressions[{i}]"));
            if s.user.is_none() && s.group.is_none() && s.role.is_none() {
                problems.push(format!("{label}: needs at least one of user, group, role"));
            }
            for (field, v) in [("user", &s.user), ("group", &s.group), ("role", &s.role)] {
                if v.as_deref() == Some("") {
                    problems.push(format!("{label}: {field} is empty"));
                }
            }
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_string(),
                problems,
            })
        }
    }
}

/// The active suppressions.
#[derive(Debug, Clone)]
pub struct Suppressions {
    /// Each suppression with the label shown in `suppressed_by`.
    list: Vec<(String, Suppression)>,
}

/// The built-in suppressions.
pub fn builtin() -> Vec<Suppression> {
    vec![
        Suppression {
            name: Some("builtin: API server bootstrap-role reconciliation".into()),
            user: Some("system:apiserver".into()),
            group: None,
            role: None,
            rule: None,
        },
        Suppression {
            name: Some("builtin: clusterrole-aggregation-controller".into()),
            user: Some(
                "system:serviceaccount:kube-system:clusterrole-aggregation-controller".into(),
            ),
            group: None,
            role: None,
            rule: None,
        },
    ]
}

impl Suppressions {
    /// From a config (built-ins first, unless turned off).
    pub fn new(cfg: &Config) -> Self {
        let label = |s: &Suppression, fallback: String| s.name.clone().unwrap_or(fallback);
        let mut list: Vec<(String, Suppression)> = if cfg.default_suppressions.unwrap_or(true) {
            builtin()
                .into_iter()
                .map(|s| (label(&s, String::new()), s))
                .collect()
        } else {
            vec![]
        };
        // Unnamed entries are labelled by their place in the file, as config errors are.
        list.extend(
            cfg.suppressions
                .iter()
                .enumerate()
                .map(|(i, s)| (label(s, format!("suppressions[{i}]")), s.clone())),
        );
        Suppressions { list }
    }

    /// The name of the first suppression that matches the alert.
    pub fn matching(&self, a: &Alert) -> Option<String> {
        self.list.iter().find_map(|(label, s)| {
            let ok = s.rule.as_deref().is_none_or(|r| r == a.rule_id)
                && s.user
                    .as_deref()
                    .is_none_or(|g| a.actor.username.as_deref().is_some_and(|u| glob(g, u)))
                && s.group
                    .as_deref()
                    .is_none_or(|g| a.actor.groups.iter().flatten().any(|x| glob(g, x)))
                && s.role
                    .as_deref()
                    .is_none_or(|g| a.role.as_deref().is_some_and(|r| glob(g, r)));
            ok.then(|| label.clone())
        })
    }
}

/// Glob match with `*` (any run) and `?` (one character).
pub fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("argocd-*", "argocd-server", true),
            ("argocd-*", "argocd-", true),
            ("argocd-*", "xargocd-a", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            (
                "*:kube-system:*",
                "system:serviceaccount:kube-system:x",
                true,
            ),
            ("a*b*c", "aXbYbc", true),
            ("a*b*c", "aXbYb", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
        ] {
            assert_eq!(glob(p, s), want, "{p} {s}");
        }
    }

    #[test]
    fn config_errors_are_all_reported() {
        let e = Config::parse("c.yaml", "suppressions:\n  - name: a\n  - user: ''\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("a: needs at least one") && msg.contains("suppressions[1]: user is empty"),
            "{msg}"
        );
        let e = Config::parse("c.yaml", "suppressions:\n  - usr: x\n").unwrap_err();
        assert!(e.to_string().starts_with("c.yaml: "), "{e}");
        let c = Config::parse(
            "c.yaml",
            "default_suppressions: false\nsuppressions:\n  - role: 'x-*'\n",
        )
        .unwrap();
        assert_eq!(Suppressions::new(&c).list.len(), 1);
        assert_eq!(Suppressions::new(&Config::default()).list.len(), 2);
    }
}
