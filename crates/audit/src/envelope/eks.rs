//! EKS: audit Events in CloudWatch Logs.
//!
//! EKS writes each audit Event as the `message` of a CloudWatch Logs event, in the log group
//! `/aws/eks/<cluster>/cluster`, on streams named `kube-apiserver-audit-<id>`; the same group
//! holds the other control-plane logs (`kube-apiserver-<id>`, `authenticator-<id>`, ...),
//! which are text and are skipped by stream name. The shapes read:
//!
//! - `aws logs filter-log-events` / `get-log-events` JSON output: `{"events":[{"message":...}]}`;
//! - one CloudWatch event per line (`jq -c '.events[]'`): `{"timestamp":...,"message":...}`;
//! - subscription-filter payloads: `{"messageType":"DATA_MESSAGE","logGroup":...,
//!   "logStream":...,"logEvents":[{"id","timestamp","message"}]}`; `CONTROL_MESSAGE`
//!   payloads are health checks and are skipped;
//! - the same payloads gzip-compressed and base64-encoded, as Lambda receives them
//!   (`{"awslogs":{"data":...}}`), as a Lambda Kinesis trigger does (`{"Records":[{"kinesis":
//!   {"data":...}}]}`; `aws kinesis get-records` prints `{"Records":[{"Data":...}]}`), and as
//!   Firehose sends them to an HTTP endpoint (`{"requestId":...,
//!   "timestamp":...,"records":[{"data":...}]}`); the decoded data may hold several payloads
//!   back to back, or (Firehose with message extraction) the bare Events;
//! - Firehose-to-S3 objects: gzip members (read by the input layer) of payloads written back
//!   to back with nothing between them.

use super::{array, string, Ctx, Inherited, Origin, Piece};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The cluster of an EKS control-plane log group, `/aws/eks/<cluster>/cluster`.
pub fn cluster_of_log_group(group: &str) -> Option<String> {
    let name = group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// The kind of a control-plane log stream: its name without the trailing id
/// (`kube-apiserver-audit-71976ca1...` is `kube-apiserver-audit`).
fn stream_kind(stream: &str) -> &str {
    match stream.rsplit_once('-') {
        Some((kind, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => kind,
        _ => stream,
    }
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_string()
    } else {
        format!("{path}.{part}")
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(borrow, default)]
    message_type: Option<&'a RawValue>,
    #[serde(default)]
    log_group: Option<String>,
    #[serde(default)]
    log_stream: Option<String>,
    #[serde(borrow, default)]
    log_events: Option<&'a RawValue>,
}

/// A subscription-filter payload.
pub(super) fn payload(ctx: &mut Ctx, raw: &str, path: &str) {
    let p: Payload = match serde_json::from_str(raw) {
        Ok(p) => p,
        Err(e) => {
            ctx.malformed(format!(
                "{}EKS subscription payload: invalid field: {e}",
                prefix(path)
            ));
            return;
        }
    };
    let message_type = string(p.message_type);
    match message_type.as_deref() {
        Some("CONTROL_MESSAGE") => {
            ctx.skipped("EKS: CloudWatch subscription CONTROL_MESSAGE payloads (health checks)");
            return;
        }
        Some("DATA_MESSAGE") | None => {}
        Some(other) => {
            ctx.malformed(format!(
                "{}EKS subscription payload: unknown messageType {other:?}",
                prefix(path)
            ));
            return;
        }
    }
    let Some(events) = p.log_events else {
        ctx.malformed(format!(
            "{}EKS DATA_MESSAGE payload without logEvents",
            prefix(path)
        ));
        return;
    };
    let events = match array(events, "logEvents") {
        Ok(e) => e,
        Err(e) => {
            ctx.malformed(format!("{}EKS {e}", prefix(path)));
            return;
        }
    };
    if events.is_empty() {
        ctx.skipped("EKS: DATA_MESSAGE payloads with no logEvents");
    }
    for (i, e) in events.into_iter().enumerate() {
        entry(
            ctx,
            e,
            &join(path, &format!("logEvents[{i}]")),
            p.log_group.as_deref(),
            p.log_stream.as_deref(),
        );
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudWatchEvent<'a> {
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(default)]
    log_stream_name: Option<String>,
    #[serde(default)]
    log_group_name: Option<String>,
}

/// One CloudWatch event (`{"message": ...}` with its id, timestamps and stream).
fn entry(ctx: &mut Ctx, e: &RawValue, path: &str, group: Option<&str>, stream: Option<&str>) {
    let ev: CloudWatchEvent = match serde_json::from_str(e.get()) {
        Ok(ev) => ev,
        Err(err) => {
            ctx.malformed(format!(
                "EKS {}: not a CloudWatch Logs event: {err}",
                if path.is_empty() { "record" } else { path }
            ));
            return;
        }
    };
    let Some(msg) = ev.message else {
        ctx.malformed(format!(
            "EKS {}: CloudWatch Logs event without a message",
            if path.is_empty() { "record" } else { path }
        ));
        return;
    };
    let stream = ev.log_stream_name.as_deref().or(stream);
    let group = ev.log_group_name.as_deref().or(group);
    message(ctx, msg, &join(path, "message"), group, stream);
}

/// A CloudWatch event's message: the audit Event as a JSON string.
fn message(ctx: &mut Ctx, msg: &RawValue, path: &str, group: Option<&str>, stream: Option<&str>) {
    let Ok(text) = serde_json::from_str::<String>(msg.get()) else {
        ctx.malformed(format!("EKS {path}: not a string"));
        return;
    };
    let audit_stream = stream.map(|s| stream_kind(s) == "kube-apiserver-audit");
    if audit_stream == Some(false) {
        // The control plane's other logs share the log group.
        ctx.skipped(format!(
            "EKS: messages of log stream {}-* (not the audit log)",
            stream_kind(stream.unwrap_or(""))
        ));
        return;
    }
    if !text.trim_start().starts_with('{') {
        if audit_stream == Some(true) {
            ctx.malformed(format!(
                "EKS {path}: the audit log stream's message is not a JSON object"
            ));
        } else {
            ctx.skipped("EKS: CloudWatch messages that are not JSON (not audit Events)");
        }
        return;
    }
    ctx.out.push(Piece::Event {
        json: text.into_bytes(),
        origin: Some(Origin::new(
            super::Cloud::Eks,
            group.and_then(cluster_of_log_group),
            path.to_string(),
        )),
    });
}

/// `aws logs filter-log-events` / `get-log-events` output.
pub(super) fn output(ctx: &mut Ctx, top: &super::Top, path: &str, inh: Inherited) {
    let Some(events) = top.events else { return };
    let events = match array(events, "events") {
        Ok(e) => e,
        Err(e) => {
            ctx.malformed(format!("{}EKS {e}", prefix(path)));
            return;
        }
    };
    if events.is_empty() {
        // A page of `filter-log-events` output can be empty (the next token follows).
        ctx.skipped("EKS: CloudWatch Logs output pages with no events");
    }
    for (i, e) in events.into_iter().enumerate() {
        entry(
            ctx,
            e,
            &join(path, &format!("events[{i}]")),
            inh.log_group,
            inh.log_stream,
        );
    }
}

/// One CloudWatch event on its own (a line of `jq -c '.events[]'`, or of a subscription's
/// `logEvents`), already read into its classifying keys.
pub(super) fn event(ctx: &mut Ctx, top: &super::Top, path: &str, inh: Inherited) {
    let name = if path.is_empty() { "record" } else { path };
    let Some(msg) = top.message else {
        ctx.malformed(format!(
            "EKS {name}: CloudWatch Logs event without a message"
        ));
        return;
    };
    let stream = string(top.log_stream_name);
    let group = string(top.log_group_name);
    message(
        ctx,
        msg,
        &join(path, "message"),
        group.as_deref().or(inh.log_group),
        stream.as_deref().or(inh.log_stream),
    );
}

#[derive(Deserialize)]
struct AwsLogs {
    #[serde(default)]
    data: Option<String>,
}

/// A Lambda subscription event: `{"awslogs":{"data":"<base64 gzip payload>"}}`.
pub(super) fn lambda(ctx: &mut Ctx, top: &super::Top, path: &str, depth: u8) {
    let here = join(path, "awslogs.data");
    let data = top
        .awslogs
        .and_then(|a| serde_json::from_str::<AwsLogs>(a.get()).ok())
        .and_then(|a| a.data);
    let Some(data) = data else {
        ctx.malformed(format!("EKS {here}: missing, or not a string"));
        return;
    };
    decoded(ctx, &data, &here, depth);
}

/// Decodes base64 (+gzip) data and reads the payloads in it.
fn decoded(ctx: &mut Ctx, data: &str, here: &str, depth: u8) {
    match ctx.decode(data) {
        Ok(bytes) => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                ctx.malformed(format!("EKS {here}: empty"));
                return;
            }
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            if first != Some(&b'{') {
                // Firehose with message extraction of a non-audit stream: text lines.
                ctx.skipped("EKS: delivered records whose data is not JSON (not audit Events)");
                return;
            }
            ctx.values(&bytes, here, depth + 1, Some(Inherited::default()));
        }
        Err(e) => ctx.malformed(format!("EKS {here}: {e}")),
    }
}

#[derive(Deserialize)]
struct DataRecord {
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct KinesisRecord {
    /// A Lambda Kinesis trigger event's record.
    #[serde(default)]
    kinesis: Option<DataRecord>,
    /// `aws kinesis get-records` output's record.
    #[serde(default, rename = "Data")]
    data: Option<String>,
}

/// A Lambda Kinesis trigger event (`{"Records":[{"kinesis":{"data":...}}]}`), or what
/// `aws kinesis get-records` prints (`{"Records":[{"Data":...}]}`).
pub(super) fn kinesis(ctx: &mut Ctx, top: &super::Top, path: &str, depth: u8) {
    let Some(records) = top.records_upper else {
        return;
    };
    let records = match array(records, "Records") {
        Ok(r) => r,
        Err(e) => {
            ctx.malformed(format!("{}EKS {e}", prefix(path)));
            return;
        }
    };
    if records.is_empty() {
        ctx.skipped("EKS: Kinesis events with no Records");
    }
    for (i, r) in records.into_iter().enumerate() {
        let rec = serde_json::from_str::<KinesisRecord>(r.get()).ok();
        let (here, data) = match rec {
            Some(KinesisRecord {
                data: Some(d),
                kinesis: None,
            }) => (join(path, &format!("Records[{i}].Data")), Some(d)),
            other => (
                join(path, &format!("Records[{i}].kinesis.data")),
                other.and_then(|k| k.kinesis).and_then(|k| k.data),
            ),
        };
        match data {
            Some(d) => decoded(ctx, &d, &here, depth),
            None => ctx.malformed(format!("EKS {here}: missing, or not a string")),
        }
    }
}

/// A Firehose HTTP-endpoint request body (or a Firehose transformation Lambda's input):
/// `{"requestId":...,"records":[{"data":...}]}`.
pub(super) fn firehose(ctx: &mut Ctx, top: &super::Top, path: &str, depth: u8) {
    let Some(records) = top.records else {
        return;
    };
    let records = match array(records, "records") {
        Ok(r) => r,
        Err(e) => {
            ctx.malformed(format!("{}EKS {e}", prefix(path)));
            return;
        }
    };
    if records.is_empty() {
        ctx.skipped("EKS: Firehose bodies with no records");
    }
    for (i, r) in records.into_iter().enumerate() {
        let here = join(path, &format!("records[{i}].data"));
        match serde_json::from_str::<DataRecord>(r.get())
            .ok()
            .and_then(|d| d.data)
        {
            Some(d) => decoded(ctx, &d, &here, depth),
            None => ctx.malformed(format!("EKS {here}: missing, or not a string")),
        }
    }
}

/// One Firehose record on its own: `{"data":...}`.
pub(super) fn firehose_record(ctx: &mut Ctx, top: &super::Top, path: &str, depth: u8) {
    let here = join(path, "data");
    match string(top.data) {
        Some(d) => decoded(ctx, &d, &here, depth),
        None => ctx.malformed(format!("EKS {here}: not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{InputFormat, Unwrapper};
    use base64::Engine as _;

    #[test]
    fn kinesis_get_records_output() {
        let payload = r#"{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/k/cluster","logStream":"kube-apiserver-audit-01","logEvents":[{"id":"1","timestamp":1,"message":"{\"kind\":\"Event\",\"verb\":\"get\"}"}]}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        let rec = format!(
            r#"{{"Records":[{{"SequenceNumber":"1","Data":"{b64}","PartitionKey":"p"}},{{"Data":7}}],"NextShardIterator":"x"}}"#
        );
        let got = Unwrapper::new(InputFormat::Auto, 1 << 20).unwrap_record(rec.as_bytes());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[0], Piece::Event { origin: Some(o), .. } if o.cluster.as_deref() == Some("k")),
            "{got:?}"
        );
        assert!(
            matches!(&got[1], Piece::Malformed(r) if r == "EKS Records[1].kinesis.data: missing, or not a string"),
            "{got:?}"
        );
    }

    #[test]
    fn log_groups_and_streams() {
        assert_eq!(
            cluster_of_log_group("/aws/eks/prod-eu/cluster").as_deref(),
            Some("prod-eu")
        );
        assert_eq!(cluster_of_log_group("/aws/eks//cluster"), None);
        assert_eq!(cluster_of_log_group("/aws/lambda/x"), None);
        assert_eq!(
            stream_kind("kube-apiserver-audit-71976ca11bea5d30"),
            "kube-apiserver-audit"
        );
        assert_eq!(stream_kind("authenticator-71976ca1"), "authenticator");
        assert_eq!(
            stream_kind("cloud-controller-manager-x"),
            "cloud-controller-manager-x"
        );
    }
}
