//! Property tests of managed clusters' wrappers: any native Event, wrapped as EKS, GKE or AKS
//! export it, and unwrapped by the engine, gives the same alerts as the native Event.
//!
//! EKS and AKS carry the Event itself (as a JSON string, or gzip+base64 of a payload holding
//! it), so the alerts must be identical but for the cluster, which the EKS log group names.
//! GKE rewrites the Event into a LogEntry; what that loses is documented and compared
//! accordingly: no group list (the alert says the groups are unknown), no request URI (dry
//! runs are a label), HTTP codes become google.rpc codes (so a 201 comes back as a 200).

use audit::framing::{LineChunker, ValueChunker};
use audit::{HeadShape, InputFormat};
use base64::Engine as _;
use detect::clusterrole_pod_write::RuleOptions;
use detect::engine::Finding;
use detect::{Config, Engine, EngineOptions, Suppressions};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::io::Write;

fn engine(prefilter: bool, envelopes: bool) -> Engine {
    Engine::new(
        EngineOptions {
            rule: RuleOptions::default(),
            prefilter,
            max_record: 1 << 20,
            stateful: false,
            input_format: InputFormat::Auto,
            envelopes,
        },
        Suppressions::new(&Config::default()),
    )
}

/// The alerts (as JSON values) the engine finds in `input`, and the formats they came from.
fn alerts(input: &[u8], prefilter: bool) -> (Vec<Value>, Vec<Option<&'static str>>, u64) {
    // As `kubeward detect` decides it: by the input's first record.
    let envelopes = audit::envelope::sniff_head(input) == HeadShape::Envelope;
    let e = engine(prefilter, envelopes);
    let mut out = Vec::new();
    let mut formats = Vec::new();
    let mut malformed = 0;
    // ...and the framing too: a pretty-printed document is read value by value.
    let chunks: Box<dyn Iterator<Item = std::io::Result<audit::Chunk>>> =
        match audit::framing::sniff(input) {
            audit::Framing::Lines => {
                Box::new(LineChunker::new(input, Vec::new(), 1 << 16, 1 << 20))
            }
            audit::Framing::Values => {
                Box::new(ValueChunker::new(input, Vec::new(), 1 << 16, 1 << 20))
            }
        };
    for c in chunks {
        let rep = e.process(&c.expect("memory"));
        for f in rep.findings {
            match f {
                Finding::Alert { alert, format, .. } => {
                    out.push(serde_json::to_value(&alert).expect("serializes"));
                    formats.push(format);
                }
                Finding::Malformed { .. } => malformed += 1,
                Finding::Change { .. } => unreachable!("stateless"),
            }
        }
    }
    (out, formats, malformed)
}

// ---------------------------------------------------------------------------------------------
// Generated native Events
// ---------------------------------------------------------------------------------------------

const RBAC: &str = "rbac.authorization.k8s.io";

fn rule_json(i: usize) -> Value {
    match i {
        0 => json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "create"]}),
        1 => json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        2 => json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}),
        3 => json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}),
        4 => json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}),
        5 => {
            json!({"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["update"]})
        }
        _ => json!({"apiGroups": [""], "resources": ["*/exec"], "verbs": ["get"]}),
    }
}

#[derive(Debug, Clone)]
struct Ev {
    verb: &'static str,
    resource: &'static str,
    stage: Option<&'static str>,
    code: Option<i64>,
    dry_run: bool,
    body: u8,
    rules: Vec<usize>,
    user: String,
    id: u32,
}

impl Ev {
    fn name(&self) -> String {
        format!("role-{}", self.id)
    }

    fn role(&self) -> Value {
        let rules: Vec<Value> = self.rules.iter().map(|&i| rule_json(i)).collect();
        json!({"kind": "ClusterRole", "apiVersion": format!("{RBAC}/v1"),
               "metadata": {"name": self.name()}, "rules": rules})
    }

    fn native(&self) -> Value {
        let mut uri = format!("/apis/{RBAC}/v1/{}", self.resource);
        if self.dry_run {
            uri.push_str("?dryRun=All");
        }
        let mut ev = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("id-{}", self.id), "requestURI": uri, "verb": self.verb,
            "user": {"username": self.user, "groups": ["system:authenticated", "dev"]},
            "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.31 \"quoted\" \\ é",
            "objectRef": {"resource": self.resource, "name": self.name(), "apiGroup": RBAC, "apiVersion": "v1"},
            "stageTimestamp": "2026-01-10T12:00:00.130001Z",
            "annotations": {"authorization.k8s.io/decision": "allow"},
        });
        if let Some(s) = self.stage {
            ev["stage"] = json!(s);
        }
        if let Some(c) = self.code {
            ev["responseStatus"] = json!({"metadata": {}, "code": c});
        }
        match self.body {
            0 => ev["requestObject"] = self.role(),
            1 => ev["responseObject"] = self.role(),
            2 => {
                ev["requestObject"] = self.role();
                ev["responseObject"] = self.role();
            }
            3 => {
                let rules: Vec<Value> = self.rules.iter().map(|&i| rule_json(i)).collect();
                ev["requestObject"] = json!({ "rules": rules });
            }
            _ => {}
        }
        ev
    }

    /// The same request as GKE logs it.
    fn gke(&self) -> Value {
        let typed = |mut v: Value| {
            if let Value::Object(m) = &mut v {
                m.remove("kind");
                m.remove("apiVersion");
                m.insert("@type".into(), json!(format!("{RBAC}/v1.ClusterRole")));
            }
            v
        };
        let rpc = match self.code {
            Some(c) if (200..300).contains(&c) => 0,
            Some(403) => 7,
            Some(404) => 5,
            Some(409) => 6,
            _ => 13,
        };
        let mut pp = json!({
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "k8s.io",
            "methodName": format!("io.k8s.authorization.rbac.v1.{}.{}", self.resource, self.verb),
            "resourceName": format!("{RBAC}/v1/{}/{}", self.resource, self.name()),
            "authenticationInfo": {"principalEmail": self.user},
            "requestMetadata": {"callerIp": "10.0.0.1", "callerSuppliedUserAgent": "kubectl/v1.31 \"quoted\" \\ é"},
            "status": {"code": rpc},
        });
        let native = self.native();
        if let Some(r) = native.get("requestObject") {
            pp["request"] = if self.body == 3 {
                r.clone()
            } else {
                typed(r.clone())
            };
        }
        if let Some(r) = native.get("responseObject") {
            pp["response"] = typed(r.clone());
        }
        let mut labels = json!({"authorization.k8s.io/decision": "allow"});
        if self.dry_run {
            labels["command.gke.io/dryRun"] = json!("true");
        }
        let operation = match self.stage {
            Some("ResponseComplete") => {
                json!({"id": format!("id-{}", self.id), "first": true, "last": true})
            }
            Some(_) => json!({"id": format!("id-{}", self.id), "first": true, "last": false}),
            None => json!({"id": format!("id-{}", self.id)}),
        };
        json!({
            "insertId": "x", "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "labels": labels, "operation": operation, "protoPayload": pp,
            "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-1"}},
            "timestamp": "2026-01-10T12:00:00.130001Z",
        })
    }
}

fn arb_ev() -> impl Strategy<Value = Ev> {
    (
        prop::sample::select(&["create", "update", "patch", "get", "delete"][..]),
        prop::sample::select(&["clusterroles", "clusterroles", "roles"][..]),
        prop::sample::select(&[Some("ResponseComplete"), Some("ResponseStarted"), None][..]),
        prop::sample::select(&[Some(200), Some(201), Some(403), Some(409)][..]),
        prop::bool::weighted(0.2),
        0u8..5,
        prop::collection::vec(0usize..7, 0..4),
        // Users with characters that need escaping at every level of wrapping.
        prop::sample::select(
            &[
                "alice@example.com",
                "bob \"the\" \\admin\\",
                "système:ü",
                "a\u{1}b\n",
            ][..],
        ),
        0u32..1000,
    )
        .prop_map(
            |(verb, resource, stage, code, dry_run, body, rules, user, id)| Ev {
                verb,
                resource,
                stage,
                code,
                dry_run,
                body,
                rules,
                user: user.to_string(),
                id,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Wrappers
// ---------------------------------------------------------------------------------------------

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn payload(events: &[Value]) -> Value {
    json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/aws/eks/prod/cluster",
           "logStream": "kube-apiserver-audit-0123abcd", "subscriptionFilters": ["f"],
           "logEvents": events.iter().enumerate().map(|(i, e)| json!({"id": i.to_string(), "timestamp": i, "message": e.to_string()})).collect::<Vec<_>>()})
}

fn aks(e: &Value, as_object: bool) -> Value {
    json!({"time": "t", "resourceId": "/SUBSCRIPTIONS/S/MANAGEDCLUSTERS/AKS-1", "category": "kube-audit",
           "properties": {"log": if as_object { e.clone() } else { json!(e.to_string()) }}})
}

/// Every way of wrapping `events` that carries the Event itself: (name, bytes, cluster).
fn wrappings(events: &[Value]) -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let lines = |vals: Vec<Value>| -> Vec<u8> {
        vals.iter()
            .flat_map(|v| format!("{v}\n").into_bytes())
            .collect()
    };
    let p = payload(events).to_string();
    vec![
        ("eks cloudwatch lines", lines(events.iter().map(|e| json!({"timestamp": 1, "message": e.to_string(), "ingestionTime": 2})).collect()), None),
        ("eks filter-log-events", serde_json::to_vec_pretty(&json!({"events": events.iter().map(|e| json!({"logStreamName": "kube-apiserver-audit-0a", "timestamp": 1, "message": e.to_string()})).collect::<Vec<_>>(), "searchedLogStreams": []})).unwrap(), None),
        ("eks subscription", format!("{p}\n").into_bytes(), Some("prod")),
        ("eks lambda", lines(vec![json!({"awslogs": {"data": b64(&gz(p.as_bytes()))}})]), Some("prod")),
        ("eks firehose http", lines(vec![json!({"requestId": "r", "timestamp": 1, "records": [{"data": b64(&gz(p.as_bytes()))}, {"data": b64(p.as_bytes())}]})]), Some("prod")),
        ("eks firehose s3", format!("{p}{p}").into_bytes(), Some("prod")),
        ("aks storage", lines(events.iter().map(|e| aks(e, false)).collect()), Some("AKS-1")),
        ("aks object", lines(events.iter().map(|e| aks(e, true)).collect()), Some("AKS-1")),
        ("aks event hubs", lines(vec![json!({"records": events.iter().map(|e| aks(e, false)).collect::<Vec<_>>()})]), Some("AKS-1")),
    ]
}

fn without_cluster(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("cluster");
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn eks_and_aks_wrappers_give_the_native_alerts(evs in prop::collection::vec(arb_ev(), 1..4), prefilter in any::<bool>()) {
        let natives: Vec<Value> = evs.iter().map(Ev::native).collect();
        let native_input: Vec<u8> = natives.iter().flat_map(|v| format!("{v}\n").into_bytes()).collect();
        let (want, _, bad) = alerts(&native_input, prefilter);
        prop_assert_eq!(bad, 0);
        for (name, bytes, cluster) in wrappings(&natives) {
            let (got, formats, bad) = alerts(&bytes, prefilter);
            prop_assert_eq!(bad, 0, "{}", name);
            // The Firehose bodies here hold the payload twice: every alert twice.
            let times = if name == "eks firehose s3" || name == "eks firehose http" { 2 } else { 1 };
            prop_assert_eq!(got.len(), want.len() * times, "{}", name);
            for (i, g) in got.iter().enumerate() {
                let w = &want[i % want.len().max(1)];
                prop_assert_eq!(g["cluster"].as_str(), cluster, "{}", name);
                prop_assert_eq!(without_cluster(g.clone()), without_cluster(w.clone()), "{}", name);
            }
            let prefix = &name[..3];
            prop_assert!(formats.iter().all(|f| *f == Some(prefix)), "{} {:?}", name, formats);
        }
    }

    #[test]
    fn gke_log_entries_give_the_native_alerts(evs in prop::collection::vec(arb_ev(), 1..4), prefilter in any::<bool>()) {
        let natives: Vec<Value> = evs.iter().map(Ev::native).collect();
        let native_input: Vec<u8> = natives.iter().flat_map(|v| format!("{v}\n").into_bytes()).collect();
        let (want, _, _) = alerts(&native_input, prefilter);
        let entries: Vec<Value> = evs.iter().map(Ev::gke).collect();
        let input: Vec<u8> = entries.iter().flat_map(|v| format!("{v}\n").into_bytes()).collect();
        let (got, formats, bad) = alerts(&input, prefilter);
        prop_assert_eq!(bad, 0);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            for k in ["rule_id", "severity", "audit_id", "time", "verb", "role", "source_ips",
                      "user_agent", "stage", "rules_source", "offending_rules", "grants", "why",
                      "least_privilege_rules", "investigation", "resolution"] {
                prop_assert_eq!(&g[k], &w[k], "{}", k);
            }
            prop_assert_eq!(&g["actor"]["username"], &w["actor"]["username"]);
            prop_assert_eq!(&g["actor"]["groups"], &Value::Null);
            prop_assert_eq!(&g["cluster"], &json!("gke-1"));
            prop_assert_eq!(&g["request_uri"], &Value::Null);
            prop_assert_eq!(&g["response_code"], &json!(200));
            let notes = g["notes"].to_string();
            prop_assert!(notes.contains("GKE audit logs record no group list"), "{}", notes);
        }
        prop_assert!(formats.iter().all(|f| *f == Some("gke")));
    }
}

#[test]
fn a_pretty_gke_array_reads_like_lines() {
    // `gcloud logging read --format json` prints an array: the value chunker hands each
    // entry to the engine as a record; the same alerts as one entry per line.
    let ev = Ev {
        verb: "create",
        resource: "clusterroles",
        stage: Some("ResponseComplete"),
        code: Some(201),
        dry_run: false,
        body: 2,
        rules: vec![0],
        user: "alice@example.com".into(),
        id: 7,
    };
    let entries = vec![ev.gke(), ev.gke()];
    let pretty = serde_json::to_vec_pretty(&entries).unwrap();
    let e = engine(
        true,
        audit::envelope::sniff_head(&pretty) == HeadShape::Envelope,
    );
    let chunks = ValueChunker::new(&pretty[..], Vec::new(), 1 << 16, 1 << 20);
    let mut n = 0;
    for c in chunks {
        for f in e.process(&c.unwrap()).findings {
            assert!(
                matches!(
                    f,
                    Finding::Alert {
                        format: Some("gke"),
                        ..
                    }
                ),
                "{f:?}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 2);
}

#[test]
fn wrappers_are_not_vacuous() {
    // The properties compare alert lists; here every wrapping of an alerting Event alerts.
    let ev = Ev {
        verb: "create",
        resource: "clusterroles",
        stage: Some("ResponseComplete"),
        code: Some(201),
        dry_run: false,
        body: 0,
        rules: vec![2],
        user: "bob \"the\" \\admin\\".into(),
        id: 1,
    };
    let native = ev.native();
    for (name, bytes, _) in wrappings(std::slice::from_ref(&native)) {
        for prefilter in [true, false] {
            let (got, _, bad) = alerts(&bytes, prefilter);
            assert_eq!(bad, 0, "{name}");
            assert!(!got.is_empty(), "{name} prefilter={prefilter}");
            assert_eq!(
                got[0]["actor"]["username"], "bob \"the\" \\admin\\",
                "{name}"
            );
        }
    }
    let gke = format!("{}\n", ev.gke());
    assert_eq!(alerts(gke.as_bytes(), true).0.len(), 1);
}
