//! Managed clusters' exports: EKS CloudWatch Logs shapes, GKE Cloud Audit Logs entries, AKS
//! diagnostic records. Panther's test events in those shapes (with verdicts), kubeward's own
//! fixture per wrapper (`tests/fixtures/envelopes/`, written by its `generate.py`), and one
//! fixture per malformed variant.

use crate::util::{expected_verdicts, fixture, run, write, Run};
use serde_json::Value;

fn detect_path(path: &str, extra: &[&str]) -> Run {
    let mut args = vec!["detect", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(path);
    run(&args, b"")
}

fn envelope(name: &str) -> String {
    fixture("envelopes")
        .join(name)
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

/// Runs the Panther fixture `name` (`gke` or `aks`) and checks that exactly the FIRE rows alert.
fn panther_case(name: &str, extra: &[&str], drop: &[u64]) -> Run {
    let rows = expected_verdicts(&format!("panther/{name}-expected.tsv"));
    let path = fixture(&format!("panther/{name}.jsonl"));
    let n_lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(rows.len(), n_lines, "one TSV row per record");
    let want: Vec<u64> = rows
        .iter()
        .filter(|r| r.1 == "FIRE" && !drop.contains(&r.0))
        .map(|r| r.0)
        .collect();
    let r = detect_path(path.to_str().unwrap(), extra).ok();
    assert_eq!(r.lines(), want, "{r:#?}");
    assert!(r.summary().contains(" 0 malformed,"), "{}", r.summary());
    for a in r.alerts() {
        assert_eq!(a["rule_id"], "clusterrole-pod-write");
        assert_eq!(a["source"]["format"], name);
    }
    r
}

#[test]
fn panther_gke_clusterrole_verdicts() {
    let r = panther_case("gke", &[], &[]);
    let alerts = r.alerts();
    assert_eq!(alerts[0]["role"], "privileged-role");
    assert_eq!(alerts[1]["role"], "all-reader");
    for a in &alerts {
        // GKE logs no groups: unknown, not empty, and the alert says so.
        assert_eq!(a["actor"]["groups"], Value::Null, "{a}");
        assert_eq!(a["actor"]["username"], "user@company.com");
        assert_eq!(a["source_ips"], serde_json::json!(["8.8.8.8"]));
        let notes = a["notes"].to_string();
        assert!(
            notes.contains("GKE audit logs record no group list"),
            "{notes}"
        );
    }
    // Non-Kubernetes entries are skipped and counted per kind, not reported one by one.
    assert!(r.stderr.contains("kubeward: skipped 1 record without an audit event: GKE: audit log entries of service compute.googleapis.com"), "{}", r.stderr);
    assert!(r.stderr.contains("kubeward: skipped 5 records without an audit event: GKE: audit log entries of service deploymentmanager.googleapis.com"), "{}", r.stderr);
    // Line 23 is `get` on `*` in the core group: exec over WebSocket only before 1.35.
    panther_case("gke", &["--kube-version", "1.35"], &[23]);
    // Without the prefilter every unwrapped event is parsed: the same verdicts.
    panther_case("gke", &["--no-prefilter"], &[]);
}

#[test]
fn panther_aks_clusterrole_verdicts() {
    // The two AKS ClusterRole cases (nodes/* create, a delete) and the Roles must not fire.
    let r = panther_case("aks", &[], &[]);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .contains("kubeward: 34 audit events unwrapped from managed-cluster records (aks 34)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("skipped 1 record without an audit event: AKS: diagnostic records of category Administrative"), "{}", r.stderr);
    let r = panther_case("aks", &["--no-prefilter"], &[]);
    assert!(
        r.summary().contains(" 34 events parsed,"),
        "{}",
        r.summary()
    );
}

/// One own fixture: the alerts expected as (line, item, role, cluster).
struct Case {
    file: &'static str,
    format: &'static str,
    alerts: &'static [(u64, Option<u64>, &'static str, Option<&'static str>)],
    unwrapped: &'static str,
    skipped: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        file: "eks-filter-log-events.json",
        format: "eks",
        alerts: &[(1, Some(0), "pod-writer", None)],
        unwrapped: "3 audit events unwrapped from managed-cluster records (eks 3)",
        skipped: &["EKS: messages of log stream authenticator-* (not the audit log)"],
    },
    Case {
        file: "eks-get-log-events.json",
        format: "eks",
        alerts: &[(1, Some(1), "debugger", None)],
        unwrapped: "2 audit events unwrapped from managed-cluster records (eks 2)",
        skipped: &[],
    },
    Case {
        file: "eks-cloudwatch-lines.jsonl",
        format: "eks",
        alerts: &[(2, None, "pod-writer", None)],
        unwrapped: "3 audit events unwrapped from managed-cluster records (eks 3)",
        skipped: &[],
    },
    Case {
        file: "eks-subscription.jsonl",
        format: "eks",
        alerts: &[
            (1, Some(1), "pod-writer", Some("prod-eu")),
            (3, None, "debugger", Some("prod-eu")),
        ],
        unwrapped: "3 audit events unwrapped from managed-cluster records (eks 3)",
        skipped: &["EKS: CloudWatch subscription CONTROL_MESSAGE payloads (health checks)"],
    },
    Case {
        file: "eks-lambda.json",
        format: "eks",
        alerts: &[(1, Some(1), "pod-writer", Some("prod-eu"))],
        unwrapped: "3 audit events unwrapped from managed-cluster records (eks 3)",
        skipped: &[],
    },
    Case {
        file: "eks-kinesis.json",
        format: "eks",
        alerts: &[(1, Some(0), "pod-writer", Some("prod-eu"))],
        unwrapped: "1 audit event unwrapped from managed-cluster records (eks 1)",
        skipped: &["EKS: CloudWatch subscription CONTROL_MESSAGE payloads (health checks)"],
    },
    Case {
        file: "eks-firehose-http.json",
        format: "eks",
        alerts: &[
            (1, Some(1), "pod-writer", Some("prod-eu")),
            (1, Some(3), "debugger", Some("prod-eu")),
        ],
        unwrapped: "3 audit events unwrapped from managed-cluster records (eks 3)",
        skipped: &["EKS: CloudWatch subscription CONTROL_MESSAGE payloads (health checks)"],
    },
    Case {
        file: "eks-firehose-s3.gz",
        format: "eks",
        alerts: &[
            (1, Some(1), "pod-writer", Some("prod-eu")),
            (1, Some(4), "debugger", Some("prod-eu")),
        ],
        unwrapped: "4 audit events unwrapped from managed-cluster records (eks 4)",
        skipped: &["EKS: CloudWatch subscription CONTROL_MESSAGE payloads (health checks)"],
    },
    Case {
        file: "gke-logentries.json",
        format: "gke",
        alerts: &[
            (2, None, "pod-writer", Some("gke-prod")),
            (287, None, "debugger", Some("gke-prod")),
        ],
        unwrapped: "5 audit events unwrapped from managed-cluster records (gke 5)",
        skipped: &["GKE: audit log entries of service container.googleapis.com (not Kubernetes)"],
    },
    Case {
        file: "gke-logentries.jsonl",
        format: "gke",
        alerts: &[
            (1, None, "pod-writer", Some("gke-prod")),
            (6, None, "debugger", Some("gke-prod")),
        ],
        unwrapped: "5 audit events unwrapped from managed-cluster records (gke 5)",
        skipped: &[
            "GKE: audit log entries of service container.googleapis.com (not Kubernetes)",
            "GKE: log entries without a protoPayload (not Cloud Audit Logs)",
        ],
    },
    Case {
        file: "aks-eventhub.json",
        format: "aks",
        alerts: &[
            (1, Some(1), "pod-writer", Some("AKS-PROD")),
            (1, Some(3), "debugger", Some("AKS-PROD")),
            (1, Some(4), "debugger", Some("AKS-PROD")),
        ],
        unwrapped: "4 audit events unwrapped from managed-cluster records (aks 4)",
        skipped: &[
            "AKS: diagnostic records of category guard (not kube-audit)",
            "AKS: diagnostic records of category kube-apiserver (not kube-audit)",
        ],
    },
    Case {
        file: "aks-storage.jsonl",
        format: "aks",
        alerts: &[
            (2, None, "pod-writer", Some("AKS-PROD")),
            (4, None, "debugger", Some("AKS-PROD")),
        ],
        unwrapped: "5 audit events unwrapped from managed-cluster records (aks 5)",
        skipped: &["AKS: diagnostic records of category guard (not kube-audit)"],
    },
];

#[test]
fn every_wrapper_gives_its_alerts() {
    for c in CASES {
        let path = envelope(c.file);
        for extra in [&[][..], &["--no-prefilter"], &["--input-format", c.format]] {
            let r = detect_path(&path, extra).ok();
            let got: Vec<(u64, Option<u64>, String, Option<String>)> = r
                .alerts()
                .iter()
                .map(|a| {
                    assert_eq!(a["source"]["format"], c.format, "{}: {a}", c.file);
                    assert_eq!(a["source"]["path"], path.as_str());
                    (
                        a["source"]["line"].as_u64().unwrap(),
                        a["source"]["item"].as_u64(),
                        a["role"].as_str().unwrap().to_string(),
                        a["cluster"].as_str().map(str::to_string),
                    )
                })
                .collect();
            let want: Vec<(u64, Option<u64>, String, Option<String>)> = c
                .alerts
                .iter()
                .map(|(l, i, role, cl)| (*l, *i, role.to_string(), cl.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "{} {extra:?}: {r:#?}", c.file);
            assert!(
                r.summary().contains(" 0 malformed,"),
                "{}: {}",
                c.file,
                r.summary()
            );
            assert!(
                r.stderr.contains(&format!("kubeward: {}", c.unwrapped)),
                "{} {extra:?}: {}",
                c.file,
                r.stderr
            );
            for s in c.skipped {
                assert!(
                    r.stderr.contains(&format!("without an audit event: {s}\n")),
                    "{} {extra:?}: {s}: {}",
                    c.file,
                    r.stderr
                );
            }
        }
    }
}

#[test]
fn alerts_from_wrappers_carry_the_event_facts() {
    // The Lambda payload is gzip+base64: the decoded event keeps every fact.
    let a = &detect_path(&envelope("eks-lambda.json"), &[]).ok().alerts()[0];
    assert_eq!(a["audit_id"], "eks-0001");
    assert_eq!(
        a["actor"]["groups"],
        serde_json::json!(["platform", "system:authenticated"])
    );
    assert_eq!(a["source_ips"], serde_json::json!(["203.0.113.7"]));
    assert_eq!(a["rules_source"], "responseObject");
    assert_eq!(a["severity"], "high");
    // GKE: the request body lost its @type, the rpc status is a 200, operation.id the auditID.
    let alerts = detect_path(&envelope("gke-logentries.jsonl"), &[])
        .ok()
        .alerts();
    let a = &alerts[0];
    assert_eq!(a["audit_id"], "gke-0001");
    assert_eq!(a["response_code"], 200);
    assert_eq!(a["stage"], "ResponseComplete");
    assert_eq!(
        a["user_agent"],
        "kubectl/v1.31.0 (linux/amd64) kubernetes/abc1234"
    );
    assert_eq!(a["source_ips"], serde_json::json!(["198.51.100.4"]));
    assert_eq!(a["actor"]["groups"], Value::Null);
    assert_eq!(a["rules_source"], "responseObject");
    // gke-0005 logged only the request: read from it.
    assert_eq!(alerts[1]["rules_source"], "requestObject");
    // AKS: a response skipped as too big is absent, the request is used, and the alert says so.
    let alerts = detect_path(&envelope("aks-storage.jsonl"), &[])
        .ok()
        .alerts();
    let a = &alerts[1];
    assert_eq!(a["audit_id"], "aks-big");
    assert_eq!(a["rules_source"], "requestObject");
    let notes = a["notes"].to_string();
    assert!(
        notes.contains(
            "AKS did not log the responseObject (it wrote \\\"skipped-too-big-size-object\\\""
        ),
        "{notes}"
    );
}

#[test]
fn gke_text_output_says_the_groups_are_unknown() {
    let r = run(
        &[
            "detect",
            "--format",
            "text",
            "--color",
            "never",
            &envelope("gke-logentries.jsonl"),
        ],
        b"",
    )
    .ok();
    assert!(
        r.stdout
            .contains("alice@example.com  groups: unknown (not in the log)"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_logs_cluster_name_wins_over_the_flag() {
    let r = detect_path(&envelope("eks-lambda.json"), &["--cluster", "mine"]).ok();
    assert_eq!(r.alert()["cluster"], "prod-eu");
    // filter-log-events output names no log group: the flag labels it.
    let r = detect_path(
        &envelope("eks-filter-log-events.json"),
        &["--cluster", "mine"],
    )
    .ok();
    assert_eq!(r.alert()["cluster"], "mine");
}

#[test]
fn mixed_native_and_wrapped_lines_are_told_apart_per_line() {
    // The first line is native, so the input takes the native fast path; the wrapped lines
    // hold the needle and an escaped write verb, fail as native Events, and are unwrapped.
    for extra in [&[][..], &["--no-prefilter"]] {
        let r = detect_path(&envelope("mixed.jsonl"), extra).ok();
        let got: Vec<(u64, String, String)> = r
            .alerts()
            .iter()
            .map(|a| {
                (
                    a["source"]["line"].as_u64().unwrap(),
                    a["source"]["format"].as_str().unwrap().to_string(),
                    a["role"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "aks".to_string(), "pod-writer".to_string()),
                (4, "eks".to_string(), "debugger".to_string())
            ],
            "{extra:?}: {r:#?}"
        );
        assert!(r.summary().contains(" 0 malformed,"), "{}", r.summary());
    }
}

#[test]
fn stdin_and_gzip_on_stdin() {
    let bytes = std::fs::read(envelope("eks-firehose-s3.gz")).unwrap();
    let r = run(&["detect", "--format", "json", "-"], &bytes).ok();
    assert_eq!(r.lines(), vec![1, 1]);
    assert_eq!(r.alerts()[0]["source"]["path"], "-");
}

#[test]
fn stateful_detection_reads_wrapped_events() {
    // The record whose bodies AKS skipped says nothing of the rules: unverified, with the reason.
    let r = detect_path(&envelope("aks-storage.jsonl"), &["--stateful"]).ok();
    let alerts = r.alerts();
    let ids: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap(),
                a["audit_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        ids.contains(&("clusterrole-pod-write", "eks-0001")),
        "{ids:?}"
    );
    assert!(
        ids.contains(&("clusterrole-pod-write", "aks-big")),
        "{ids:?}"
    );
    let unverified = alerts
        .iter()
        .find(|a| a["audit_id"] == "aks-big-all")
        .expect("an alert for the record without bodies");
    assert_eq!(unverified["rule_id"], "clusterrole-changed-unverified");
    assert_eq!(unverified["cluster"], "AKS-PROD");
    let notes = unverified["notes"].to_string();
    assert!(
        notes.contains("AKS did not log the requestObject"),
        "{notes}"
    );
    assert!(
        notes.contains("AKS did not log the responseObject"),
        "{notes}"
    );
    // GKE alerts in stateful mode say the groups are unknown too.
    let r = detect_path(&envelope("gke-logentries.jsonl"), &["--stateful"]).ok();
    for a in r.alerts() {
        assert_eq!(a["actor"]["groups"], Value::Null, "{a}");
        assert_eq!(a["cluster"], "gke-prod");
    }
    assert!(!r.alerts().is_empty());
}

#[test]
fn forced_formats_read_only_their_shape() {
    // A wrapper of another cloud, and a native Event, are reported, not guessed at.
    let r = detect_path(&envelope("eks-lambda.json"), &["--input-format", "gke"]).ok();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .contains("eks-lambda.json:1: an EKS record, not a GKE one (--input-format gke)"),
        "{}",
        r.stderr
    );
    let native = fixture("panther/native.jsonl");
    let r = detect_path(native.to_str().unwrap(), &["--input-format", "aks"]).ok();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(
            ":1: a native audit Event, not an AKS record (--input-format aks; use auto or k8s)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.summary().contains(" 40 malformed,"), "{}", r.summary());
    // k8s: wrapped records are not audit Events.
    let r = detect_path(
        &envelope("eks-cloudwatch-lines.jsonl"),
        &["--input-format", "k8s", "--no-prefilter"],
    )
    .ok();
    assert!(r.stdout.is_empty());
    assert!(r.summary().contains(" 3 malformed,"), "{}", r.summary());
}

/// Each malformed variant: the reason expected (after `PATH:LINE[ [item N]]: `), and how many
/// alerts the rest of the record still gives.
const MALFORMED: &[(&str, &str, usize)] = &[
    (
        "aks-category-not-string.jsonl",
        "1: AKS record: category is missing or not a string",
        0,
    ),
    (
        "aks-log-not-json.jsonl",
        "1: AKS record.properties.log: invalid JSON: ",
        0,
    ),
    (
        "aks-log-number.jsonl",
        "1: AKS record.properties.log: neither a string nor an object",
        0,
    ),
    (
        "aks-no-properties-log.jsonl",
        "1: AKS record: kube-audit record without properties.log",
        0,
    ),
    (
        "aks-records-not-array.json",
        "1: records is not an array (neither a Firehose request body nor an Event Hubs message)",
        0,
    ),
    (
        "eks-audit-message-not-json.jsonl",
        "1: EKS message: the audit log stream's message is not a JSON object",
        0,
    ),
    (
        "eks-firehose-data-bad-json.json",
        "1: records[0].data[value 0]: invalid JSON: EOF while parsing",
        0,
    ),
    (
        "eks-firehose-record-without-data.json",
        "1 [item 1]: EKS records[1].data: missing, or not a string",
        1,
    ),
    (
        "eks-lambda-bad-base64.json",
        "1: EKS awslogs.data: data is not base64",
        0,
    ),
    (
        "eks-lambda-bad-gzip.json",
        "1: EKS awslogs.data: data is not valid gzip",
        0,
    ),
    (
        "eks-lambda-no-data.json",
        "1: EKS awslogs.data: missing, or not a string",
        0,
    ),
    (
        "eks-log-events-not-array.jsonl",
        "1: EKS logEvents is not an array",
        0,
    ),
    (
        "eks-message-not-string.jsonl",
        "1: EKS message: not a string",
        0,
    ),
    (
        "eks-no-log-events.jsonl",
        "1: EKS DATA_MESSAGE payload without logEvents",
        0,
    ),
    (
        "eks-s3-trailing-garbage.jsonl",
        "1 [item 1]: [value 1]: invalid JSON: EOF while parsing",
        1,
    ),
    (
        "eks-truncated-message.jsonl",
        "1: EKS message: invalid JSON: ",
        0,
    ),
    (
        "eks-unknown-message-type.jsonl",
        "1: EKS subscription payload: unknown messageType \"DATA_MESSAGE_V2\"",
        0,
    ),
    (
        "gke-labels-not-a-map.jsonl",
        "1: GKE LogEntry: invalid field: invalid type: string \"not-a-map\", expected a map",
        0,
    ),
    (
        "gke-no-method-name.jsonl",
        "1: GKE LogEntry: protoPayload has no methodName",
        0,
    ),
    (
        "gke-no-service-name.jsonl",
        "1: GKE LogEntry: protoPayload has no serviceName",
        0,
    ),
    (
        "unknown-shape.jsonl",
        "2: not an audit Event, nor an EKS, GKE or AKS record",
        0,
    ),
];

#[test]
fn every_malformed_variant_is_reported_with_its_location() {
    let dir = fixture("envelopes/malformed");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed: Vec<&str> = MALFORMED.iter().map(|m| m.0).collect();
    assert_eq!(files, listed, "one table row per fixture");
    for (file, reason, alerts) in MALFORMED {
        let path = dir.join(file);
        let path = path.to_str().unwrap();
        for extra in [&[][..], &["--no-prefilter"]] {
            let r = detect_path(path, extra).ok();
            let reported: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with(path)).collect();
            assert_eq!(reported.len(), 1, "{file} {extra:?}: {r:#?}");
            assert!(
                reported[0].starts_with(&format!("{path}:{reason}")),
                "{file} {extra:?}: {}",
                reported[0]
            );
            assert!(
                r.summary().contains(" 1 malformed,"),
                "{file}: {}",
                r.summary()
            );
            if file.starts_with("eks-truncated") {
                assert!(
                    reported[0].ends_with(" (CloudWatch Logs truncates events over 256 KB; a cut message is not valid JSON)"),
                    "{}",
                    reported[0]
                );
            }
            assert_eq!(r.alerts().len(), *alerts, "{file}: {r:#?}");
        }
    }
}

/// (line, format) of each alert.
fn alert_lines(r: &Run) -> Vec<(u64, Option<String>)> {
    r.alerts()
        .iter()
        .map(|a| {
            (
                a["source"]["line"].as_u64().unwrap(),
                a["source"]["format"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn wrapped_lines_after_a_native_or_unknown_first_line_are_unwrapped() {
    // The input is classified by its first record; a native or unrecognised one used to send
    // every later line through the needle prefilter, which cannot see into a GKE entry's
    // fields or a compressed CloudWatch payload: those alerts were lost. The needle scan
    // now stops at every line that does not start like a native Event.
    let dir = tempfile::tempdir().unwrap();
    // The API server's order starts with the kind; serde_json sorts the keys.
    let sorted = crate::util::event(serde_json::json!({})).to_string();
    let kindless = crate::util::event(serde_json::json!({"kind": null})).to_string();
    let native = format!(r#"{{"kind":"Event",{}"#, &kindless[1..]);
    // The same Event as other JSON writers space it.
    let spaced = native.replacen(r#"{"kind":"Event","#, r#"{ "kind": "Event", "#, 1);
    let header = r#"{"note":"export header"}"#.to_string();
    let read = |name: &str| std::fs::read_to_string(envelope(name)).unwrap();
    for (wrapped, format) in [
        (read("gke-logentries.jsonl"), "gke"),
        (read("eks-lambda.json"), "eks"),
    ] {
        let alone = detect_path(&write(dir.path(), "alone.jsonl", &wrapped), &[]).ok();
        let want_wrapped: Vec<(u64, Option<String>)> = alert_lines(&alone)
            .into_iter()
            .map(|(l, f)| (l + 1, f))
            .collect();
        assert!(!want_wrapped.is_empty());
        assert!(want_wrapped.iter().all(|w| w.1.as_deref() == Some(format)));
        for (first, alerts_first) in [
            (&native, true),
            (&spaced, true),
            (&sorted, true),
            (&header, false),
        ] {
            let path = write(dir.path(), "mixed.jsonl", format!("{first}\n{wrapped}"));
            let mut want = want_wrapped.clone();
            if alerts_first {
                want.insert(0, (1, None));
            }
            for extra in [&[][..], &["--no-prefilter"]] {
                let r = detect_path(&path, extra).ok();
                assert_eq!(
                    alert_lines(&r),
                    want,
                    "{format} after {first:.30} {extra:?}: {r:#?}"
                );
                // Without the prefilter every line is parsed: the header is reported.
                let bad = if !alerts_first && !extra.is_empty() {
                    " 1 malformed,"
                } else {
                    " 0 malformed,"
                };
                assert!(
                    r.summary().contains(bad),
                    "{format} after {first:.30} {extra:?}: {}",
                    r.stderr
                );
            }
        }
    }
}

#[test]
fn event_hubs_body_starting_with_a_metric_record_is_read_as_aks() {
    // An `AllMetrics` record (no category, no properties, no data) first used to make the
    // body a Firehose one: "EKS records[0].data: missing", and the audit records were lost.
    let dir = tempfile::tempdir().unwrap();
    let mut body: Value =
        serde_json::from_str(&std::fs::read_to_string(envelope("aks-eventhub.json")).unwrap())
            .unwrap();
    let metric = serde_json::json!({
        "count": 1, "total": 1, "minimum": 1, "maximum": 1, "average": 1,
        "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
        "time": "2026-01-10T12:00:00Z", "metricName": "apiserver_cpu_usage_percentage", "timeGrain": "PT1M"
    });
    let plain = detect_path(&envelope("aks-eventhub.json"), &[]).ok();
    let want: Vec<u64> = plain
        .alerts()
        .iter()
        .map(|a| a["source"]["item"].as_u64().unwrap() + 1)
        .collect();
    assert!(!want.is_empty());
    body["records"].as_array_mut().unwrap().insert(0, metric);
    let path = write(dir.path(), "hub.json", body.to_string());
    let r = detect_path(&path, &[]).ok();
    let got: Vec<u64> = r
        .alerts()
        .iter()
        .map(|a| {
            assert_eq!(a["source"]["format"], "aks");
            a["source"]["item"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(got, want, "{r:#?}");
    assert!(r.summary().contains(" 0 malformed,"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("skipped 1 record without an audit event: AKS: metric records (AllMetrics, not kube-audit)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_records_decoded_payloads_share_one_cap() {
    // Each payload fits the cap, but a record's pieces are all kept until it is done: a small
    // body of many compressed payloads could take gigabytes. The payloads decode to 2469, 236
    // and 1571 bytes: with a 4000-byte cap the third is reported, with its place.
    let path = envelope("eks-firehose-http.json");
    let all = detect_path(&path, &[]).ok();
    assert_eq!(all.alerts().len(), 2);
    assert!(all.summary().contains(" 0 malformed,"), "{}", all.stderr);
    let r = detect_path(&path, &["--max-line-bytes", "4000"]).ok();
    let items: Vec<u64> = r
        .alerts()
        .iter()
        .map(|a| a["source"]["item"].as_u64().unwrap())
        .collect();
    assert_eq!(items, vec![1], "{r:#?}");
    assert!(
        r.stderr.contains(
            "eks-firehose-http.json:1 [item 3]: EKS records[2].data: the record's decoded \
             payloads are over the 4000 byte total cap (--max-line-bytes)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.summary().contains(" 1 malformed,"), "{}", r.stderr);
}

#[test]
fn forced_k8s_reports_wrapped_lines_the_prefilter_cannot_see_into() {
    // A compressed payload never holds the needle: under k8s it used to be "skipped by the
    // prefilter", while --help says other shapes are reported as malformed.
    let dir = tempfile::tempdir().unwrap();
    let lambda = std::fs::read_to_string(envelope("eks-lambda.json")).unwrap();
    let header = r#"{"note":"export header"}"#;
    let path = write(dir.path(), "l.jsonl", format!("{header}\n{lambda}"));
    let r = detect_path(&path, &["--input-format", "k8s"]).ok();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(
            "l.jsonl:2: a managed cluster's record (EKS, GKE or AKS), not a native audit Event \
             (--input-format k8s; use auto)"
        ),
        "{}",
        r.stderr
    );
    // The unknown line is skipped by the prefilter, as --help says.
    assert!(
        r.summary()
            .contains("(1 lines skipped by the prefilter), 1 malformed,"),
        "{}",
        r.summary()
    );
}

#[test]
fn a_firehose_s3_object_over_the_cap_is_one_malformed_record() {
    // Firehose writes its records back to back without newlines: the object is one "line",
    // as the README's limits say.
    let r = detect_path(&envelope("eks-firehose-s3.gz"), &["--max-line-bytes", "1K"]).ok();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(
            "eks-firehose-s3.gz:1: line is 5855 bytes, over the 1024 byte cap (--max-line-bytes)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.summary().contains(" 1 malformed,"), "{}", r.summary());
}
