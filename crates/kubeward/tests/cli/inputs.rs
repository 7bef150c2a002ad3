//! Input handling: framings, gzip, directories, stdin, bad lines, caps, errors, duplicates.

use crate::util::{event, gzip, jsonl, pod_get, run, write, Run};
use serde_json::{json, Value};

fn detect_paths(paths: &[&str], extra: &[&str]) -> Run {
    let mut args = vec!["detect", "--format", "json"];
    args.extend_from_slice(extra);
    args.extend_from_slice(paths);
    run(&args, b"")
}

fn roles(r: &Run) -> Vec<String> {
    r.alerts()
        .iter()
        .map(|a| a["role"].as_str().unwrap().to_string())
        .collect()
}

/// An alerting event for role `name`.
fn alerting(name: &str) -> Value {
    event(json!({"objectRef": {"name": name}, "requestObject": {"metadata": {"name": name}}}))
}

fn event_list(items: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
}

#[test]
fn event_list_line_alerts_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let list = event_list(vec![alerting("first"), pod_get(), alerting("second")]);
    let p = write(dir.path(), "batch.jsonl", jsonl(&[pod_get(), list]));
    let r = detect_paths(&[&p], &[]).ok();
    let a = r.alerts();
    assert_eq!(roles(&r), ["first", "second"]);
    assert_eq!(a[0]["source"], json!({"path": p, "line": 2, "item": 0}));
    assert_eq!(a[1]["source"], json!({"path": p, "line": 2, "item": 2}));
    // The pod get on line 1 is not parsed; the list's three items are.
    assert!(
        r.summary().contains(" 2 lines, 3 events parsed"),
        "{}",
        r.summary()
    );
}

#[test]
fn event_list_with_two_alerting_items() {
    let r = run(
        &["detect", "--format", "json", "-"],
        jsonl(&[event_list(vec![alerting("a"), alerting("b")])]).as_bytes(),
    )
    .ok();
    let items: Vec<Value> = r
        .alerts()
        .iter()
        .map(|a| a["source"]["item"].clone())
        .collect();
    assert_eq!(items, [json!(0), json!(1)]);
    assert_eq!(r.lines(), [1, 1]);
    assert_eq!(roles(&r), ["a", "b"]);
}

/// 1-based numbers of the lines of `text` that are exactly `line`.
fn lines_equal(text: &str, line: &str) -> Vec<u64> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

fn stream_roles(r: &Run) -> Vec<String> {
    r.values()
        .iter()
        .map(|a| a["role"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pretty_printed_array_of_events() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        serde_json::to_string_pretty(&json!([alerting("one"), pod_get(), alerting("three")]))
            .unwrap();
    let p = write(dir.path(), "events.json", &text);
    let r = detect_paths(&[&p], &[]).ok();
    // Parsed as a JSON stream: see `alerts_from_pretty_input_are_one_per_line` for the lines.
    let alerts = r.values();
    assert_eq!(stream_roles(&r), ["one", "three"]);
    // Each element starts on a line `  {`; the alerts point at the first and third.
    let starts = lines_equal(&text, "  {");
    assert_eq!(starts.len(), 3);
    let lines: Vec<&Value> = alerts.iter().map(|a| &a["source"]["line"]).collect();
    assert_eq!(lines, [&json!(starts[0]), &json!(starts[2])]);
    assert!(r.summary().contains("3 events parsed"), "{}", r.summary());
}

#[test]
fn pretty_printed_event_list() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        serde_json::to_string_pretty(&event_list(vec![alerting("x"), alerting("y")])).unwrap();
    assert!(text.lines().count() > 50);
    let p = write(dir.path(), "batch.json", &text);
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(stream_roles(&r), ["x", "y"]);
    let sources: Vec<Value> = r.values().iter().map(|a| a["source"].clone()).collect();
    assert_eq!(
        sources,
        [
            json!({"path": p, "line": 1, "item": 0}),
            json!({"path": p, "line": 1, "item": 1})
        ]
    );
}

#[test]
fn alerts_from_pretty_input_are_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = serde_json::to_string_pretty(&json!([alerting("one")])).unwrap();
    let p = write(dir.path(), "events.json", &text);
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_eq!(
        r.alert()["offending_rules"],
        json!([crate::util::pod_write_rule()])
    );
}

#[test]
fn gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = jsonl(&[pod_get(), alerting("zipped"), pod_get()]);
    // Detected by content, not by name.
    let p = write(dir.path(), "audit.log.1", gzip(plain.as_bytes()));
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(roles(&r), ["zipped"]);
    assert_eq!(r.lines(), [2]);
    assert!(r.summary().contains("3 lines"), "{}", r.summary());
}

#[test]
fn multi_member_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gzip(jsonl(&[alerting("member-1"), pod_get()]).as_bytes());
    bytes.extend(gzip(jsonl(&[pod_get(), alerting("member-2")]).as_bytes()));
    let p = write(dir.path(), "audit-2026-01-15.log.gz", bytes);
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(roles(&r), ["member-1", "member-2"]);
    // Line numbers run on across members.
    assert_eq!(r.lines(), [1, 4]);
}

#[test]
fn directory_reads_every_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = write(dir.path(), "b.log", jsonl(&[pod_get(), alerting("from-b")]));
    let a = write(dir.path(), "a.log", jsonl(&[alerting("from-a")]));
    write(dir.path(), "c.log", jsonl(&[pod_get()]));
    let z = write(
        dir.path(),
        "z.log.gz",
        gzip(jsonl(&[alerting("from-z")]).as_bytes()),
    );
    let r = detect_paths(&[dir.path().to_str().unwrap()], &[]).ok();
    assert_eq!(roles(&r), ["from-a", "from-b", "from-z"]);
    let sources: Vec<Value> = r.alerts().iter().map(|x| x["source"].clone()).collect();
    assert_eq!(
        sources,
        [
            json!({"path": a, "line": 1}),
            json!({"path": b, "line": 2}),
            json!({"path": z, "line": 1})
        ]
    );
    assert!(
        r.summary().starts_with("kubeward: 4 inputs, 5 lines"),
        "{}",
        r.summary()
    );
}

#[test]
fn stdin_with_dash_and_without_path() {
    let input = jsonl(&[pod_get(), alerting("piped")]);
    for args in [
        &["detect", "--format", "json", "-"][..],
        &["detect", "--format", "json"][..],
    ] {
        let r = run(args, input.as_bytes()).ok();
        assert_eq!(roles(&r), ["piped"], "{args:?}");
        assert_eq!(
            r.alerts()[0]["source"],
            json!({"path": "-", "line": 2}),
            "{args:?}"
        );
    }
}

#[test]
fn malformed_line_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // A ClusterRole create cut off mid-line (a crash, a full disk), keys in the API server's
    // order: the needle and the verb are both there.
    let truncated = concat!(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","#,
        r#""auditID":"5a1c0d7e-0000-4000-8000-00000000cafe","stage":"ResponseComplete","#,
        r#""requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterroles","verb":"create","#,
        r#""user":{"username":"alice"},"objectRef":{"resource":"clusterroles","name":"cut","#,
        r#""apiGroup":"rbac.authorization.k8s.io"},"requestObject":{"kind":"ClusterRole","rules":[{"apiGr"#
    );
    let text = format!(
        "{}\n{}\n{truncated}\n{}\n{}\n",
        alerting("before"),
        pod_get(),
        alerting("after"),
        pod_get()
    );
    let p = write(dir.path(), "audit.log", text);
    for extra in [&[][..], &["--no-prefilter"][..]] {
        let r = detect_paths(&[&p], extra).ok();
        assert_eq!(roles(&r), ["before", "after"], "{extra:?}");
        assert_eq!(r.lines(), [1, 4], "{extra:?}");
        let reported: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with(&p)).collect();
        assert_eq!(reported.len(), 1, "{extra:?}: {r:#?}");
        assert!(
            reported[0].starts_with(&format!("{p}:3: ")),
            "{}",
            reported[0]
        );
        assert!(r.summary().contains(" 5 lines,"), "{}", r.summary());
        assert!(r.summary().contains(" 1 malformed,"), "{}", r.summary());
    }
}

/// An alerting event for role `name` whose line is about 3 KB.
fn big_alerting(name: &str) -> String {
    let line = event(json!({
        "objectRef": {"name": name},
        "requestObject": {"metadata": {"name": name}},
        "annotations": {"padding": "x".repeat(2048)},
    }))
    .to_string();
    assert!(line.len() > 2048 && line.len() < 4096);
    line
}

/// Checks that only the big line (line `big_at`) is reported, with its size, and skipped.
#[track_caller]
fn check_cap(p: &str, big: &str, big_at: u64, small_at: [u64; 2]) {
    let r = detect_paths(&[p], &["--max-line-bytes", "1K"]).ok();
    assert_eq!(roles(&r), ["small-1", "small-2"], "{}", r.stderr);
    assert_eq!(r.lines(), small_at);
    let reported: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with(p)).collect();
    assert_eq!(
        reported,
        [format!(
            "{p}:{big_at}: line is {} bytes, over the 1024 byte cap (--max-line-bytes)",
            big.len()
        )]
    );
    assert!(r.summary().contains(" 1 malformed,"), "{}", r.summary());
    // Under the default cap it alerts.
    let r = detect_paths(&[p], &[]).ok();
    assert_eq!(roles(&r), ["small-1", "big", "small-2"]);
}

#[test]
fn line_over_the_cap_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let big = big_alerting("big");
    let text = jsonl(&[alerting("small-1")]) + &big + "\n" + &jsonl(&[alerting("small-2")]);
    let p = write(dir.path(), "audit.log", &text);
    check_cap(&p, &big, 2, [1, 3]);
}

#[test]
fn line_over_the_cap_in_a_larger_file() {
    // Past the first 64 KiB read to choose the framing, before the 1 MiB where files are mapped.
    let dir = tempfile::tempdir().unwrap();
    let big = big_alerting("big");
    let filler = jsonl(&(0..300).map(|_| pod_get()).collect::<Vec<_>>());
    assert!(filler.len() > 64 << 10 && filler.len() < 1 << 20);
    let text = jsonl(&[alerting("small-1")])
        + &filler
        + &big
        + "\n"
        + &jsonl(&[alerting("small-2")])
        + &filler;
    let p = write(dir.path(), "audit.log", &text);
    check_cap(&p, &big, 302, [1, 303]);
}

#[test]
fn utf8_bom_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let bom = b"\xEF\xBB\xBF".to_vec();
    let lines = [
        bom.clone(),
        jsonl(&[alerting("first"), alerting("second")]).into_bytes(),
    ]
    .concat();
    let p = write(dir.path(), "lines.log", lines);
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(roles(&r), ["first", "second"], "{}", r.stderr);
    assert_eq!(r.lines(), [1, 2]);
    let array = serde_json::to_string_pretty(&json!([alerting("in-array")])).unwrap();
    let p = write(dir.path(), "array.json", [bom, array.into_bytes()].concat());
    let r = detect_paths(&[&p], &[]).ok();
    assert_eq!(stream_roles(&r), ["in-array"], "{}", r.stderr);
}

#[test]
fn crlf_line_endings() {
    let text = jsonl(&[alerting("one"), pod_get(), alerting("three")]).replace('\n', "\r\n");
    let r = run(&["detect", "--format", "json", "-"], text.as_bytes()).ok();
    assert_eq!(roles(&r), ["one", "three"]);
    assert_eq!(r.lines(), [1, 3]);
    assert!(r.summary().contains(" 0 malformed,"), "{}", r.summary());
}

#[test]
fn no_prefilter_finds_escaped_needles() {
    // A pipeline that re-encoded the line with \u escapes hides `clusterroles` from the prefilter.
    let line = alerting("escaped")
        .to_string()
        .replace("clusterroles", r"cluster\u0072oles");
    assert!(!line.contains("clusterroles"));
    let input = format!("{line}\n");
    let r = run(&["detect", "--format", "json", "-"], input.as_bytes()).ok();
    assert_eq!(r.stdout, "");
    let r = run(
        &["detect", "--format", "json", "--no-prefilter", "-"],
        input.as_bytes(),
    )
    .ok();
    assert_eq!(roles(&r), ["escaped"]);
}

#[test]
fn empty_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.log", "");
    let r = detect_paths(&[&p], &["--exit-code", "1"]).ok();
    assert_eq!(r.stdout, "");
    assert!(
        r.summary()
            .starts_with("kubeward: 1 input, 0 lines, 0 events parsed"),
        "{}",
        r.summary()
    );
}

#[test]
fn missing_path_fails_before_reading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "audit.log", jsonl(&[alerting("never-printed")]));
    let missing = dir.path().join("no-such-audit.log");
    let missing = missing.to_str().unwrap();
    for paths in [vec![missing], vec![good.as_str(), missing]] {
        let r = detect_paths(&paths, &[]);
        assert_eq!(r.code, 2, "{r:#?}");
        assert_eq!(r.stdout, "", "{paths:?}");
        assert!(r.stderr.contains(missing), "{r:#?}");
        assert!(!r.stderr.contains("panicked"), "{r:#?}");
    }
}

#[test]
fn duplicate_deliveries_across_files_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let ev = alerting("twice");
    let a = write(dir.path(), "a.log", jsonl(std::slice::from_ref(&ev)));
    let b = write(dir.path(), "b.log", jsonl(&[pod_get(), ev]));
    let r = detect_paths(&[&a, &b], &[]).ok();
    assert_eq!(roles(&r), ["twice"]);
    assert_eq!(r.alerts()[0]["source"], json!({"path": a, "line": 1}));
    assert!(
        r.summary().contains(", 1 duplicates dropped, 1 alert,"),
        "{}",
        r.summary()
    );
}

#[test]
fn same_audit_id_in_another_stage_is_not_a_duplicate() {
    // Only (auditID, stage) pairs are duplicates; a stage-less 2xx event is judged complete.
    let ev = alerting("staged");
    let mut other = ev.clone();
    other.as_object_mut().unwrap().remove("stage");
    let r = run(
        &["detect", "--format", "json"],
        jsonl(&[ev, other]).as_bytes(),
    )
    .ok();
    assert_eq!(roles(&r), ["staged", "staged"]);
    assert!(
        r.summary().contains(", 0 duplicates dropped, 2 alerts,"),
        "{}",
        r.summary()
    );
}

/// A mix of alerting, non-alerting, non-candidate and malformed lines.
fn mixed_log() -> String {
    let mut out = String::new();
    for i in 0..40 {
        let ev = match i % 5 {
            0 => alerting(&format!("role-{i}")),
            1 => pod_get(),
            2 => event(json!({"verb": "get", "responseStatus": {"code": 200}})),
            3 => event(json!({"responseStatus": {"code": 403}})),
            _ => event_list(vec![pod_get(), alerting(&format!("listed-{i}"))]),
        };
        out.push_str(&format!("{ev}\n"));
        if i == 17 {
            out.push_str("{\"kind\":\"Event\",\"verb\":\"create\",\"objectRef\":{\"resource\":\"clusterroles\"\n");
            out.push('\n');
        }
    }
    out
}

#[test]
fn no_prefilter_prints_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "mixed.log", mixed_log());
    let with = detect_paths(&[&p], &[]).ok();
    let without = detect_paths(&[&p], &["--no-prefilter"]).ok();
    assert_eq!(with.alerts().len(), 16);
    assert_eq!(with.stdout, without.stdout);
    // How many lines the prefilter skips is its business; that it skipped some is not.
    assert!(
        !with
            .summary()
            .contains("(0 lines skipped by the prefilter)"),
        "{}",
        with.summary()
    );
    assert!(
        with.summary().contains(" lines skipped by the prefilter)"),
        "{}",
        with.summary()
    );
    assert!(
        !without.summary().contains("prefilter"),
        "{}",
        without.summary()
    );
    assert!(
        without.summary().contains(" 42 lines, 48 events parsed,"),
        "{}",
        without.summary()
    );
    assert!(
        without.summary().contains(" 1 malformed,"),
        "{}",
        without.summary()
    );
}

#[test]
fn large_file_keeps_line_numbers_across_chunks() {
    // Over 1 MiB (files this large may be read differently) and over the 2 MiB chunk size, so
    // records sit on both sides of chunk boundaries.
    let dir = tempfile::tempdir().unwrap();
    let filler = format!("{}\n", pod_get());
    let mut text = String::new();
    let mut want = Vec::new();
    let mut line = 0u64;
    while text.len() < (5 << 20) {
        line += 1;
        if line % 2500 == 7 {
            text.push_str(&jsonl(&[alerting(&format!("at-{line}"))]));
            want.push(line);
        } else {
            text.push_str(&filler);
        }
    }
    // The last line alerts and has no newline.
    line += 1;
    text.push_str(&alerting("last").to_string());
    want.push(line);
    let p = write(dir.path(), "big.log", &text);
    for threads in ["1", "4"] {
        let r = detect_paths(&[&p], &["--threads", threads]).ok();
        assert_eq!(r.lines(), want, "--threads {threads}");
        assert_eq!(r.alerts().last().unwrap()["role"], "last");
        assert!(
            r.summary().contains(&format!(" {line} lines,")),
            "{}",
            r.summary()
        );
    }
    // The same through gzip.
    let gz = write(dir.path(), "big.log.gz", gzip(text.as_bytes()));
    assert_eq!(detect_paths(&[&gz], &[]).ok().lines(), want);
}

#[test]
fn line_longer_than_a_chunk_is_skipped_in_large_inputs() {
    // A 3 MiB line (over the 2 MiB chunk size) under a 1M cap, in a file large enough to be
    // read in several chunks; the same bytes from a file and from stdin give the same answer.
    let dir = tempfile::tempdir().unwrap();
    let huge = event(json!({
        "objectRef": {"name": "huge"},
        "annotations": {"padding": "x".repeat(3 << 20)},
    }))
    .to_string();
    let filler = format!("{}\n", pod_get());
    let mut text = String::new();
    let mut want = Vec::new();
    for line in 1..=6000u64 {
        if line == 3000 {
            text.push_str(&huge);
            text.push('\n');
        } else if line % 1000 == 1 || line == 3001 {
            text.push_str(&jsonl(&[alerting(&format!("at-{line}"))]));
            want.push(line);
        } else {
            text.push_str(&filler);
        }
    }
    let p = write(dir.path(), "huge.log", &text);
    let from_file = detect_paths(&[&p], &["--max-line-bytes", "1M"]).ok();
    assert_eq!(from_file.lines(), want);
    let reported: Vec<&str> = from_file
        .stderr
        .lines()
        .filter(|l| l.starts_with(&p))
        .collect();
    assert_eq!(
        reported,
        [format!(
            "{p}:3000: line is {} bytes, over the 1048576 byte cap (--max-line-bytes)",
            huge.len()
        )]
    );
    assert!(
        from_file.summary().contains(" 6000 lines,"),
        "{}",
        from_file.summary()
    );
    let from_stdin = run(
        &["detect", "--format", "json", "--max-line-bytes", "1M", "-"],
        text.as_bytes(),
    )
    .ok();
    assert_eq!(from_stdin.lines(), want);
    assert!(
        from_stdin.stderr.contains("-:3000: line is "),
        "{}",
        from_stdin.stderr
    );
}
