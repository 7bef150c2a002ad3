//! `kubeward serve` over HTTPS, with certificates made in the test (rcgen): server TLS, and
//! mutual TLS as the API server's webhook kubeconfig does it (client-certificate-data).

use crate::serve::{alerts_settle, event_list, Server};
use crate::util::event;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    client: bool,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// POSTs over TLS; `Err` when the TLS session fails (a rejected certificate).
fn https_post(
    addr: &str,
    ca_pem: &str,
    client: Option<&(String, String)>,
    body: &[u8],
) -> Result<u16, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let conn =
        ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    let head = format!(
        "POST /audit/webhook HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    tls.write_all(body).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if resp.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&resp).to_string();
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {text:?}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn mutual_tls_takes_the_api_server_and_rejects_other_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("kubeward test CA");
    let server = leaf(&ca, "kubeward", &["localhost", "127.0.0.1"], false);
    let apiserver = leaf(&ca, "kube-apiserver", &[], true);
    let rogue_ca = ca_rogue();
    let rogue = leaf(&rogue_ca, "kube-apiserver", &[], true);
    let alerts = dir.path().join("alerts.jsonl");
    let s = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            &write(dir.path(), "tls.crt", &server.0),
            "--tls-key",
            &write(dir.path(), "tls.key", &server.1),
            "--client-ca",
            &write(dir.path(), "ca.crt", &ca.pem()),
            "--alerts-file",
            alerts.to_str().unwrap(),
        ],
    );
    let ev = event(json!({}));
    let body = event_list(std::slice::from_ref(&ev));
    assert_eq!(
        https_post(&s.addr, &ca.pem(), Some(&apiserver), &body),
        Ok(200)
    );
    let rejected = https_post(
        &s.addr,
        &ca.pem(),
        Some(&rogue),
        &event_list(&[event(json!({}))]),
    );
    assert!(
        rejected.is_err(),
        "a certificate of another CA got {rejected:?}"
    );
    let anonymous = https_post(&s.addr, &ca.pem(), None, &event_list(&[event(json!({}))]));
    assert!(
        anonymous.is_err(),
        "no client certificate got {anonymous:?}"
    );
    let got = alerts_settle(&alerts, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["audit_id"], ev["auditID"]);
    assert_eq!(s.stop(), 0);
}

fn ca_rogue() -> CertifiedIssuer<'static, KeyPair> {
    ca("rogue CA")
}

#[test]
fn https_without_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("kubeward test CA");
    let server = leaf(&ca, "kubeward", &["localhost"], false);
    let s = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            &write(dir.path(), "tls.crt", &server.0),
            "--tls-key",
            &write(dir.path(), "tls.key", &server.1),
        ],
    );
    let body = event_list(&[event(json!({}))]);
    assert_eq!(https_post(&s.addr, &ca.pem(), None, &body), Ok(200));
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&s.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(s.stop(), 0);
}
