//! `kubeward alerts`: the alerts a state file holds, read back without reading any log.

use crate::cli::{AlertsArgs, Format};
use anyhow::{bail, Result};
use serde_json::Value;
use std::io::{self, IsTerminal, Write};
use store::{Store, StoredAlert};

/// `kubeward alerts --help`, before the options.
pub const ABOUT: &str = "\
List the alerts stored in a state file, oldest first: every alert that
`kubeward detect --state PATH` raised in any run on that file, each once (alerts are
stored once per rule and audit event, however often the events were read).

Nothing is read but the state file; it must exist (it is never created here). The text
format prints one line per alert: time, severity, rule, role or binding, actor, audit ID.
The JSON format prints each alert exactly as `kubeward detect --format json` printed it,
one per line. Suppressed alerts are stored and listed too: they carry `suppressed_by`.";

/// `kubeward alerts --help`, after the options.
pub const AFTER: &str = "\
Examples:
  kubeward alerts                                   kubeward.db (or $KUBEWARD_STATE)
  kubeward alerts --state /var/lib/kubeward/prod.db --since 24h
  kubeward alerts --since 2026-01-15T00:00:00Z --rule clusterrole-pod-write
  kubeward alerts --format json --since 7d | jq -r '.actor.username' | sort | uniq -c

--since takes an RFC 3339 time or a duration back from now: 90s, 30m, 2h, 7d, 1w.
Alerts whose event had no time are listed only without --since.

Exit status: 0 when the alerts were listed (also when there are none), 2 on an error (no
state file, a file that is not one, a file locked by a running kubeward detect).";

pub fn run(args: AlertsArgs) -> Result<u8> {
    // Checked before the file is opened, so that a mistyped --since is reported as such
    // whether or not the file is there.
    let since = match &args.since {
        Some(s) => Some(parse_since(s)?),
        None => None,
    };
    let store = Store::open_existing(&args.state)?;
    // The store filters by one rule; several are filtered here, on the rows read.
    let one_rule = match args.rules.as_slice() {
        [r] => Some(r.as_str()),
        _ => None,
    };
    let mut alerts = store.alerts(since.as_deref(), one_rule)?;
    if args.rules.len() > 1 {
        alerts.retain(|a| args.rules.contains(&a.rule_id));
    }

    let stdout = io::stdout();
    let format = args.format.unwrap_or(if stdout.is_terminal() {
        Format::Text
    } else {
        Format::Json
    });
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    for a in &alerts {
        match format {
            Format::Json => write_json(&mut out, a)?,
            Format::Text => writeln!(out, "{}", text_line(a))?,
        }
    }
    out.flush()?;
    if alerts.is_empty() && format == Format::Text {
        let filtered = since.is_some() || !args.rules.is_empty();
        eprintln!(
            "kubeward: no alerts in {}{}",
            args.state.display(),
            if filtered { " match the filters" } else { "" }
        );
    }
    Ok(0)
}

/// `--since` as the normalized time the store compares with.
fn parse_since(s: &str) -> Result<String> {
    match audit::time::parse_relative_or_absolute(s, audit::time::now_nanos()) {
        Some(t) => Ok(audit::time::format_utc_micros(t)),
        None => bail!(
            "--since {s:?} is neither an RFC 3339 time (e.g. 2026-01-15T10:00:00Z) nor a \
             duration back from now (90s, 30m, 2h, 7d, 1w)"
        ),
    }
}

fn write_json(out: &mut impl Write, a: &StoredAlert) -> io::Result<()> {
    // JSON can only hold a raw newline as whitespace between tokens; a pretty-printed
    // alert would break the one-alert-per-line contract that `jq` and `wc -l` rely on.
    if !a.json.contains(['\n', '\r']) {
        return writeln!(out, "{}", a.json);
    }
    match serde_json::from_str::<Value>(&a.json) {
        Ok(v) => writeln!(out, "{v}"),
        Err(_) => writeln!(out, "{}", a.json.replace(['\n', '\r'], " ")),
    }
}

/// One readable line: time, severity, rule, role or binding, actor, audit ID.
fn text_line(a: &StoredAlert) -> String {
    // A stored alert whose JSON does not parse is still listed, from its columns.
    let v: Value = serde_json::from_str(&a.json).unwrap_or(Value::Null);
    let s = |ptr: &str| v.pointer(ptr).and_then(Value::as_str);
    let time = a.time.as_deref().or(s("/time")).unwrap_or("time unknown");
    let severity = s("/severity").unwrap_or("-");
    // The namespace belongs to the binding when there is one (a RoleBinding may bind a
    // ClusterRole), otherwise to the role.
    let ns = |name: &str| match s("/namespace") {
        Some(n) => format!("{}/{}", c(n), c(name)),
        None => c(name),
    };
    let binding = s("/binding");
    let mut object = Vec::new();
    if let Some(r) = s("/role") {
        object.push(format!(
            "role {}",
            if binding.is_some() { c(r) } else { ns(r) }
        ));
    }
    if let Some(b) = binding {
        object.push(format!("binding {}", ns(b)));
    }
    if object.is_empty() {
        object.push("-".into());
    }
    let actor = s("/actor/username").unwrap_or("<unknown user>");
    let mut line = format!(
        "{}  {:<8}  {}  {}  by {}  audit {}",
        c(time),
        c(severity),
        c(&a.rule_id),
        object.join(", "),
        c(actor),
        c(&a.audit_id)
    );
    if let Some(cl) = s("/cluster") {
        line.push_str(&format!("  cluster {}", c(cl)));
    }
    if let Some(by) = s("/suppressed_by") {
        line.push_str(&format!("  [suppressed: {}]", c(by)));
    }
    line
}

use crate::print::escape_controls as c;

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(json: &str) -> StoredAlert {
        StoredAlert {
            seq: 1,
            rule_id: "clusterrole-pod-write".into(),
            audit_id: "a1".into(),
            time: Some("2026-01-15T10:00:00.012345Z".into()),
            json: json.into(),
        }
    }

    #[test]
    fn text_line_reads_what_is_there() {
        let a = stored(
            r#"{"severity":"high","role":"pod-writer","actor":{"username":"alice"},"cluster":"prod"}"#,
        );
        assert_eq!(
            text_line(&a),
            "2026-01-15T10:00:00.012345Z  high      clusterrole-pod-write  role pod-writer  by alice  audit a1  cluster prod"
        );
        let a = stored(r#"{"binding":"b","namespace":"ci","actor":{}}"#);
        assert_eq!(
            text_line(&a),
            "2026-01-15T10:00:00.012345Z  -         clusterrole-pod-write  binding ci/b  by <unknown user>  audit a1"
        );
        let a = stored(r#"{"role":"edit","binding":"b","namespace":"ci"}"#);
        assert!(text_line(&a).contains("  role edit, binding ci/b  "));
        let a = stored(r#"{"role":"r","namespace":"ci"}"#);
        assert!(text_line(&a).contains("  role ci/r  "));
        let a = stored("[]");
        assert!(text_line(&a).contains("  -  by <unknown user>"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let a = stored(r#"{"role":"evil\u001b[2J\nfake","actor":{"username":"x"}}"#);
        let line = text_line(&a);
        assert!(!line.contains(['\u{1b}', '\n']), "{line}");
        assert!(line.contains(r"evil\u{1b}[2J\u{a}fake"), "{line}");
    }

    #[test]
    fn pretty_json_is_written_on_one_line() {
        let mut out = Vec::new();
        write_json(&mut out, &stored("{\n  \"a\": 1\n}")).unwrap();
        assert_eq!(out, b"{\"a\":1}\n");
        let mut out = Vec::new();
        write_json(&mut out, &stored(r#"{"b":2, "a":1}"#)).unwrap();
        assert_eq!(out, b"{\"b\":2, \"a\":1}\n");
    }

    #[test]
    fn since_accepts_absolute_and_relative() {
        assert_eq!(
            parse_since("2026-01-15T11:00:00+01:00").unwrap(),
            "2026-01-15T10:00:00.000000Z"
        );
        assert!(parse_since("2h").is_ok());
        let e = parse_since("yesterday").unwrap_err().to_string();
        assert!(e.contains("\"yesterday\""), "{e}");
    }
}
