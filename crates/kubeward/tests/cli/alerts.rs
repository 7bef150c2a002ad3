//! `kubeward alerts`: listing the alerts of a state file. The state files are written here
//! through the `store` crate, as `kubeward detect --state` writes them, so that these tests
//! depend only on the file format, not on detection.

use crate::util::{run, Run};
use audit::time::{format_utc_micros, now_nanos};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use store::Store;

const POD_WRITE: &str = "clusterrole-pod-write";
const BINDING: &str = "pod-write-role-bound";

const MINUTE: i128 = 60 * 1_000_000_000;
const DAY: i128 = 24 * 60 * MINUTE;

/// The three stored alerts: (audit id, rule, time, JSON text), oldest first. Times are
/// relative to now so that `--since 7d` has a known answer whatever the clock says.
struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    alerts: Vec<(String, String, String, String)>,
}

impl Fixture {
    fn state(&self) -> &str {
        self.state.to_str().expect("UTF-8 temp path")
    }

    /// The stored JSON texts of these audit ids, in this order.
    fn json_of(&self, ids: &[&str]) -> Vec<String> {
        ids.iter()
            .map(|id| {
                self.alerts
                    .iter()
                    .find(|a| a.0 == *id)
                    .unwrap_or_else(|| panic!("no alert {id}"))
                    .3
                    .clone()
            })
            .collect()
    }
}

fn alert_json(rule: &str, audit_id: &str, time: &str, extra: Value) -> String {
    let mut v = json!({
        "rule_id": rule,
        "title": "ClusterRole grants write on pods",
        "severity": "high",
        "audit_id": audit_id,
        "time": time,
        "verb": "create",
        "actor": {"username": "alice@example.com", "groups": ["developers"]},
    });
    crate::util::merge(&mut v, extra);
    v.to_string()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let now = now_nanos();
    let t = |back: i128| format_utc_micros(now - back);
    let alerts = vec![
        (
            "a1".to_string(),
            POD_WRITE.to_string(),
            t(30 * DAY),
            alert_json(POD_WRITE, "a1", &t(30 * DAY), json!({"role": "pod-writer"})),
        ),
        (
            "a2".to_string(),
            POD_WRITE.to_string(),
            t(2 * DAY),
            alert_json(
                POD_WRITE,
                "a2",
                &t(2 * DAY),
                json!({"role": "deployer", "severity": "critical", "actor": {"username": "bob"}}),
            ),
        ),
        (
            "a3".to_string(),
            BINDING.to_string(),
            t(10 * MINUTE),
            alert_json(
                BINDING,
                "a3",
                &t(10 * MINUTE),
                json!({
                    "binding": "ci-binding",
                    "binding_kind": "RoleBinding",
                    "namespace": "ci",
                    "role": "edit",
                    "severity": "medium",
                }),
            ),
        ),
    ];
    let s = Store::open(&state).unwrap();
    // Stored newest first: the listing must order by time, not by insertion.
    for (id, rule, time, js) in alerts.iter().rev() {
        assert!(s.insert_alert(rule, id, Some(time), js).unwrap());
    }
    drop(s);
    Fixture {
        _dir: dir,
        state,
        alerts,
    }
}

/// `kubeward alerts ARGS`.
fn alerts(args: &[&str]) -> Run {
    let mut all = vec!["alerts"];
    all.extend_from_slice(args);
    run(&all, b"")
}

/// `kubeward alerts --state STATE --format json ARGS`: the stdout lines, which must succeed.
fn json_lines(f: &Fixture, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--state", f.state(), "--format", "json"];
    all.extend_from_slice(args);
    let r = alerts(&all).ok();
    for v in r.alerts() {
        assert!(v.is_object(), "{v}");
    }
    r.stdout.lines().map(str::to_string).collect()
}

/// `kubeward ARGS` in `dir`, with `env` set and `KUBEWARD_STATE` otherwise unset.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeward"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KUBEWARD_STATE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kubeward");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

#[test]
fn json_lists_every_alert_verbatim_oldest_first() {
    let f = fixture();
    assert_eq!(json_lines(&f, &[]), f.json_of(&["a1", "a2", "a3"]));
}

#[test]
fn since_filters_by_relative_and_absolute_time() {
    let f = fixture();
    assert_eq!(json_lines(&f, &["--since", "7d"]), f.json_of(&["a2", "a3"]));
    assert_eq!(json_lines(&f, &["--since", "1w"]), f.json_of(&["a2", "a3"]));
    assert_eq!(json_lines(&f, &["--since", "1h"]), f.json_of(&["a3"]));
    assert_eq!(json_lines(&f, &["--since", "90s"]), Vec::<String>::new());
    assert_eq!(
        json_lines(&f, &["--since", "365d"]),
        f.json_of(&["a1", "a2", "a3"])
    );
    // An absolute time is inclusive, and any offset is accepted.
    let a2_time = &f.alerts[1].2;
    assert_eq!(
        json_lines(&f, &["--since", a2_time]),
        f.json_of(&["a2", "a3"])
    );
    let with_offset = a2_time.replace('Z', "+00:00");
    assert_eq!(
        json_lines(&f, &["--since", &with_offset]),
        f.json_of(&["a2", "a3"])
    );
}

#[test]
fn rule_filters_by_exact_id_and_is_repeatable() {
    let f = fixture();
    assert_eq!(
        json_lines(&f, &["--rule", POD_WRITE]),
        f.json_of(&["a1", "a2"])
    );
    assert_eq!(json_lines(&f, &["--rule", BINDING]), f.json_of(&["a3"]));
    assert_eq!(
        json_lines(&f, &["--rule", BINDING, "--rule", POD_WRITE]),
        f.json_of(&["a1", "a2", "a3"])
    );
    assert!(json_lines(&f, &["--rule", "clusterrole"]).is_empty());
    assert_eq!(
        json_lines(&f, &["--rule", POD_WRITE, "--since", "7d"]),
        f.json_of(&["a2"])
    );
}

#[test]
fn json_lines_pipe_into_jq_style_consumers() {
    let f = fixture();
    let r = alerts(&["--state", f.state(), "--format", "json"]).ok();
    let rules: Vec<_> = r
        .alerts()
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, [POD_WRITE, POD_WRITE, BINDING]);
    // Not a terminal: json is the default.
    let d = alerts(&["--state", f.state()]).ok();
    assert_eq!(d.stdout, r.stdout);
}

#[test]
fn text_shows_one_line_per_alert() {
    let f = fixture();
    let r = alerts(&["--state", f.state(), "--format", "text"]).ok();
    let lines: Vec<_> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:#?}");
    let expect = [
        (
            &f.alerts[0].2,
            "high",
            POD_WRITE,
            "role pod-writer",
            "alice@example.com",
            "a1",
        ),
        (
            &f.alerts[1].2,
            "critical",
            POD_WRITE,
            "role deployer",
            "bob",
            "a2",
        ),
        (
            &f.alerts[2].2,
            "medium",
            BINDING,
            "role edit, binding ci/ci-binding",
            "alice@example.com",
            "a3",
        ),
    ];
    for (line, (time, sev, rule, object, actor, id)) in lines.iter().zip(expect) {
        assert!(line.starts_with(time.as_str()), "{line}");
        for part in [sev, rule, object, actor, &format!("audit {id}")] {
            assert!(line.contains(part), "{part:?} not in {line}");
        }
    }
    let one = alerts(&["--state", f.state(), "--format", "text", "--rule", BINDING]).ok();
    assert_eq!(one.stdout.lines().count(), 1);
    assert!(one.stdout.contains("ci-binding"));
}

#[test]
fn state_comes_from_the_environment_or_defaults_to_kubeward_db() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &["alerts", "--format", "json", "--rule", BINDING],
        &[("KUBEWARD_STATE", f.state())],
    )
    .ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), f.json_of(&["a3"]));

    // No flag, no variable: kubeward.db here, which is not there; nothing is created.
    let r = run_in(dir.path(), &["alerts"], &[]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("kubeward.db: no state file here"),
        "{r:#?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    std::fs::copy(&f.state, dir.path().join("kubeward.db")).unwrap();
    let r = run_in(dir.path(), &["alerts", "--format", "json"], &[]).ok();
    assert_eq!(r.stdout.lines().count(), 3);
}

#[test]
fn missing_state_file_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let p = path.to_str().unwrap();
    let r = alerts(&["--state", p]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stdout.is_empty(), "{r:#?}");
    assert!(
        r.stderr.contains(&format!(
            "{p}: no state file here (kubeward detect --state PATH creates one)"
        )),
        "{r:#?}"
    );
    assert!(!r.stderr.contains("panicked"), "{r:#?}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_file_that_is_not_a_state_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let text = "{\"kind\":\"Event\"}\n".repeat(300);
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let r = alerts(&["--state", p]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr
            .contains(&format!("{p}: not a kubeward state file")),
        "{r:#?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_since_is_reported() {
    let f = fixture();
    let r = alerts(&["--state", f.state(), "--since", "yesterday"]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("--since \"yesterday\""), "{r:#?}");
    assert!(r.stdout.is_empty());
}

#[test]
fn help_says_what_is_listed_with_examples() {
    let r = alerts(&["--help"]).ok();
    for part in [
        "state file",
        "oldest first",
        "Examples:",
        "--since 24h",
        "KUBEWARD_STATE",
        "kubeward.db",
        "--rule",
    ] {
        assert!(
            r.stdout.contains(part),
            "{part:?} not in --help:\n{}",
            r.stdout
        );
    }
}
