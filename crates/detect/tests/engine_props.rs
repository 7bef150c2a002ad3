//! Property tests of the scan engine.
//!
//! - The prefilter is only an optimisation: with it on and off, the same alerts come out, at
//!   the same lines, for inputs mixing ClusterRole writes (alerting or not), pod reads, decoys
//!   that mention `clusterroles` elsewhere, EventLists and garbage.
//! - The alerts are the ones a plain reading of the rule predicts for the generated events.
//! - Chunk size does not change the alerts.
//! - Arbitrary lines never make the engine panic, and every line is counted.

use audit::framing::LineChunker;
use audit::ChunkKind;
use detect::clusterrole_pod_write::RuleOptions;
use detect::engine::Finding;
use detect::{Config, Engine, EngineOptions, Suppressions};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Running the engine
// ---------------------------------------------------------------------------------------------

fn engine(prefilter: bool) -> Engine {
    Engine::new(
        EngineOptions {
            rule: RuleOptions::default(),
            prefilter,
            max_record: 1 << 20,
            stateful: false,
            input_format: audit::InputFormat::Auto,
            envelopes: false,
        },
        Suppressions::new(&Config::default()),
    )
}

/// One alert as compared: absolute 0-based line, EventList item, the alert's JSON.
type Seen = (u64, Option<usize>, String);

struct Run {
    alerts: Vec<Seen>,
    lines: u64,
}

fn run(engine: &Engine, input: &[u8], chunk_size: usize) -> Run {
    let mut alerts = Vec::new();
    let mut base = 0u64;
    for c in LineChunker::new(input, Vec::new(), chunk_size, 1 << 20) {
        let c = c.expect("reading from memory cannot fail");
        assert!(matches!(
            c.kind,
            ChunkKind::Lines | ChunkKind::OversizeLine { .. }
        ));
        let rep = engine.process(&c);
        for f in rep.findings {
            match f {
                Finding::Alert {
                    rel_line,
                    item,
                    alert,
                    ..
                } => {
                    let line = base + rel_line;
                    assert!(
                        line < base + rep.lines,
                        "alert at line {line} outside its chunk"
                    );
                    alerts.push((
                        line,
                        item,
                        serde_json::to_string(&alert).expect("alerts serialize"),
                    ));
                }
                Finding::Change { .. } => panic!("a stateless engine hands out no changes"),
                Finding::Malformed { rel_line, .. } => {
                    assert!(
                        rel_line < rep.lines.max(1),
                        "malformed record at line {rel_line} outside its chunk"
                    );
                }
            }
        }
        base += rep.lines;
    }
    Run {
        alerts,
        lines: base,
    }
}

fn expected_lines(input: &[u8]) -> u64 {
    let nl = input.iter().filter(|&&b| b == b'\n').count() as u64;
    nl + u64::from(!input.is_empty() && !input.ends_with(b"\n"))
}

// ---------------------------------------------------------------------------------------------
// Generated events
// ---------------------------------------------------------------------------------------------

const RBAC: &str = "rbac.authorization.k8s.io";

/// Rules, some granting pod write, some not.
fn rule_json(i: usize) -> Value {
    match i {
        0 => {
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create", "delete"]})
        }
        1 => json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        2 => json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}),
        3 => {
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]})
        }
        4 => json!({"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["*"]}),
        5 => json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}),
        6 => json!({"nonResourceURLs": ["/metrics", "/healthz"], "verbs": ["*"]}),
        7 => {
            json!({"apiGroups": [""], "resources": ["pods"], "resourceNames": ["debug-shell"], "verbs": ["update"]})
        }
        8 => json!({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["create"]}),
        9 => json!({"apiGroups": [""], "resources": ["*/exec"], "verbs": ["get"]}),
        10 => json!({"apiGroups": [""], "resources": ["pods"], "verbs": null}),
        _ => json!({"apiGroups": [""], "resources": ["pods"], "verbs": "create"}), // not a PolicyRule
    }
}
const RULES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// requestObject is the whole ClusterRole.
    Request,
    /// responseObject is the whole ClusterRole (and the request a stub).
    Response,
    /// Both carry it.
    Both,
    /// The body was not logged (level Metadata).
    None,
    /// A merge patch `{"rules": [...]}`.
    MergePatch,
    /// A JSON patch adding each rule.
    JsonPatch,
}

#[derive(Debug, Clone)]
struct RoleWrite {
    verb: &'static str,
    stage: Option<&'static str>,
    code: Option<i64>,
    dry_run: bool,
    group: Option<&'static str>,
    body: Body,
    rules: Vec<usize>,
    user: &'static str,
    id: u32,
}

impl RoleWrite {
    fn to_json(&self) -> Value {
        let name = format!("role-{}", self.id);
        let mut uri = format!("/apis/{RBAC}/v1/clusterroles");
        if self.verb != "create" {
            uri.push('/');
            uri.push_str(&name);
        }
        if self.dry_run {
            uri.push_str("?fieldManager=kubectl&dryRun=All");
        }
        let rules: Vec<Value> = self.rules.iter().map(|&i| rule_json(i)).collect();
        let role = json!({"kind": "ClusterRole", "apiVersion": format!("{RBAC}/v1"), "metadata": {"name": name}, "rules": rules});
        let mut oref = json!({"resource": "clusterroles", "name": name, "apiVersion": "v1"});
        if let Some(g) = self.group {
            oref["apiGroup"] = json!(g);
        }
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": if self.body == Body::None { "Metadata" } else { "RequestResponse" },
            "auditID": format!("00000000-0000-0000-0000-{:012}", self.id),
            "requestURI": uri,
            "verb": self.verb,
            "user": {"username": self.user, "groups": ["system:authenticated"]},
            "sourceIPs": ["10.0.0.1"],
            "userAgent": "kubectl/v1.29.4",
            "objectRef": oref,
            "requestReceivedTimestamp": "2025-06-01T00:00:00.000001Z",
            "stageTimestamp": "2025-06-01T00:00:00.000002Z",
        });
        if let Some(s) = self.stage {
            ev["stage"] = json!(s);
        }
        if let Some(c) = self.code {
            ev["responseStatus"] = json!({"metadata": {}, "code": c});
        }
        match self.body {
            Body::Request => ev["requestObject"] = role,
            Body::Response => {
                ev["requestObject"] = json!({"metadata": {"labels": {"x": "y"}}});
                ev["responseObject"] = role;
            }
            Body::Both => {
                ev["requestObject"] = role.clone();
                ev["responseObject"] = role;
            }
            Body::None => {}
            Body::MergePatch => ev["requestObject"] = json!({"rules": rules}),
            Body::JsonPatch => {
                ev["requestObject"] = Value::Array(
                    rules
                        .iter()
                        .map(|r| json!({"op": "add", "path": "/rules/-", "value": r}))
                        .collect(),
                )
            }
        }
        ev
    }

    /// Whether the rule must alert on this event, read straight from its definition.
    fn should_alert(&self) -> bool {
        let code_ok = self.code.is_some_and(|c| (200..300).contains(&c));
        let completed = match self.stage {
            Some(s) => s == "ResponseComplete",
            None => code_ok,
        };
        let group_ok = matches!(self.group, Some(RBAC) | Some("") | None);
        let rules_seen = match self.body {
            Body::Request | Body::Response | Body::Both => true,
            Body::MergePatch | Body::JsonPatch => self.verb == "patch",
            Body::None => false,
        };
        let parsed: Vec<rbac::PolicyRule> = self
            .rules
            .iter()
            .filter_map(|&i| serde_json::from_value(rule_json(i)).ok())
            .collect();
        let grants = !rbac::role_pod_write(&parsed, RuleOptions::default().pod_write).is_empty();
        matches!(self.verb, "create" | "update" | "patch")
            && completed
            && code_ok
            && !self.dry_run
            && group_ok
            && rules_seen
            && grants
    }
}

fn arb_role_write() -> impl Strategy<Value = RoleWrite> {
    (
        prop::sample::select(&["create", "update", "patch", "patch", "get", "delete"][..]),
        prop::sample::select(
            &[
                Some("ResponseComplete"),
                Some("ResponseComplete"),
                Some("RequestReceived"),
                Some("ResponseStarted"),
                None,
            ][..],
        ),
        prop::sample::select(&[Some(200), Some(201), Some(403), Some(404), Some(409), None][..]),
        prop::bool::weighted(0.15),
        prop::sample::select(&[Some(RBAC), Some(RBAC), None, Some(""), Some("example.com")][..]),
        prop::sample::select(
            &[
                Body::Request,
                Body::Response,
                Body::Both,
                Body::None,
                Body::MergePatch,
                Body::JsonPatch,
            ][..],
        ),
        prop::collection::vec(0..RULES, 0..4),
        prop::sample::select(
            &[
                "alice@example.com",
                "system:apiserver",
                "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                "system:serviceaccount:ci:deployer",
            ][..],
        ),
        0u32..1_000_000,
    )
        .prop_map(
            |(verb, stage, code, dry_run, group, body, rules, user, id)| RoleWrite {
                verb,
                stage,
                code,
                dry_run,
                group,
                body,
                rules,
                user,
                id,
            },
        )
}

/// One line of input and, for each event in it that must alert, its EventList item.
#[derive(Debug, Clone)]
struct Line {
    text: Vec<u8>,
    alerts: Vec<Option<usize>>,
}

fn pod_get(i: u32) -> String {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": format!("11111111-0000-0000-0000-{i:012}"), "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/default/pods/web-{i}"), "verb": "get",
        "user": {"username": "system:node:ip-10-0-0-12.ec2.internal", "groups": ["system:nodes"]},
        "objectRef": {"resource": "pods", "namespace": "default", "name": format!("web-{i}"), "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "stageTimestamp": "2025-06-01T00:00:00.000002Z",
    })
    .to_string()
}

/// Mentions `clusterroles` without being a ClusterRole write.
fn decoy(i: u32) -> String {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
        "auditID": format!("22222222-0000-0000-0000-{i:012}"), "stage": "ResponseComplete",
        "requestURI": "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "verb": "create",
        "user": {"username": "alice@example.com"},
        "objectRef": {"resource": "selfsubjectaccessreviews", "apiGroup": "authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "create", "group": RBAC, "resource": "clusterroles"}}},
    })
    .to_string()
}

fn arb_line() -> impl Strategy<Value = Line> {
    let garbage = prop_oneof![
        Just(String::new()),
        Just("   \t".to_string()),
        Just("{".to_string()),
        Just("not json at all".to_string()),
        Just(
            "{\"kind\":\"Event\",\"verb\":\"create\",\"objectRef\":{\"resource\":\"clusterroles\"}"
                .to_string()
        ),
        Just("[{\"clusterroles\":1}]".to_string()),
        Just("{\"kind\":\"Pod\",\"clusterroles\":true}".to_string()),
        "[ -~]{0,60}",
    ];
    prop_oneof![
        // A ClusterRole write on its own line.
        4 => (arb_role_write(), any::<bool>()).prop_map(|(w, crlf)| {
            let mut text = w.to_json().to_string().into_bytes();
            if crlf {
                text.push(b'\r');
            }
            Line { alerts: if w.should_alert() { vec![None] } else { vec![] }, text }
        }),
        // A cut-off ClusterRole write.
        1 => (arb_role_write(), any::<prop::sample::Index>()).prop_map(|(w, i)| {
            let t = w.to_json().to_string().into_bytes();
            let cut = i.index(t.len());
            Line { text: t[..cut].to_vec(), alerts: vec![] }
        }),
        // A webhook batch: an EventList of writes and reads.
        1 => prop::collection::vec(prop_oneof![arb_role_write().prop_map(Some), (0u32..1000).prop_map(|_| None)], 1..4).prop_map(|items| {
            let mut alerts = Vec::new();
            let values: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(k, it)| match it {
                    Some(w) => {
                        if w.should_alert() {
                            alerts.push(Some(k));
                        }
                        w.to_json()
                    }
                    None => serde_json::from_str(&pod_get(k as u32)).unwrap(),
                })
                .collect();
            let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": values});
            Line { text: list.to_string().into_bytes(), alerts }
        }),
        4 => (0u32..100_000).prop_map(|i| Line { text: pod_get(i).into_bytes(), alerts: vec![] }),
        1 => (0u32..100_000).prop_map(|i| Line { text: decoy(i).into_bytes(), alerts: vec![] }),
        2 => garbage.prop_map(|g| Line { text: g.into_bytes(), alerts: vec![] }),
    ]
}

fn join(lines: &[Line], trailing_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.extend_from_slice(&l.text);
        if i + 1 < lines.len() || trailing_newline {
            out.push(b'\n');
        }
    }
    out
}

/// The `(line, item)` of every alert the generated lines must produce, in order.
fn expected_alerts(lines: &[Line]) -> Vec<(u64, Option<usize>)> {
    lines
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.alerts.iter().map(move |&item| (i as u64, item)))
        .collect()
}

fn positions(alerts: &[Seen]) -> Vec<(u64, Option<usize>)> {
    alerts.iter().map(|(l, i, _)| (*l, *i)).collect()
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The prefilter changes nothing but speed; the alerts are the predicted ones.
    #[test]
    fn prefilter_on_and_off_agree(
        lines in prop::collection::vec(arb_line(), 0..60),
        trailing in any::<bool>(),
        chunk in 0usize..16_384,
    ) {
        let input = join(&lines, trailing);
        let on = run(&engine(true), &input, chunk);
        let off = run(&engine(false), &input, chunk);
        prop_assert_eq!(on.lines, expected_lines(&input));
        prop_assert_eq!(off.lines, expected_lines(&input));
        prop_assert_eq!(&on.alerts, &off.alerts);
        prop_assert_eq!(positions(&on.alerts), expected_alerts(&lines));
    }

    /// Chunk boundaries do not move or change alerts.
    #[test]
    fn chunking_does_not_change_alerts(
        lines in prop::collection::vec(arb_line(), 0..60),
        chunk in 0usize..8192,
        prefilter in any::<bool>(),
    ) {
        let input = join(&lines, true);
        let e = engine(prefilter);
        let small = run(&e, &input, chunk);
        let whole = run(&e, &input, input.len() + 1);
        prop_assert_eq!(small.alerts, whole.alerts);
    }
}

fn arb_junk_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300),
        // Mutated ClusterRole writes: a few bytes overwritten.
        (arb_role_write(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5)).prop_map(|(w, flips)| {
            let mut t = w.to_json().to_string().into_bytes();
            for (i, b) in flips {
                let at = i.index(t.len());
                t[at] = if b == b'\n' { b' ' } else { b };
            }
            t
        }),
        // Rules of any JSON shape in an otherwise alerting event.
        (prop::sample::select(&["null", "1", "\"x\"", "[]", "{}", "[null]", "[1]", "[{\"verbs\":1}]", "[{\"verbs\":[\"*\"],\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"resourceNames\":null}]", "{\"$patch\":\"replace\"}", "[{\"$patch\":\"replace\"}]"][..]),
         prop::sample::select(&["requestObject", "responseObject"][..]),
         prop::sample::select(&["create", "patch"][..]))
            .prop_map(|(rules, field, verb)| {
                format!(
                    "{{\"kind\":\"Event\",\"auditID\":\"x\",\"stage\":\"ResponseComplete\",\"verb\":\"{verb}\",\"objectRef\":{{\"resource\":\"clusterroles\",\"apiGroup\":\"{RBAC}\"}},\"responseStatus\":{{\"code\":200}},\"{field}\":{{\"kind\":\"ClusterRole\",\"rules\":{rules}}}}}"
                )
                .into_bytes()
            }),
        // JSON patches of any shape.
        prop::sample::select(&["[]", "[{}]", "[{\"op\":\"add\"}]", "[{\"op\":\"add\",\"path\":\"/rules\",\"value\":null}]", "[{\"op\":\"replace\",\"path\":\"/rules/0/verbs\",\"value\":[\"*\"]}]", "[{\"op\":\"add\",\"path\":\"/rules/-\",\"value\":{\"verbs\":[\"*\"],\"apiGroups\":[\"*\"],\"resources\":[\"*\"]}}]", "[{\"op\":\"add\",\"path\":\"/rules/99999999999999999999\",\"value\":{}}]", "[1,2]"][..])
            .prop_map(|p| format!("{{\"kind\":\"Event\",\"auditID\":\"y\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\",\"objectRef\":{{\"resource\":\"clusterroles\"}},\"responseStatus\":{{\"code\":200}},\"requestObject\":{p}}}").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the lines, the engine neither panics nor loses count, in both modes, and the
    /// two modes agree on alerts.
    #[test]
    fn engine_never_panics(lines in prop::collection::vec(arb_junk_line(), 0..20), chunk in 0usize..4096) {
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l);
            input.push(b'\n');
        }
        let on = run(&engine(true), &input, chunk);
        let off = run(&engine(false), &input, chunk);
        prop_assert_eq!(on.lines, expected_lines(&input));
        prop_assert_eq!(off.lines, expected_lines(&input));
        prop_assert_eq!(on.alerts, off.alerts);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------------------------

fn write(verb: &'static str, body: Body, rules: Vec<usize>) -> RoleWrite {
    RoleWrite {
        verb,
        stage: Some("ResponseComplete"),
        code: Some(200),
        dry_run: false,
        group: Some(RBAC),
        body,
        rules,
        user: "alice@example.com",
        id: 7,
    }
}

#[test]
fn generator_sanity() {
    // The oracle and the engine agree on a few hand-checked events, so that the properties
    // above cannot pass by both sides finding nothing.
    let cases = [
        (write("create", Body::Request, vec![0]), true),
        (write("create", Body::Request, vec![3, 4, 5, 6]), false),
        (write("update", Body::Response, vec![7]), true),
        (write("patch", Body::MergePatch, vec![2]), true),
        (write("create", Body::MergePatch, vec![2]), false),
        (write("patch", Body::JsonPatch, vec![9]), true),
        (write("patch", Body::None, vec![1]), false),
        (write("create", Body::Request, vec![8, 10, 11]), false),
        (
            RoleWrite {
                dry_run: true,
                ..write("create", Body::Both, vec![1])
            },
            false,
        ),
        (
            RoleWrite {
                stage: None,
                ..write("create", Body::Both, vec![1])
            },
            true,
        ),
        (
            RoleWrite {
                stage: None,
                code: Some(403),
                ..write("create", Body::Both, vec![1])
            },
            false,
        ),
        (
            RoleWrite {
                group: None,
                ..write("create", Body::Both, vec![1])
            },
            true,
        ),
        (
            RoleWrite {
                group: Some("example.com"),
                ..write("create", Body::Both, vec![1])
            },
            false,
        ),
        (
            RoleWrite {
                user: "system:apiserver",
                ..write("create", Body::Both, vec![1])
            },
            true,
        ),
    ];
    for (w, want) in cases {
        assert_eq!(w.should_alert(), want, "oracle: {w:?}");
        let input = format!("{}\n", w.to_json());
        for prefilter in [true, false] {
            let got = run(&engine(prefilter), input.as_bytes(), 1 << 20);
            assert_eq!(
                got.alerts.len(),
                usize::from(want),
                "engine (prefilter {prefilter}): {w:?}"
            );
        }
    }
}

/// The prefilter looks for the bytes `clusterroles`; a pipeline that re-encodes JSON with
/// `\u` escapes hides them. This is the documented reason for `--no-prefilter` (see
/// `kubeward detect --help`), not a bug: the test pins the behaviour down.
#[test]
fn escaped_resource_needs_no_prefilter() {
    let w = write("create", Body::Request, vec![1]);
    let line = w
        .to_json()
        .to_string()
        .replace("clusterroles", "clusterrole\\u0073");
    assert!(!line.contains("clusterroles"));
    let input = format!("{line}\n");
    assert_eq!(
        run(&engine(false), input.as_bytes(), 1 << 20).alerts.len(),
        1
    );
    assert_eq!(
        run(&engine(true), input.as_bytes(), 1 << 20).alerts.len(),
        0
    );
}
