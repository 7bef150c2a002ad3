//! Aggregation is order-independent and cycle-safe: for random graphs of labelled ClusterRoles
//! and aggregating ClusterRoles (cycles included), the resolved rules of every role are the
//! same set whatever order the roles come in, and equal the rules reachable through the
//! selectors, computed here by a plain graph search.

use proptest::prelude::*;
use rbac::model::resolve_aggregation;
use rbac::objects::{LabelSelector, Origin, Role, RoleKind};
use rbac::PolicyRule;
use std::collections::{BTreeMap, BTreeSet};

fn rule(i: usize) -> PolicyRule {
    PolicyRule {
        verbs: vec!["get".into()],
        api_groups: vec![String::new()],
        resources: vec![format!("r{i}")],
        ..Default::default()
    }
}

/// `n` roles; role i carries labels `labels[i]` (subset of l0..l3), aggregates with selectors
/// `sels[i]` (None: not aggregating) and owns rule r{i} (ignored when aggregating, as upstream
/// replaces an aggregating role's rules).
fn roles(spec: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<Role> {
    spec.iter()
        .enumerate()
        .map(|(i, (labels, sel))| Role {
            kind: RoleKind::ClusterRole,
            name: format!("role-{i:02}"),
            namespace: None,
            labels: labels
                .iter()
                .map(|l| (format!("l{l}"), "true".to_string()))
                .collect(),
            rules: vec![rule(i)],
            aggregation: sel.as_ref().map(|ls| {
                ls.iter()
                    .map(|l| LabelSelector {
                        match_labels: BTreeMap::from([(format!("l{l}"), "true".to_string())]),
                        match_expressions: vec![],
                    })
                    .collect()
            }),
            origin: Origin::default(),
            defaulted_namespace: false,
            resource_version: None,
        })
        .collect()
}

/// The reference: every aggregating role reachable from `i` through selectors (a plain
/// graph search, cycles included), and the own rules of the non-aggregating roles they pick.
/// The controller never picks a role for itself, so `i` is only reached again through a cycle.
fn reachable(rs: &[Role], i: usize) -> BTreeSet<String> {
    let picks = |a: usize| -> Vec<usize> {
        let sels = rs[a].aggregation.as_deref().unwrap_or(&[]);
        (0..rs.len())
            .filter(|&j| j != a && sels.iter().any(|s| s.matches(&rs[j].labels)))
            .collect()
    };
    let mut seen = BTreeSet::from([i]);
    let mut stack = vec![i];
    let mut out = BTreeSet::new();
    while let Some(a) = stack.pop() {
        for j in picks(a) {
            if rs[j].aggregation.is_none() {
                out.insert(rs[j].rules[0].resources[0].clone());
            } else if seen.insert(j) {
                stack.push(j);
            }
        }
    }
    out
}

fn resolved(rs: &[Role]) -> BTreeMap<String, BTreeSet<String>> {
    let (eff, _) = resolve_aggregation(rs);
    rs.iter()
        .zip(eff)
        .map(|(r, e)| {
            (
                r.name.clone(),
                e.into_iter().map(|x| x.rule.resources[0].clone()).collect(),
            )
        })
        .collect()
}

fn spec() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(0u8..4, 0..3),
            prop::option::weighted(0.4, prop::collection::vec(0u8..4, 0..3)),
        ),
        1..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn order_does_not_matter(s in spec(), perm in any::<prop::sample::Index>()) {
        let rs = roles(&s);
        let mut shuffled = rs.clone();
        // A rotation and a reversal cover every relative order pattern over many cases.
        let k = perm.index(shuffled.len());
        shuffled.rotate_left(k);
        shuffled.reverse();
        prop_assert_eq!(resolved(&rs), resolved(&shuffled));
    }

    #[test]
    fn aggregating_roles_get_what_they_reach(s in spec()) {
        let rs = roles(&s);
        let got = resolved(&rs);
        for (i, r) in rs.iter().enumerate() {
            let want = if r.aggregation.is_some() {
                reachable(&rs, i)
            } else {
                BTreeSet::from([format!("r{i}")])
            };
            prop_assert_eq!(&got[&r.name], &want, "role {}", r.name);
        }
    }
}
