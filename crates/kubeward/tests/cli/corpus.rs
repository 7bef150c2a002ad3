//! Third-party corpora: Falco's audit trace files and Panther's rule-test events.

use crate::util::{expected_verdicts, fixture, run, Run};
use std::collections::BTreeSet;

/// The Falco files that must alert, once each.
const FALCO_FIRE: [&str; 3] = [
    "create_cluster_role_wildcard_verbs.json",
    "create_cluster_role_pod_exec.json",
    "create_cluster_role_wildcard_resources.json",
];

fn detect_file(path: &str, extra: &[&str]) -> Run {
    let mut args = vec!["detect", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(path);
    run(&args, b"")
}

fn falco_files() -> Vec<(String, String)> {
    let dir = fixture("falco");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("falco fixtures")
        .map(|e| {
            let p = e.expect("dir entry").path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.to_str().unwrap().to_string(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn falco_every_file_has_the_expected_verdict() {
    let files = falco_files();
    assert_eq!(files.len(), 47, "the corpus has 47 files (SOURCES.md)");
    let mut fired = BTreeSet::new();
    for (name, path) in &files {
        let r = detect_file(path, &[]).ok();
        let alerts = r.alerts();
        if FALCO_FIRE.contains(&name.as_str()) {
            assert_eq!(alerts.len(), 1, "{name}: {r:#?}");
            let a = &alerts[0];
            assert_eq!(a["rule_id"], "clusterrole-pod-write", "{name}");
            assert_eq!(a["role"], "some-reader", "{name}");
            assert_eq!(a["verb"], "create", "{name}");
            assert_eq!(a["source"]["path"], path.as_str(), "{name}");
            assert_eq!(a["source"]["line"], 1, "{name}");
            fired.insert(name.clone());
        } else {
            assert_eq!(alerts.len(), 0, "{name} must not alert: {r:#?}");
            assert!(
                r.summary().contains(" 0 alerts,"),
                "{name}: {}",
                r.summary()
            );
        }
    }
    let want: BTreeSet<String> = FALCO_FIRE.iter().map(|s| s.to_string()).collect();
    assert_eq!(fired, want);
}

#[test]
fn falco_grants_of_the_firing_files() {
    let cases = [
        (
            "create_cluster_role_wildcard_verbs.json",
            "create pods",
            "high",
        ),
        (
            "create_cluster_role_pod_exec.json",
            "exec into pods",
            "high",
        ),
        (
            "create_cluster_role_wildcard_resources.json",
            "exec into pods",
            "high",
        ),
    ];
    for (name, capability, severity) in cases {
        let a = detect_file(fixture("falco").join(name).to_str().unwrap(), &[])
            .ok()
            .alert();
        let caps: Vec<&str> = a["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["capability"].as_str().unwrap())
            .collect();
        assert!(caps.contains(&capability), "{name}: {caps:?}");
        assert_eq!(a["severity"], severity, "{name}");
        assert_eq!(a["rules_source"], "responseObject", "{name}");
    }
}

#[test]
fn falco_kube_1_35_drops_the_get_exec_files() {
    for (name, want) in [
        ("create_cluster_role_pod_exec.json", 0),
        ("create_cluster_role_wildcard_resources.json", 0),
        // `*` verbs on pods is pod write whatever the version.
        ("create_cluster_role_wildcard_verbs.json", 1),
    ] {
        let path = fixture("falco").join(name);
        let r = detect_file(path.to_str().unwrap(), &["--kube-version", "1.35"]).ok();
        assert_eq!(r.alerts().len(), want, "{name}: {r:#?}");
        // ...and an older version keeps the default behaviour.
        let r = detect_file(path.to_str().unwrap(), &["--kube-version", "v1.34.2"]).ok();
        assert_eq!(r.alerts().len(), 1, "{name} on 1.34: {r:#?}");
    }
}

#[test]
fn falco_write_privileges_is_a_hard_negative() {
    // Rules: get pods, and `delete` on non-resource URLs: "write" in the name, but no pod write.
    let path = fixture("falco/create_cluster_role_write_privileges.json");
    let r = detect_file(path.to_str().unwrap(), &[]).ok();
    assert_eq!(r.stdout, "");
    assert!(r.summary().contains("1 events parsed"), "{}", r.summary());
    assert!(r.summary().contains(" 0 alerts,"), "{}", r.summary());
}

#[test]
fn falco_malformed_file_does_not_panic() {
    let path = fixture("falco/fal_01_003.json");
    let path = path.to_str().unwrap();
    // `{"kind": 0}` has no `clusterroles`: the prefilter skips it unparsed.
    let r = detect_file(path, &[]).ok();
    assert_eq!(r.stdout, "");
    assert!(r.summary().contains(" 0 malformed,"), "{}", r.summary());
    // Parsed, it is reported with its location and the run goes on.
    let r = detect_file(path, &["--no-prefilter"]).ok();
    assert_eq!(r.stdout, "");
    let reported: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with(path)).collect();
    assert_eq!(reported.len(), 1, "{r:#?}");
    assert!(reported[0].starts_with(&format!("{path}:1: ")), "{r:#?}");
    assert!(r.summary().contains(" 1 malformed,"), "{}", r.summary());
}

fn panther_alerting_lines(extra: &[&str]) -> Vec<u64> {
    let path = fixture("panther/native.jsonl");
    let r = detect_file(path.to_str().unwrap(), extra).ok();
    for a in r.alerts() {
        assert_eq!(a["rule_id"], "clusterrole-pod-write");
        assert_eq!(a["source"]["path"], path.to_str().unwrap());
        assert!(a.get("suppressed_by").is_none(), "{a}");
    }
    r.lines()
}

#[test]
fn panther_alerting_lines_are_the_fire_rows() {
    let rows = expected_verdicts("panther/native-expected.tsv");
    let n_lines = std::fs::read_to_string(fixture("panther/native.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows.len(), n_lines, "one TSV row per event");
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=n_lines as u64).collect::<Vec<_>>()
    );
    let want: Vec<u64> = rows.iter().filter(|r| r.1 == "FIRE").map(|r| r.0).collect();
    let got = panther_alerting_lines(&[]);
    // Equal as lists: in input order, and one alert per line.
    assert_eq!(got, want);
}

#[test]
fn panther_kube_1_35_stops_row_35() {
    let want: Vec<u64> = expected_verdicts("panther/native-expected.tsv")
        .into_iter()
        .filter(|r| r.1 == "FIRE" && r.0 != 35)
        .map(|r| r.0)
        .collect();
    assert!(panther_alerting_lines(&[]).contains(&35));
    assert_eq!(panther_alerting_lines(&["--kube-version", "1.35"]), want);
}
