//! What storing one run's results costs, apart from everything else the tracker does: the
//! volume of the state file that `detect --state` leaves after the generated 1M-event log
//! (`scripts/bench.sh`), written the way the tracker writes it (three transactions, each
//! followed by a checkpoint, then the close).
//!
//! The volume was read from that state file: 8,877 change records, 2,439 objects holding
//! 13.7 KB of JSON in all (most are tombstones of deleted roles), and 688 alerts holding
//! 5.9 MB of JSON (8,556 bytes each on average). The rows here are synthetic, with those
//! counts and sizes; their keys are random, as audit IDs are.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use store::{ChangeRecord, Store, StoredObject};
use tempfile::TempDir;

const CHANGES: usize = 8_877;
const OBJECTS: usize = 2_439;
const LIVE_OBJECTS: usize = 60;
const ALERTS: usize = 688;
const ALERT_BYTES: usize = 8_556;
const ACTORS: usize = 92;
const COMMITS: usize = 3;

/// A small deterministic generator (splitmix64), so every run writes the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0xffff,
            b & 0xffff_ffff_ffff
        )
    }
}

struct Volume {
    changes: Vec<ChangeRecord>,
    objects: Vec<StoredObject>,
    alerts: Vec<(String, String)>,
}

fn volume() -> Volume {
    let mut rng = Rng(4);
    let kinds = ["ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"];
    let verbs = ["create", "update", "patch", "delete"];
    let time = |i: usize| {
        format!(
            "2025-06-01T{:02}:{:02}:{:02}.{:06}Z",
            i / 3_600_000 % 24,
            i / 60_000 % 60,
            i / 1_000 % 60,
            i % 1_000 * 1_000
        )
    };
    let changes = (0..CHANGES)
        .map(|i| {
            let kind = kinds[(rng.next() % 4) as usize];
            ChangeRecord {
                seq: 0,
                audit_id: rng.uuid(),
                kind: kind.to_string(),
                namespace: if kind.starts_with("Cluster") {
                    String::new()
                } else {
                    format!("team-{}", rng.next() % 12)
                },
                name: format!("role-{}", rng.next() % 2_000),
                verb: verbs[(rng.next() % 4) as usize].to_string(),
                // A few actors make most changes, as in the generated log.
                actor: Some(match rng.next() % 10 {
                    0..=2 => "alice@example.com".to_string(),
                    3..=5 => "bob@example.com".to_string(),
                    _ => format!(
                        "system:serviceaccount:kube-system:controller-{}",
                        rng.next() % ACTORS as u64
                    ),
                }),
                time: time(i * 400),
                resource_version: Some((100_000 + i).to_string()),
                outcome: "applied".to_string(),
            }
        })
        .collect();
    let objects = (0..OBJECTS)
        .map(|i| StoredObject {
            kind: "ClusterRole".into(),
            namespace: String::new(),
            name: format!("object-{i}"),
            json: if i < LIVE_OBJECTS {
                r#"{"kind":"ClusterRole","metadata":{"name":"x"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["create"]}]}"#.to_string()
            } else {
                "null".to_string()
            },
            audit_id: rng.uuid(),
            time: time(i * 1_400),
            resource_version: Some((200_000 + i).to_string()),
            unknown_since: None,
        })
        .collect();
    let alerts = (0..ALERTS)
        .map(|i| {
            let audit_id = rng.uuid();
            // JSON text of the average stored size, with the variety of a real alert.
            let mut json = format!(
                r#"{{"rule_id":"clusterrole-pod-write","audit_id":"{audit_id}","n":{i},"why":["#
            );
            while json.len() < ALERT_BYTES - 64 {
                json.push_str(&format!(
                    r#""Holders can create pods in namespace team-{} with any image ({:x})","#,
                    rng.next() % 12,
                    rng.next()
                ));
            }
            json.push_str(r#""end"]}"#);
            (audit_id, json)
        })
        .collect();
    Volume {
        changes,
        objects,
        alerts,
    }
}

/// A new state file, schema and all: opening is not what is measured.
fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = Store::open(&dir.path().join("state.db")).expect("a new state file");
    (dir, s)
}

fn write(mut s: Store, v: &Volume) {
    for part in 0..COMMITS {
        let share = |n: usize| (part * n / COMMITS)..((part + 1) * n / COMMITS);
        s.within_open(|tx| {
            for c in &v.changes[share(CHANGES)] {
                tx.record_change(&c.as_new())?;
            }
            for o in &v.objects[share(OBJECTS)] {
                tx.put_object(o)?;
            }
            for (audit_id, json) in &v.alerts[share(ALERTS)] {
                tx.insert_alert("clusterrole-pod-write", audit_id, None, json)?;
            }
            Ok::<_, store::StoreError>(())
        })
        .expect("written");
        s.commit().expect("committed");
        s.checkpoint().expect("checkpointed");
    }
    s.close().expect("closed");
}

fn write_volume(c: &mut Criterion) {
    let v = volume();
    let mut g = c.benchmark_group("store_write_volume");
    g.sample_size(20);
    g.bench_function("generated_1m_log", |b| {
        b.iter_batched(
            fresh,
            |(dir, s)| {
                write(s, &v);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, write_volume);
criterion_main!(benches);
