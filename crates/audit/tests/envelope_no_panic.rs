//! Robustness of the managed-cluster unwrappers: no input makes them panic, under any
//! `--input-format`, and a record never vanishes without a trace (something is reported for
//! every non-blank record: an event, a skip, or a problem).

use audit::envelope::{looks_like_envelope, sniff_head};
use audit::{InputFormat, Piece, Unwrapper};
use base64::Engine as _;
use proptest::prelude::*;
use std::io::Write;

const FORMATS: [InputFormat; 5] = [
    InputFormat::Auto,
    InputFormat::K8s,
    InputFormat::Eks,
    InputFormat::Gke,
    InputFormat::Aks,
];

const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"create","user":{"username":"u"},"objectRef":{"resource":"clusterroles","name":"r","apiGroup":"rbac.authorization.k8s.io"},"responseStatus":{"code":201},"requestObject":{"kind":"ClusterRole","rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["create"]}]}}"#;

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// One record of every shape.
fn records() -> Vec<String> {
    let msg = serde_json::to_string(EVENT).unwrap();
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logStream":"kube-apiserver-audit-0a","logEvents":[{{"id":"1","timestamp":1,"message":{msg}}}]}}"#
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz(payload.as_bytes()));
    vec![
        format!(r#"{{"timestamp":1,"message":{msg}}}"#),
        format!(r#"{{"events":[{{"logStreamName":"kube-apiserver-audit-1","message":{msg}}}]}}"#),
        payload.clone(),
        format!("{payload}{payload}"),
        format!(r#"{{"awslogs":{{"data":"{b64}"}}}}"#),
        format!(r#"{{"requestId":"r","records":[{{"data":"{b64}"}}]}}"#),
        format!(r#"{{"Records":[{{"kinesis":{{"data":"{b64}"}}}}]}}"#),
        r#"{"logName":"l","operation":{"id":"o","last":true},"protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.authorization.rbac.v1.clusterroles.create","resourceName":"rbac.authorization.k8s.io/v1/clusterroles/r","authenticationInfo":{"principalEmail":"e"},"request":{"@type":"rbac.authorization.k8s.io/v1.ClusterRole","rules":[]},"status":{"code":0}},"resource":{"labels":{"cluster_name":"c"}},"labels":{"command.gke.io/dryRun":"true"}}"#.into(),
        format!(r#"{{"category":"kube-audit","resourceId":"/S/MANAGEDCLUSTERS/C","properties":{{"log":{msg}}}}}"#),
        format!(r#"{{"records":[{{"category":"kube-audit-admin","properties":{{"log":{EVENT}}}}},{{"category":"guard","properties":{{}}}}]}}"#),
        EVENT.into(),
    ]
}

fn exercise(bytes: &[u8]) {
    let _ = sniff_head(bytes);
    let _ = looks_like_envelope(bytes);
    for f in FORMATS {
        let pieces = Unwrapper::new(f, 1 << 16).unwrap_record(bytes);
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            assert!(
                !pieces.is_empty(),
                "{f:?}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
        for p in pieces {
            if let Piece::Event { json, .. } = p {
                let _ = audit::parse_record(&json);
            }
        }
    }
}

#[test]
fn every_shape_unwraps_to_something() {
    for r in records() {
        let pieces = Unwrapper::new(InputFormat::Auto, 1 << 20).unwrap_record(r.as_bytes());
        assert!(
            pieces.iter().any(|p| matches!(p, Piece::Event { .. })),
            "{r}: {pieces:?}"
        );
        exercise(r.as_bytes());
    }
}

#[test]
fn truncation_at_every_position() {
    for r in records() {
        for i in 0..r.len() {
            exercise(&r.as_bytes()[..i]);
        }
    }
}

#[test]
fn decompression_is_capped() {
    // 4 MiB of zeros compress to a few KiB: the cap stops it, and it is reported.
    let big = gz(&vec![b' '; 4 << 20]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(big);
    let rec = format!(r#"{{"awslogs":{{"data":"{b64}"}}}}"#);
    let pieces = Unwrapper::new(InputFormat::Auto, 1 << 20).unwrap_record(rec.as_bytes());
    assert!(
        matches!(&pieces[..], [Piece::Malformed(r)] if r.contains("over the 1048576 byte cap")),
        "{pieces:?}"
    );
}

#[test]
fn deep_nesting_is_bounded() {
    // A Firehose record whose data is a Firehose body whose data is ... : reported, not followed.
    let mut rec = EVENT.to_string();
    for _ in 0..12 {
        let b64 = base64::engine::general_purpose::STANDARD.encode(rec.as_bytes());
        rec = format!(r#"{{"requestId":"r","records":[{{"data":"{b64}"}}]}}"#);
    }
    let pieces = Unwrapper::new(InputFormat::Auto, 1 << 24).unwrap_record(rec.as_bytes());
    assert!(
        matches!(&pieces[..], [Piece::Malformed(r)] if r.contains("nested too deep")),
        "{pieces:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn never_panics_on_byte_flips(which in 0usize..11, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut r = records()[which].clone().into_bytes();
        let i = at.index(r.len());
        r[i] = byte;
        exercise(&r);
    }

    #[test]
    fn never_panics_on_splices(a in 0usize..11, b in 0usize..11, i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
        let rs = records();
        let (x, y) = (rs[a].as_bytes(), rs[b].as_bytes());
        let mut s = x[..i.index(x.len())].to_vec();
        s.extend_from_slice(&y[j.index(y.len())..]);
        exercise(&s);
    }
}
