//! The head scanner (`audit::head::scan_head`) against serde_json: on the same bytes, it
//! accepts exactly what the serde-derived head (`audit::parse_head`) accepts, and keeps the
//! same fields. Inputs are ASCII (UTF-8 checks are the one place the two may differ: serde
//! checks the keys it decodes, the scanner the values it keeps; `parse_record` checks every
//! line as a whole before anything else anyway).

use audit::head::scan_head;
use audit::parse_head;
use proptest::prelude::*;

const LINES: &[&str] = &[
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods?limit=500","verb":"list","user":{"username":"system:node:n1","groups":["system:nodes","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubelet/v1.29","objectRef":{"resource":"pods","namespace":"ns","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-06-01T00:00:00.000001Z","stageTimestamp":"2025-06-01T00:00:00.000002Z","annotations":{"authorization.k8s.io/decision":"allow","x":"q\"uo\\te\u00e9"}}"#,
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"b2","stage":"ResponseComplete","verb":"create","objectRef":{"resource":"clusterroles","name":"x","apiGroup":"rbac.authorization.k8s.io"},"responseStatus":{"code":201},"requestObject":{"kind":"ClusterRole","rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["*"]}],"n":[-1.5e+3,0,true,false,null]}}"#,
    r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","verb":"get"},{"verb":"patch","objectRef":null}]}"#,
    r#"{"verb":"update","objectRef":{"resource":"clusterroles","resource2":1},"items":null}"#,
];

const ALPHABET: &[u8] =
    b"{}[]:,\"\\ \tnulltruefalse0123456789.eE+-abkindverbobjectRefresourceitems/u";

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let b = prop::sample::select(ALPHABET.to_vec());
    prop_oneof![
        (any::<usize>(), b.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<usize>(), b).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(line: &str, edits: &[Edit]) -> Vec<u8> {
    let mut v = line.as_bytes().to_vec();
    for e in edits {
        if v.is_empty() {
            break;
        }
        match *e {
            Edit::Replace(i, c) => {
                let i = i % v.len();
                v[i] = c;
            }
            Edit::Insert(i, c) => {
                let i = i % (v.len() + 1);
                v.insert(i, c);
            }
            Edit::Delete(i) => {
                let i = i % v.len();
                v.remove(i);
            }
            Edit::Truncate(i) => {
                let i = i % (v.len() + 1);
                v.truncate(i);
            }
        }
    }
    v
}

fn same(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = scan_head(bytes).and_then(|h| h.check().map(|()| h));
    let theirs = parse_head(bytes);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(a.kind.as_deref(), b.kind.as_deref());
            prop_assert_eq!(a.api_version.as_deref(), b.api_version.as_deref());
            prop_assert_eq!(a.verb.as_deref(), b.verb.as_deref());
            prop_assert_eq!(a.audit_id.as_deref(), b.audit_id.as_deref());
            prop_assert_eq!(
                a.resource.as_deref(),
                b.object_ref.as_ref().and_then(|o| o.resource.as_deref())
            );
            prop_assert_eq!(a.is_list, b.is_list());
        }
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "disagree on {:?}: scanner {:?}, serde {:?}",
            String::from_utf8_lossy(bytes),
            ours.map(|_| ()),
            theirs.map(|_| ())
        ),
    }
    Ok(())
}

/// A JSON-like value built from tokens that include near misses (`01`, `1.`, `"\x"`, ...), so
/// that structure is mostly right and the details are where the two parsers could disagree.
fn json_like() -> impl Strategy<Value = String> {
    let scalar = prop::sample::select(vec![
        "0",
        "-0",
        "01",
        "1.",
        "1.5",
        "-",
        "1e",
        "1e5",
        "1E+2",
        "2e-3",
        "-12.25e+07",
        ".5",
        "+1",
        "true",
        "tru",
        "null",
        "nul",
        "false",
        r#""s""#,
        r#""\n""#,
        r#""\x""#,
        r#""\u00e9""#,
        r#""\u12g4""#,
        r#""a\"b""#,
        "\"\t\"",
        r#""""#,
        r#""create""#,
        r#""clusterroles""#,
        r#""Event""#,
        r#""audit.k8s.io/v1""#,
        "7",
    ])
    .prop_map(str::to_string);
    let key = prop::sample::select(vec![
        "kind",
        "apiVersion",
        "verb",
        "auditID",
        "objectRef",
        "resource",
        "items",
        "a",
        "user",
        "k\\u0069nd",
    ]);
    scalar.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn agrees_with_serde_on_structured_values(v in json_like(), edits in prop::collection::vec(edit(), 0..2)) {
        let text = format!("{{\"kind\":\"Event\",\"x\":{v},\"objectRef\":{v}}}");
        same(&apply(&text, &edits))?;
        same(v.as_bytes())?;
    }

    #[test]
    fn agrees_with_serde_on_edited_lines(line in prop::sample::select(LINES), edits in prop::collection::vec(edit(), 1..4)) {
        same(&apply(line, &edits))?;
    }

    #[test]
    fn agrees_with_serde_on_random_text(bytes in prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 0..60)) {
        let mut v = b"{".to_vec();
        v.extend(bytes);
        same(&v)?;
    }
}

#[test]
fn agrees_on_the_unedited_lines() {
    for l in LINES {
        same(l.as_bytes()).unwrap();
        assert!(scan_head(l.as_bytes()).is_ok(), "{l}");
    }
}
