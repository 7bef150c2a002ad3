//! Stateful detection: a model of the cluster's RBAC kept up to date from the audit stream,
//! persisted with the alerts in a state file (`store`), and the rules that need it.
//!
//! - `clusterrole-pod-write`, exact: a change alerts only for pod write the role did not grant
//!   before (`newly_granted`); when the previous content is not known it alerts as the
//!   stateless rule does and says `previous_state: unknown`.
//! - `clusterrole-pod-write-aggregated`: a change that makes aggregating ClusterRoles (`edit`,
//!   `admin`, any role with an `aggregationRule`) gain pod write.
//! - `pod-write-role-bound`: a binding that gives a pod-write role to subjects that did not
//!   hold that pod write through any other binding of theirs.
//! - `clusterrole-changed-unverified`: a ClusterRole changed and the log does not show how.
//! - `binding-changed-unverified`: a binding of a pod-write role (or of a role not known)
//!   changed and the log does not show its subjects.
//!
//! **Order.** Events are applied in input order, with one guard for late deliveries (webhook
//! retries, several API servers): per object, the model keeps the version with the highest
//! `resourceVersion` of the returned object; when either side has none, the later
//! `stageTimestamp` wins. An older event still counts (its alerts are judged against an
//! unknown previous state, and it is recorded in the history) but never replaces the newer
//! version. An event whose auditID was already processed is skipped: a restarted run, an
//! overlapping file or a retried webhook batch alerts once.

use crate::alert::{
    AggregatorGain, Alert, Location, PreviousState, RecentChange, RulesSource, Severity,
    SubjectGain,
};
use crate::change::{parse_object, text_hash, Body, Change, ParsedObject};
use crate::clusterrole_pod_write::{
    fill, newly_granted, severity_of, summarize, AlertRules, RuleOptions, RBAC_GROUP,
};
use crate::explain::sh;
use crate::suppress::Suppressions;
use rbac::model::{bound_subjects_of, group_note, normalize, BoundSubject};
use rbac::podwrite::is_wildcard_rule;
use rbac::{
    role_pod_write, Binding, BindingKind, Inventory, ObjKind, PodWriteGrant, PolicyRule, Role,
    RoleKind, Snapshot, Subject,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use store::{NewChange, Position, Store, StoreError, StoredObject, Tx};

/// Rule id: a change makes aggregating ClusterRoles gain pod write.
pub const AGGREGATED_RULE_ID: &str = "clusterrole-pod-write-aggregated";
const AGGREGATED_TITLE: &str = "K8s Audit Log Cluster Role Aggregated Into Roles With Pod Write";
/// Rule id: a binding hands a pod-write role to new subjects.
pub const BOUND_RULE_ID: &str = "pod-write-role-bound";
const BOUND_TITLE: &str = "K8s Audit Log Pod Write Role Bound To New Subjects";
/// Rule id: a ClusterRole changed and the log does not show its content.
pub const UNVERIFIED_RULE_ID: &str = "clusterrole-changed-unverified";
const UNVERIFIED_TITLE: &str = "K8s Audit Log Cluster Role Changed (Content Not Logged)";

/// How the state file marks objects that came from `--rbac-snapshot` (their `audit_id`).
const SNAPSHOT_PREFIX: &str = "snapshot:";

/// Rule id: a binding changed and the log does not show its subjects.
pub const BINDING_UNVERIFIED_RULE_ID: &str = "binding-changed-unverified";
const BINDING_UNVERIFIED_TITLE: &str =
    "K8s Audit Log Binding Of A Pod Write Role Changed (Content Not Logged)";

/// Groups that stand for (nearly) everyone: binding pod write to them is critical.
pub const BROAD_GROUPS: &[&str] = &[
    "system:authenticated",
    "system:unauthenticated",
    "system:serviceaccounts",
];

/// How many of the actor's other RBAC changes an alert lists (the most recent; all are counted).
const RECENT_LIMIT: usize = 10;

/// How far back the actor's other RBAC changes are listed in an alert.
const RECENT_WINDOW_NS: i128 = 3_600 * 1_000_000_000;

/// What can stop stateful detection.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object stored in the state file cannot be read back.
    #[error("{path}: stored {kind} {name:?} cannot be read ({message}); the state file is damaged: move it away to start afresh")]
    Corrupt {
        /// The state file.
        path: String,
        /// Its kind.
        kind: String,
        /// Its namespace/name.
        name: String,
        /// Why.
        message: String,
    },
}

/// Counts of what the tracker did, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TrackerStats {
    /// RBAC objects known when the run started (from the state file).
    pub loaded: u64,
    /// Objects added from `--rbac-snapshot` files (the state did not know them).
    pub seeded: u64,
    /// Changes that updated the model.
    pub applied: u64,
    /// Changes older than the version the model holds (late or out-of-order delivery).
    pub stale: u64,
    /// Events already processed (same auditID): restarts, overlapping inputs, retries.
    pub redelivered: u64,
    /// Changes whose outcome the log does not show (metadata level, unknown patch target).
    pub unverified: u64,
    /// Aggregation-controller rewrites explained by an earlier change (not alerted again).
    pub attributed: u64,
    /// Alerts already stored by an earlier run (not printed again).
    pub repeated_alerts: u64,
}

type Key = (ObjKind, String, String);

#[derive(Debug, Clone, Default)]
struct Meta {
    rv: Option<u64>,
    time_ns: Option<i128>,
    unknown_since: Option<String>,
    deleted: bool,
    /// Not seen in the log or a snapshot: Kubernetes' bootstrap policy was assumed.
    assumed: bool,
    /// From a snapshot, not from the log.
    seeded: bool,
    /// Hash of the stored JSON text, to skip rewriting an object that did not change (a log
    /// that re-creates or re-applies the same object thousands of times).
    text_hash: Option<u64>,
    /// For a role held in full: the pod write its own rules grant (computed by the workers),
    /// so that the next change of it compares without recomputing.
    grants: Option<std::sync::Arc<Vec<PodWriteGrant>>>,
}

/// A whole object read now (a patch result, or a body the workers did not decode).
fn known(v: Value, source: RulesSource) -> Outcome {
    match parse_object(&v.to_string()) {
        Ok(p) => Outcome::Known(source, Box::new(p)),
        Err(e) => Outcome::Unknown(format!("the resulting object cannot be read ({e})")),
    }
}

/// What the event shows of the object after the change.
enum Outcome {
    Deleted,
    Known(RulesSource, Box<ParsedObject>),
    Unknown(String),
}

/// One actor's recent changes, kept in memory so that alerts do not query the history: a busy
/// account makes thousands of changes an hour, and counting them per alert showed in profiles.
#[derive(Default)]
struct ActorLog {
    /// Every change of the actor at or after this time is in `entries`.
    complete_from: i128,
    /// Sorted by time (then record order).
    entries: Vec<(i128, RecentChange)>,
}

/// What a role's effective rules amount to, cached: bindings are judged against their role
/// thousands of times, and `edit` alone has dozens of rules.
struct RoleFacts {
    grants: Vec<PodWriteGrant>,
    /// A `*`/`*`/`*` rule in the core group: cluster-admin.
    wildcard: bool,
}

type RoleKey = (RoleKind, String, String);

/// An object row written in the open transaction and not yet handed to the store: a log that
/// re-creates one binding thousands of times then writes its row once per commit.
enum PendingRow {
    /// The whole row ([`Tx::put_object`]).
    Put(StoredObject),
    /// The change that last touched an unchanged object ([`Tx::touch_object`]).
    Touch {
        audit_id: String,
        time: String,
        resource_version: Option<String>,
    },
}

/// The model and its rules; the store is kept apart so a transaction can borrow both.
struct Model {
    /// Object rows waiting for the next commit ([`Model::flush_rows`]).
    pending: HashMap<Key, PendingRow>,
    facts: HashMap<RoleKey, std::sync::Arc<RoleFacts>>,
    actors: HashMap<String, ActorLog>,
    inv: Inventory,
    meta: HashMap<Key, Meta>,
    opts: RuleOptions,
    suppressions: Suppressions,
    stats: TrackerStats,
    path: String,
}

/// An alert to report, with the JSON text it was stored as (printers reuse it).
#[derive(Debug)]
pub struct Reported {
    /// The alert.
    pub alert: Alert,
    /// Its JSON, one line.
    pub json: String,
}

/// The stateful detector: feed it changes in input order with [`Tracker::apply_batch`].
pub struct Tracker {
    store: Store,
    model: Model,
}

impl Tracker {
    /// Loads the model from the state file.
    pub fn open(
        store: Store,
        opts: RuleOptions,
        suppressions: Suppressions,
    ) -> Result<Tracker, StateError> {
        let path = store.path().display().to_string();
        let mut model = Model {
            pending: HashMap::new(),
            facts: HashMap::new(),
            actors: HashMap::new(),
            inv: Inventory::new(),
            meta: HashMap::new(),
            opts,
            suppressions,
            stats: TrackerStats::default(),
            path,
        };
        for o in store.objects()? {
            let Some(kind) = ObjKind::from_kind(&o.kind) else {
                return Err(model.corrupt(&o, "unknown kind".into()));
            };
            // `null` is a deleted object, or (with the unknown marker) one whose content was
            // never seen.
            let null = o.json.trim() == "null";
            let deleted = null && o.unknown_since.is_none();
            let key = (kind, o.namespace.clone(), o.name.clone());
            if !null {
                model.put(kind, &o.json).map_err(|e| model.corrupt(&o, e))?;
            }
            model.meta.insert(
                key,
                Meta {
                    rv: o.resource_version.as_deref().and_then(|s| s.parse().ok()),
                    time_ns: audit::time::parse_rfc3339(&o.time),
                    unknown_since: o.unknown_since.clone(),
                    deleted,
                    assumed: false,
                    seeded: o.audit_id.starts_with(SNAPSHOT_PREFIX),
                    text_hash: (!null).then(|| text_hash(&o.json)),
                    grants: None,
                },
            );
            model.stats.loaded += 1;
        }
        Ok(Tracker { store, model })
    }

    /// Adds the objects of a snapshot the state does not know yet, and stores them.
    pub fn seed(&mut self, snap: &Snapshot, label: &str) -> Result<u64, StateError> {
        let model = &mut self.model;
        let n = self.store.transaction(|tx| {
            let mut n = 0;
            for (kind, v, item) in snapshot_objects(snap) {
                let key = object_key(kind, &v);
                if model.meta.get(&key).is_some_and(|m| !m.assumed) {
                    continue;
                }
                let rv = v
                    .get("metadata")
                    .and_then(|m| m.get("resourceVersion"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                tx.put_object(&StoredObject {
                    kind: kind.as_str().to_string(),
                    namespace: key.1.clone(),
                    name: key.2.clone(),
                    json: v.to_string(),
                    audit_id: format!("{SNAPSHOT_PREFIX}{label}"),
                    time: String::new(),
                    resource_version: rv.clone(),
                    unknown_since: None,
                })?;
                model.put_item(item);
                // A snapshot's resourceVersion orders the log's events against it: older ones
                // (a snapshot taken after the logs) are judged as out of order.
                model.meta.insert(
                    key,
                    Meta {
                        rv: rv.and_then(|r| r.parse().ok()),
                        seeded: true,
                        ..Meta::default()
                    },
                );
                n += 1;
            }
            Ok::<_, StoreError>(n)
        })?;
        model.stats.seeded += n;
        Ok(n)
    }

    /// Fills in, in memory only, objects of Kubernetes' bootstrap policy that neither the
    /// state nor a snapshot knows: every cluster has them (`cluster-admin`, `edit`, ...), and
    /// bindings to them are judged by their usual rules. Alerts that rely on one say so.
    pub fn assume_bootstrap(&mut self) {
        let snap = rbac::inventory::bootstrap();
        for (kind, v, item) in snapshot_objects(&snap) {
            let key = object_key(kind, &v);
            if self.model.meta.contains_key(&key) {
                continue;
            }
            self.model.put_item(item);
            self.model.meta.insert(
                key,
                Meta {
                    assumed: true,
                    ..Meta::default()
                },
            );
        }
    }

    /// How far an input was read by an earlier run.
    pub fn position(&self, source: &str) -> Result<Option<Position>, StateError> {
        Ok(self.store.position(source)?)
    }

    /// Counts so far.
    pub fn stats(&self) -> TrackerStats {
        self.model.stats
    }

    /// Replaces the suppressions applied to the alerts of later changes (a reloaded config).
    pub fn set_suppressions(&mut self, suppressions: Suppressions) {
        self.model.suppressions = suppressions;
    }

    /// Applies changes in order, in one transaction together with the input position reached
    /// (so a crash loses nothing committed and repeats nothing). Returns the alerts to report,
    /// suppressed ones included (`suppressed_by` set); alerts an earlier run already stored are
    /// counted, not returned.
    pub fn apply_batch(
        &mut self,
        changes: impl IntoIterator<Item = (Change, Location)>,
        position: Option<(&str, &Position)>,
    ) -> Result<Vec<Reported>, StateError> {
        let out = self.apply_uncommitted(changes, position)?;
        self.commit()?;
        Ok(out)
    }

    /// As [`Tracker::apply_batch`], but the transaction stays open for later batches until
    /// [`Tracker::commit`]. The alerts returned are stored only once that commit succeeds:
    /// report them after it, so that a run killed before it does not print alerts a rerun
    /// prints again. On an error, everything since the last commit is rolled back and the
    /// model no longer matches the state file: stop using the tracker.
    pub fn apply_uncommitted(
        &mut self,
        changes: impl IntoIterator<Item = (Change, Location)>,
        position: Option<(&str, &Position)>,
    ) -> Result<Vec<Reported>, StateError> {
        let mut changes = changes.into_iter().peekable();
        if changes.peek().is_none() && position.is_none() {
            return Ok(Vec::new());
        }
        let model = &mut self.model;
        let mut out = Vec::new();
        let done = self.store.within_open(|tx| {
            for (ch, at) in changes {
                model.apply(tx, ch, at, &mut out)?;
            }
            if let Some((source, p)) = position {
                tx.set_position(source, p)?;
            }
            Ok::<_, StateError>(())
        });
        if done.is_err() {
            // Rolled back: rows waiting for the commit belong to it.
            model.pending.clear();
        }
        done?;
        Ok(out)
    }

    /// Commits what [`Tracker::apply_uncommitted`] applied; nothing when nothing is pending.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if !self.model.pending.is_empty() {
            let model = &mut self.model;
            self.store.within_open(|tx| model.flush_rows(tx))?;
        }
        Ok(self.store.commit()?)
    }

    /// Checkpoints the state file's WAL ([`store::Store::checkpoint`]).
    pub fn checkpoint(&mut self) -> Result<(), StateError> {
        Ok(self.store.checkpoint()?)
    }

    /// Closes the state file ([`store::Store::close`]) and frees the model on the calling
    /// thread, which is the one that built most of it: freeing memory another thread allocated
    /// costs several times more. Returns the final counts.
    pub fn close(self) -> Result<TrackerStats, StateError> {
        let stats = self.model.stats;
        drop(self.model);
        self.store.close()?;
        Ok(stats)
    }

    /// As [`Tracker::close`], for a process that exits right after: the model is left for
    /// the exit to reclaim instead of being freed piece by piece (about 6 ms after a
    /// 1M-event run, all of it after the reading is done).
    pub fn close_before_exit(self) -> Result<TrackerStats, StateError> {
        let stats = self.model.stats;
        std::mem::forget(self.model);
        self.store.close()?;
        Ok(stats)
    }

    /// Whether applied changes wait for [`Tracker::commit`].
    pub fn uncommitted(&self) -> bool {
        self.store.in_transaction()
    }
}

/// A role or binding of a snapshot.
enum Item<'s> {
    Role(&'s Role),
    Binding(&'s Binding),
}

/// Every role and binding of a snapshot, with its Kubernetes JSON.
fn snapshot_objects(snap: &Snapshot) -> Vec<(ObjKind, Value, Item<'_>)> {
    let roles = snap
        .roles
        .iter()
        .map(|r| (r.kind.into(), role_json(r), Item::Role(r)));
    let bindings = snap
        .bindings
        .iter()
        .map(|b| (b.kind.into(), binding_json(b), Item::Binding(b)));
    roles.chain(bindings).collect()
}

fn object_key(kind: ObjKind, v: &Value) -> Key {
    let meta = |k: &str| {
        v.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ns = if kind.namespaced() {
        meta("namespace")
    } else {
        String::new()
    };
    (kind, ns, meta("name"))
}

/// A role as the API server would return it.
fn role_json(r: &Role) -> Value {
    let mut meta = json!({ "name": r.name });
    if let Some(rv) = &r.resource_version {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(ns) = &r.namespace {
        meta["namespace"] = json!(ns);
    }
    if !r.labels.is_empty() {
        meta["labels"] = json!(r.labels);
    }
    let mut v = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": r.kind.to_string(),
        "metadata": meta,
        "rules": r.rules,
    });
    if let Some(sel) = &r.aggregation {
        v["aggregationRule"] = json!({ "clusterRoleSelectors": sel });
    }
    v
}

/// A binding as the API server would return it.
fn binding_json(b: &Binding) -> Value {
    let mut meta = json!({ "name": b.name });
    if let Some(rv) = &b.resource_version {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(ns) = &b.namespace {
        meta["namespace"] = json!(ns);
    }
    let subjects: Vec<Value> = b
        .subjects
        .iter()
        .map(|s| {
            let mut o = json!({ "kind": s.kind, "name": s.name });
            if let Some(ns) = &s.namespace {
                o["namespace"] = json!(ns);
            }
            if s.kind != "ServiceAccount" {
                o["apiGroup"] = json!(RBAC_GROUP);
            }
            o
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": b.kind.to_string(),
        "metadata": meta,
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": b.role_ref.kind, "name": b.role_ref.name },
        "subjects": subjects,
    })
}

fn is_broad(s: &Subject) -> bool {
    s.kind == "Group" && BROAD_GROUPS.contains(&s.name.as_str())
}

fn write_row(tx: &Tx<'_>, key: &Key, row: PendingRow) -> Result<(), StoreError> {
    match row {
        PendingRow::Put(o) => tx.put_object(&o),
        PendingRow::Touch {
            audit_id,
            time,
            resource_version,
        } => tx
            .touch_object(
                key.0.as_str(),
                &key.1,
                &key.2,
                &audit_id,
                &time,
                resource_version.as_deref(),
            )
            .map(|_| ()),
    }
}

impl Model {
    fn corrupt(&self, o: &StoredObject, message: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            kind: o.kind.clone(),
            name: if o.namespace.is_empty() {
                o.name.clone()
            } else {
                format!("{}/{}", o.namespace, o.name)
            },
            message,
        }
    }

    fn put_item(&mut self, item: Item<'_>) {
        self.facts.clear();
        match item {
            Item::Role(r) => {
                self.inv.put_role(r.clone());
            }
            Item::Binding(b) => {
                self.inv.put_binding(b.clone());
            }
        }
    }

    /// Puts an object (JSON text) into the inventory.
    fn put(&mut self, kind: ObjKind, text: &str) -> Result<(), String> {
        let p = parse_object(text)?;
        self.facts.clear();
        match (kind.role_kind(), p.role, p.binding) {
            (Some(_), Some(r), _) => {
                self.inv.put_role(r);
            }
            (None, _, Some(b)) => {
                self.inv.put_binding(b);
            }
            _ => return Err(format!("not a {}", kind.as_str())),
        }
        Ok(())
    }

    fn role_facts(
        &mut self,
        kind: RoleKind,
        ns: &str,
        name: &str,
    ) -> Option<std::sync::Arc<RoleFacts>> {
        let key = (kind, ns.to_string(), name.to_string());
        if let Some(f) = self.facts.get(&key) {
            return Some(f.clone());
        }
        let rules = self.inv.effective_rules(kind, ns, name)?;
        let f = std::sync::Arc::new(RoleFacts {
            grants: self.grants(&rules),
            wildcard: rules.iter().any(is_wildcard_rule),
        });
        self.facts.insert(key, f.clone());
        Some(f)
    }

    /// The object as the model holds it, as Kubernetes JSON.
    fn object_json(&self, key: &Key) -> Option<Value> {
        if let Some(k) = key.0.role_kind() {
            return self.inv.role(k, &key.1, &key.2).map(role_json);
        }
        let k = key.0.binding_kind()?;
        self.inv.binding(k, &key.1, &key.2).map(binding_json)
    }

    fn grants(&self, rules: &[PolicyRule]) -> Vec<PodWriteGrant> {
        role_pod_write(rules, self.opts.pod_write)
    }

    fn bound_subjects(&self, kind: RoleKind, ns: &str, name: &str) -> Vec<BoundSubject> {
        bound_subjects_of(self.inv.bindings_to(kind, ns, name)).0
    }

    /// Stores an object row at the next commit.
    fn put_row(&mut self, key: &Key, o: StoredObject) {
        self.pending.insert(key.clone(), PendingRow::Put(o));
    }

    /// [`Tx::touch_object`] at the next commit (on the row as it will be by then).
    fn touch_row(&mut self, key: &Key, audit_id: &str, time: &str, rv: Option<String>) {
        match self.pending.get_mut(key) {
            Some(PendingRow::Put(o)) => {
                o.audit_id = audit_id.to_string();
                o.time = time.to_string();
                o.resource_version = rv;
            }
            _ => {
                self.pending.insert(
                    key.clone(),
                    PendingRow::Touch {
                        audit_id: audit_id.to_string(),
                        time: time.to_string(),
                        resource_version: rv,
                    },
                );
            }
        }
    }

    /// Writes the row of `key` waiting for the commit, before something reads or updates it
    /// in the store.
    fn flush_row(&mut self, tx: &Tx<'_>, key: &Key) -> Result<(), StateError> {
        if let Some(row) = self.pending.remove(key) {
            write_row(tx, key, row)?;
        }
        Ok(())
    }

    /// Writes every row waiting for the commit.
    fn flush_rows(&mut self, tx: &Tx<'_>) -> Result<(), StateError> {
        for (key, row) in self.pending.drain() {
            write_row(tx, &key, row)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        tx: &Tx<'_>,
        mut ch: Change,
        at: Location,
        out: &mut Vec<Reported>,
    ) -> Result<(), StateError> {
        let audit_id = ch
            .base
            .audit_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                // No auditID (hand-written or re-encoded events): the event's own facts stand
                // in for one, so that the same event read again is still recognised.
                let facts = format!(
                    "{:?}|{:?}|{}|{:?}|{:?}|{}|{}|{:?}",
                    ch.time,
                    ch.base.request_uri,
                    ch.verb,
                    ch.base.actor.username,
                    ch.name,
                    ch.namespace,
                    ch.kind.as_str(),
                    ch.resource_version,
                );
                format!("no-audit-id:{:016x}", text_hash(&facts))
            });
        let time = std::mem::take(&mut ch.time_text);
        let rv_text = ch.resource_version.map(|v| v.to_string());
        let Some(name) = ch.name.clone() else {
            // Recorded first, so that one statement both detects a redelivery and records.
            let rec = new_change(&ch, &audit_id, &time, rv_text.as_deref(), "applied");
            if !tx.record_change(&rec)? {
                self.stats.redelivered += 1;
                return Ok(());
            }
            let outcome = self.nameless(tx, &ch, &time, &at, &audit_id, out)?;
            if outcome != rec.outcome {
                tx.set_change_outcome(&audit_id, &outcome)?;
            }
            let rec = new_change(&ch, &audit_id, &time, rv_text.as_deref(), &outcome);
            self.note_change(&rec, ch.time_ns);
            return Ok(());
        };
        let key: Key = (ch.kind, ch.namespace.clone(), name.clone());
        let prev = self.meta.get(&key).cloned();
        let order = prev.as_ref().map(|m| {
            match (ch.resource_version, m.rv) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => match (ch.time_ns, m.time_ns) {
                    // Equal times are not the same version: apply the later line.
                    (Some(a), Some(b)) if a < b => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                },
            }
        });
        // A delete may return the object it deleted, with the version the model holds.
        let same_version = order == Some(std::cmp::Ordering::Equal) && ch.verb != "delete";
        let stale = order == Some(std::cmp::Ordering::Less);
        // A create of an object the model holds means a delete is missing from the log (or
        // the log repeats itself): what the object grants is judged against the version the
        // model held, as an update would be, so re-creating the same thing is not news.
        let recreated = ch.verb == "create"
            && !stale
            && prev
                .as_ref()
                .is_some_and(|m| !m.deleted && !m.assumed && !m.seeded);
        let prev_state = if ch.verb == "create" && !recreated {
            PreviousState::Absent
        } else {
            match &prev {
                Some(m) if !stale && !m.deleted && m.unknown_since.is_none() => {
                    PreviousState::Known
                }
                _ => PreviousState::Unknown,
            }
        };
        // Recorded before anything changes, so that one statement both detects a redelivery and
        // records, with the outcome the change will nearly always have; the rare change that
        // ends otherwise (a patch that does not apply) corrects it at the end.
        let predicted = if same_version {
            "same-version"
        } else if stale {
            "stale"
        } else if ch.verb == "delete" {
            "deleted"
        } else {
            match &ch.body {
                Body::Object { object: Ok(_), .. } => "applied",
                Body::Patch { value, .. }
                    if prev_state == PreviousState::Known || is_whole_object(value, ch.kind) =>
                {
                    "applied"
                }
                _ => "unverified",
            }
        };
        let rec = new_change(&ch, &audit_id, &time, rv_text.as_deref(), predicted);
        if !tx.record_change(&rec)? {
            self.stats.redelivered += 1;
            return Ok(());
        }
        if same_version {
            // The same version again under another auditID: nothing new.
            self.stats.redelivered += 1;
            return Ok(());
        }
        let body = std::mem::replace(
            &mut ch.body,
            Body::None {
                reason: String::new(),
            },
        );
        let mut outcome = match (body, ch.verb.as_str()) {
            (_, "delete") => Outcome::Deleted,
            (Body::Object { object, source, .. }, _) => match object {
                Ok(p) => Outcome::Known(source, p),
                Err(e) => Outcome::Unknown(format!("the resulting object cannot be read ({e})")),
            },
            (Body::Patch { value, kind }, _) => {
                let target = if prev_state == PreviousState::Known {
                    self.flush_row(tx, &key)?;
                    match tx
                        .get_object(ch.kind.as_str(), &key.1, &key.2)?
                        .and_then(|o| serde_json::from_str::<Value>(&o.json).ok())
                        .filter(|v| !v.is_null())
                    {
                        Some(v) => Some(v),
                        // Assumed bootstrap objects live in memory only.
                        None => self.object_json(&key),
                    }
                } else {
                    None
                };
                match target {
                    Some(t) => match rbac::patch::apply(&t, &value, kind) {
                        Ok(v) => known(v, RulesSource::PatchedState),
                        Err(e) => Outcome::Unknown(format!(
                            "the patch could not be applied to the last known object ({e})"
                        )),
                    },
                    // A server-side apply body is the whole intended object.
                    None if is_whole_object(&value, ch.kind) => {
                        known(value, RulesSource::RequestObject)
                    }
                    None => Outcome::Unknown(
                        "only the patch was logged, and the object it applies to is not known"
                            .into(),
                    ),
                }
            }
            (Body::None { reason }, _) => Outcome::Unknown(reason),
        };
        let ctx = Ctx {
            ch: &ch,
            recreated,
            key: &key,
            time: &time,
            audit_id: &audit_id,
            prev_state,
            stale,
            assumed: prev.as_ref().is_some_and(|m| m.assumed),
            prev_grants: prev.as_ref().and_then(|m| m.grants.clone()),
        };
        let mut alerts = match ch.kind {
            ObjKind::ClusterRole | ObjKind::Role => self.role_change(&ctx, &mut outcome),
            ObjKind::ClusterRoleBinding | ObjKind::RoleBinding => {
                self.binding_change(&ctx, &mut outcome)
            }
        };
        // Persist the object: the row this change leaves, with `json` as its content.
        let row = |json: String| StoredObject {
            kind: ch.kind.as_str().into(),
            namespace: key.1.clone(),
            name: key.2.clone(),
            json,
            audit_id: audit_id.clone(),
            time: time.clone(),
            resource_version: rv_text.clone(),
            unknown_since: None,
        };
        let final_outcome = if stale {
            self.stats.stale += 1;
            "stale"
        } else {
            match &mut outcome {
                Outcome::Known(_, p) => {
                    let hash = p.text_hash;
                    let same = prev.as_ref().is_some_and(|m| {
                        !m.deleted && m.unknown_since.is_none() && m.text_hash == Some(hash)
                    });
                    if same {
                        self.touch_row(&key, &audit_id, &time, rv_text.clone());
                    } else {
                        // The outcome is not read again: its parts move into the model.
                        self.put_row(&key, row(std::mem::take(&mut p.text)));
                    }
                    self.meta.insert(
                        key.clone(),
                        Meta {
                            rv: ch.resource_version,
                            time_ns: ch.time_ns,
                            text_hash: Some(hash),
                            grants: p.grants.take().map(std::sync::Arc::new),
                            ..Meta::default()
                        },
                    );
                    self.stats.applied += 1;
                    "applied"
                }
                Outcome::Deleted => {
                    self.put_row(&key, row("null".into()));
                    self.meta.insert(
                        key.clone(),
                        Meta {
                            rv: ch.resource_version,
                            time_ns: ch.time_ns,
                            deleted: true,
                            ..Meta::default()
                        },
                    );
                    self.stats.applied += 1;
                    "deleted"
                }
                Outcome::Unknown(_) => {
                    self.stats.unverified += 1;
                    self.flush_row(tx, &key)?;
                    let marked = tx.mark_unknown_at(
                        ch.kind.as_str(),
                        &key.1,
                        &key.2,
                        &time,
                        rv_text.as_deref(),
                    )?;
                    if !marked {
                        // Not in the state file: keep what memory knows (an assumed bootstrap
                        // object), or `null`, with the marker, so a later run loads the same.
                        let last = prev
                            .as_ref()
                            .filter(|m| !m.deleted)
                            .and_then(|_| self.object_json(&key));
                        tx.put_object(&StoredObject {
                            resource_version: None,
                            unknown_since: Some(time.clone()),
                            ..row(last.map_or_else(|| "null".to_string(), |v| v.to_string()))
                        })?;
                    }
                    let m = self.meta.entry(key.clone()).or_default();
                    m.unknown_since.get_or_insert(time.clone());
                    // It exists (a change succeeded on it), whatever its content is.
                    m.deleted = false;
                    m.assumed = false;
                    m.rv = ch.resource_version.or(m.rv);
                    m.time_ns = ch.time_ns.max(m.time_ns);
                    "unverified"
                }
            }
        };
        for a in &mut alerts {
            self.add_context(tx, a, &ctx)?;
        }
        if final_outcome != predicted {
            tx.set_change_outcome(&audit_id, final_outcome)?;
        }
        let rec = new_change(&ch, &audit_id, &time, rv_text.as_deref(), final_outcome);
        self.note_change(&rec, ch.time_ns);
        for a in alerts {
            self.emit(tx, a, &at, &time, &audit_id, out)?;
        }
        Ok(())
    }

    /// A change with no object name: deletecollection (everything of that kind there may be
    /// gone), or an event that names nothing.
    fn nameless(
        &mut self,
        tx: &Tx<'_>,
        ch: &Change,
        time: &str,
        at: &Location,
        audit_id: &str,
        out: &mut Vec<Reported>,
    ) -> Result<String, StateError> {
        self.stats.unverified += 1;
        if ch.verb == "deletecollection" {
            let keys: Vec<Key> = self
                .meta
                .iter()
                .filter(|(k, m)| k.0 == ch.kind && k.1 == ch.namespace && !m.deleted)
                .map(|(k, _)| k.clone())
                .collect();
            self.flush_rows(tx)?;
            for k in keys {
                tx.mark_unknown(k.0.as_str(), &k.1, &k.2, time)?;
                if let Some(m) = self.meta.get_mut(&k) {
                    m.unknown_since.get_or_insert(time.to_string());
                }
            }
            return Ok("unverified".into());
        }
        if ch.kind == ObjKind::ClusterRole && ch.verb != "delete" {
            let mut a = self.unverified(
                ch,
                None,
                "the event names no ClusterRole and shows no body".into(),
            );
            a.context.previous_state = Some(PreviousState::Unknown);
            self.emit(tx, a, at, time, audit_id, out)?;
        }
        Ok("unverified".into())
    }

    fn unverified(&self, ch: &Change, name: Option<&str>, reason: String) -> Alert {
        let mut a = Alert::clone(&ch.base);
        a.rule_id = UNVERIFIED_RULE_ID;
        a.title = UNVERIFIED_TITLE;
        a.severity = Severity::Info;
        a.role = name.map(str::to_string);
        a.rules_source = RulesSource::NotLogged;
        let shown = name.map(sh).unwrap_or_else(|| "NAME".into());
        a.why = vec![format!(
            "The ClusterRole was changed ({}), but the log does not show its rules afterwards: it may now grant pod write. Audit policies that log RBAC at Metadata level hide this; log rbac.authorization.k8s.io at RequestResponse.",
            ch.verb
        )];
        a.investigation = vec![
            format!("See what it grants now: kubectl get clusterrole {shown} -o yaml"),
            format!(
                "With kubeward, against the cluster: kubeward rbac pod-writers --live --format json | jq -c --arg role {shown} 'select(.name == $role)'"
            ),
            "Or from a fresh snapshot: kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A -o yaml > rbac.yaml && kubeward rbac pod-writers rbac.yaml".into(),
        ];
        a.notes.push(reason);
        a
    }

    fn role_change(&mut self, c: &Ctx<'_>, outcome: &mut Outcome) -> Vec<Alert> {
        let Some(rk) = c.ch.kind.role_kind() else {
            return Vec::new();
        };
        let (ns, name) = (c.key.1.as_str(), c.key.2.as_str());
        // The role moves from the change into the model. Only ClusterRole verdicts look at it
        // afterwards, so only they keep a copy; most changes are namespaced Roles or do not
        // alert, and copying every role showed in profiles.
        let taken: Option<Role> = match outcome {
            Outcome::Known(_, p) => p.role.take(),
            _ => None,
        };
        let agg_relevant = rk == RoleKind::ClusterRole
            && !c.stale
            && !matches!(outcome, Outcome::Unknown(_))
            && self
                .inv
                .affects_aggregation(self.inv.role(rk, ns, name), taken.as_ref());
        let agg_before = agg_relevant.then(|| self.inv.aggregated().clone());
        let known_before = c.prev_state == PreviousState::Known;
        let (before, after) = if c.stale {
            (None, taken)
        } else {
            let mut before = None;
            let mut after = None;
            match (&*outcome, taken) {
                (Outcome::Known(..), Some(r)) => {
                    if rk == RoleKind::ClusterRole {
                        after = Some(r.clone());
                    }
                    before = self.inv.put_role(r).filter(|_| known_before);
                }
                (Outcome::Known(..), None) => {
                    if known_before {
                        before = self.inv.role(rk, ns, name).cloned();
                    }
                }
                (Outcome::Deleted, _) => {
                    self.inv.remove_role(rk, ns, name);
                }
                (Outcome::Unknown(_), _) => {}
            }
            if agg_relevant {
                self.facts.clear();
            } else {
                self.facts.remove(&(rk, ns.to_string(), name.to_string()));
            }
            (before, after)
        };
        let outcome = &*outcome;
        let mut alerts = Vec::new();
        if rk == RoleKind::ClusterRole {
            if let Some(a) = self.pod_write_alert(
                c,
                outcome,
                before.as_ref(),
                after.as_ref(),
                agg_before.as_ref(),
            ) {
                alerts.push(a);
            }
        }
        if let Some(before_agg) = agg_before {
            let after_agg = self.inv.aggregated().clone();
            let source = match outcome {
                Outcome::Known(src, _) => *src,
                _ => RulesSource::NotLogged,
            };
            if let Some(a) =
                self.aggregated_alert(c, source, after.as_ref(), &before_agg, &after_agg)
            {
                alerts.push(a);
            }
        }
        alerts
    }

    fn pod_write_alert(
        &mut self,
        c: &Ctx<'_>,
        outcome: &Outcome,
        before: Option<&Role>,
        after: Option<&Role>,
        agg_before: Option<&BTreeMap<String, Vec<PolicyRule>>>,
    ) -> Option<Alert> {
        let name = c.key.2.as_str();
        match outcome {
            Outcome::Deleted => None,
            Outcome::Unknown(reason) => {
                if let Some(st) = &c.ch.stateless {
                    let mut a = (**st).clone();
                    a.notes.push(format!("{reason}; judged on the event alone"));
                    a.context.previous_state = Some(PreviousState::Unknown);
                    a.context.newly_granted = Some(a.grants.clone());
                    Some(a)
                } else {
                    let mut a = self.unverified(c.ch, Some(name), reason.clone());
                    a.context.previous_state = Some(c.prev_state);
                    Some(a)
                }
            }
            Outcome::Known(source, p) => {
                let parsed: &[PolicyRule] = after.map_or(&[], |r| r.rules.as_slice());
                let computed;
                let after_grants: &[PodWriteGrant] = match &p.grants {
                    Some(g) => g,
                    None => {
                        computed = self.grants(parsed);
                        &computed
                    }
                };
                let mut report = match (c.prev_state, before) {
                    (PreviousState::Known, Some(b)) => match &c.prev_grants {
                        Some(g) => newly_granted(after_grants, g),
                        None => newly_granted(after_grants, &self.grants(&b.rules)),
                    },
                    _ => after_grants.to_vec(),
                };
                // The aggregation controller writes into an aggregating role the rules its
                // selectors pick; what the model already had from them is not news.
                if after.is_some_and(|r| r.aggregation.is_some()) {
                    let explained = agg_before
                        .and_then(|m| m.get(name))
                        .map(|r| self.grants(r))
                        .or_else(|| {
                            self.inv
                                .aggregated()
                                .get(name)
                                .map(|r| role_pod_write(r, self.opts.pod_write))
                        })
                        .unwrap_or_default();
                    let left = newly_granted(&report, &explained);
                    if left.len() < report.len() {
                        self.stats.attributed += 1;
                    }
                    report = left;
                }
                if report.is_empty() {
                    return None;
                }
                let texts = after.map(|r| p.rule_texts(r)).unwrap_or_default();
                let rules = AlertRules {
                    parsed,
                    texts: &texts,
                    grants: Some(after_grants),
                };
                let mut a = Alert::clone(&c.ch.base);
                a.rules_source = *source;
                if !fill(&mut a, Some(name.to_string()), &rules, &report, &self.opts) {
                    return None;
                }
                a.context.previous_state = Some(c.prev_state);
                a.context.newly_granted = Some(summarize(&report));
                a.context.previous_rules = before.map(|b| {
                    b.rules
                        .iter()
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .collect()
                });
                if *source == RulesSource::PatchedState {
                    a.notes.push("rules computed by applying the logged patch to the last known version of the role".into());
                }
                Some(a)
            }
        }
    }

    fn aggregated_alert(
        &mut self,
        c: &Ctx<'_>,
        source: RulesSource,
        after: Option<&Role>,
        before: &BTreeMap<String, Vec<PolicyRule>>,
        now: &BTreeMap<String, Vec<PolicyRule>>,
    ) -> Option<Alert> {
        let mut gains = Vec::new();
        let mut all_new: Vec<PodWriteGrant> = Vec::new();
        let mut wildcard = false;
        let mut broad = false;
        for (agg, rules) in now {
            let old = before.get(agg);
            if old == Some(rules) {
                continue;
            }
            let new = newly_granted(
                &self.grants(rules),
                &old.map(|r| self.grants(r)).unwrap_or_default(),
            );
            if new.is_empty() {
                continue;
            }
            wildcard |= rules.iter().any(is_wildcard_rule)
                && !old.is_some_and(|o| o.iter().any(is_wildcard_rule));
            let subjects = self.bound_subjects(RoleKind::ClusterRole, "", agg);
            broad |= subjects
                .iter()
                .any(|s| s.kind == "Group" && BROAD_GROUPS.contains(&s.name.as_str()));
            gains.push(AggregatorGain {
                role: agg.clone(),
                newly_granted: summarize(&new),
                bound_subjects: subjects,
            });
            all_new.extend(new);
        }
        if gains.is_empty() {
            return None;
        }
        let name = c.key.2.as_str();
        let mut a = Alert::clone(&c.ch.base);
        a.rule_id = AGGREGATED_RULE_ID;
        a.title = AGGREGATED_TITLE;
        a.role = Some(name.to_string());
        a.rules_source = source;
        a.severity = severity_of(wildcard || broad, &all_new);
        let names: Vec<String> = gains.iter().map(|g| g.role.clone()).collect();
        let labels: Vec<String> = after
            .map(|r| {
                r.labels
                    .iter()
                    .filter(|(k, _)| k.contains("aggregate"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            })
            .unwrap_or_default();
        let fed_by_self =
            after.is_some_and(|r| r.aggregation.is_some() && names.iter().any(|n| n == name));
        let mut why = vec![if fed_by_self {
            format!(
                "The aggregating ClusterRole {name} now selects roles that grant pod write; the aggregation controller copies their rules into it, so everyone bound to it gains them."
            )
        } else {
            format!(
                "ClusterRole {name} is now picked by the aggregationRule of {} ({}); the aggregation controller copies its rules into {}, so everyone bound to {} gains them.",
                names.join(", "),
                if labels.is_empty() { "through its labels".to_string() } else { format!("labels {}", labels.join(", ")) },
                if names.len() == 1 { "that role" } else { "those roles" },
                if names.len() == 1 { "it" } else { "them" },
            )
        }];
        why.extend(crate::explain::why(&all_new, a.severity));
        a.why = why;
        let role = sh(name);
        let mut inv = vec![format!(
            "See the role and its labels: kubectl get clusterrole {role} -o yaml"
        )];
        for n in &names {
            inv.push(format!(
                "See what {n} selects and grants now: kubectl get clusterrole {} -o yaml",
                sh(n)
            ));
        }
        inv.push("With kubeward, against the cluster: kubeward rbac pod-writers --live".into());
        a.investigation = inv;
        a.resolution = if fed_by_self {
            vec![format!("Narrow or remove the aggregationRule of {name}, or delete it: kubectl delete clusterrole {role}")]
        } else {
            let mut r: Vec<String> = labels
                .iter()
                .map(|l| {
                    let k = l.split('=').next().unwrap_or(l);
                    format!(
                        "Remove the aggregation label: kubectl label clusterrole {role} {}",
                        sh(&format!("{k}-"))
                    )
                })
                .collect();
            r.push(format!(
                "Or delete the role: kubectl delete clusterrole {role}"
            ));
            r.push("The aggregation controller then recomputes the aggregating roles' rules without it.".into());
            r
        };
        a.grants = summarize(&all_new);
        a.context.aggregated_into = Some(gains);
        a.context.previous_state = Some(c.prev_state);
        Some(a)
    }

    fn binding_change(&mut self, c: &Ctx<'_>, outcome: &mut Outcome) -> Vec<Alert> {
        let Some(bk) = c.ch.kind.binding_kind() else {
            return Vec::new();
        };
        let (ns, name) = (c.key.1.as_str(), c.key.2.as_str());
        let known_before = c.prev_state == PreviousState::Known;
        let after: Option<Binding> = match outcome {
            Outcome::Known(_, p) => p.binding.take(),
            _ => None,
        };
        // What the model held, taken from it when the change replaces it.
        let before = match (&*outcome, &after) {
            (Outcome::Known(..), Some(b)) if !c.stale => {
                // The verdict below reads the binding after the model has it.
                self.inv.put_binding(b.clone()).filter(|_| known_before)
            }
            (Outcome::Deleted, _) if !c.stale => self
                .inv
                .remove_binding(bk, ns, name)
                .filter(|_| known_before),
            _ if known_before => self.inv.binding(bk, ns, name).cloned(),
            _ => None,
        };
        let outcome = &*outcome;
        let Some(after) = after else {
            return match outcome {
                Outcome::Unknown(reason) if c.ch.verb != "delete" => self
                    .binding_unverified(c, bk, reason.clone())
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
        };
        self.bound_alert(c, &after, before.as_ref(), outcome)
            .into_iter()
            .collect()
    }

    /// A binding changed and the log does not show its subjects: worth a look when the role it
    /// grants (a binding's roleRef never changes) writes pods, or is not known.
    fn binding_unverified(
        &mut self,
        c: &Ctx<'_>,
        bk: BindingKind,
        reason: String,
    ) -> Option<Alert> {
        let (ns, name) = (c.key.1.as_str(), c.key.2.as_str());
        let role = self.inv.binding(bk, ns, name).and_then(|b| {
            let r = self.inv.bound_role(b)?;
            Some((
                r.kind,
                r.namespace.clone().unwrap_or_default(),
                r.name.clone(),
            ))
        });
        let role_ref = self.inv.binding(bk, ns, name).map(|b| b.role_ref.clone());
        if let Some((k, rns, rname)) = &role {
            if self
                .role_facts(*k, rns, rname)
                .is_some_and(|f| f.grants.is_empty())
            {
                return None;
            }
        }
        let mut a = Alert::clone(&c.ch.base);
        a.rule_id = BINDING_UNVERIFIED_RULE_ID;
        a.title = BINDING_UNVERIFIED_TITLE;
        a.severity = Severity::Info;
        a.rules_source = RulesSource::NotLogged;
        a.binding_kind = Some(ObjKind::from(bk).as_str());
        a.binding = Some(name.to_string());
        a.namespace = (!ns.is_empty()).then(|| ns.to_string());
        if let Some(rr) = &role_ref {
            a.role = Some(rr.name.clone());
            a.role_kind = Some(if rr.kind == "Role" {
                "Role"
            } else {
                "ClusterRole"
            });
        }
        let what = match &role_ref {
            Some(rr) if role.is_some() => {
                format!("{} {}, which grants pod write", rr.kind, rr.name)
            }
            Some(rr) => format!("{} {} (not known to the model)", rr.kind, rr.name),
            None => "a role the model does not know".to_string(),
        };
        a.why = vec![format!(
            "{} {} was changed ({}), but the log does not show its subjects afterwards: it binds {what}, and may now give it to new subjects. Audit policies that log RBAC at Metadata level hide this; log rbac.authorization.k8s.io at RequestResponse.",
            a.binding_kind.unwrap_or("binding"),
            name,
            c.ch.verb
        )];
        let (res, ns_flag) = if ns.is_empty() {
            ("clusterrolebinding", String::new())
        } else {
            ("rolebinding", format!(" -n {}", sh(ns)))
        };
        a.investigation = vec![
            format!("See its subjects now: kubectl get {res} {}{ns_flag} -o yaml", sh(name)),
            "With kubeward, against the cluster: every holder of pod write: kubeward rbac pod-writers --live".into(),
        ];
        a.notes.push(reason);
        a.context.previous_state = Some(c.prev_state);
        Some(a)
    }

    fn bound_alert(
        &mut self,
        c: &Ctx<'_>,
        after: &Binding,
        before: Option<&Binding>,
        outcome: &Outcome,
    ) -> Option<Alert> {
        let (role_kind_, rns, role_name) = {
            let r = self.inv.bound_role(after)?;
            (
                r.kind,
                r.namespace.clone().unwrap_or_default(),
                r.name.clone(),
            )
        };
        let same_role = |b: &Binding| b.role_ref == after.role_ref;
        let had: BTreeSet<Subject> = before
            .filter(|b| same_role(b))
            .map(|b| {
                b.subjects
                    .iter()
                    .filter_map(|s| b.effective_subject(s))
                    .map(|s| normalize(&s))
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        let fresh: Vec<Subject> = after
            .subjects
            .iter()
            .filter_map(|s| after.effective_subject(s))
            .map(|s| normalize(&s))
            .filter(|s| !had.contains(s) && seen.insert(s.clone()))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let facts = self.role_facts(role_kind_, &rns, &role_name)?;
        if facts.grants.is_empty() {
            return None;
        }
        let role_grants = &facts.grants;
        let mut gains = Vec::new();
        let mut all_new = Vec::new();
        for s in fresh {
            // What the subject already holds through its other bindings, where this one grants.
            let mut existing = Vec::new();
            // Bindings of the subject itself, and of the groups it is always in.
            let holders: Vec<Subject> = std::iter::once(s.clone())
                .chain(rbac::model::implicit_groups(&s))
                .collect();
            let others: Vec<(RoleKind, String, String)> = holders
                .iter()
                .flat_map(|h| self.inv.bindings_of(h))
                .filter(|b| {
                    !(b.kind == after.kind
                        && b.namespace == after.namespace
                        && b.name == after.name)
                })
                .filter(|b| {
                    b.kind == BindingKind::ClusterRoleBinding
                        || (after.kind == BindingKind::RoleBinding
                            && b.namespace == after.namespace)
                })
                // A binding changed or deleted without the log showing how (metadata level,
                // deletecollection) may no longer hold the subject: it proves nothing.
                .filter(|b| {
                    let key = (
                        ObjKind::from(b.kind),
                        b.namespace.clone().unwrap_or_default(),
                        b.name.clone(),
                    );
                    self.meta
                        .get(&key)
                        .is_none_or(|m| m.unknown_since.is_none())
                })
                .filter_map(|b| self.inv.bound_role(b))
                .map(|r| {
                    (
                        r.kind,
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone(),
                    )
                })
                .collect();
            for (k, ns, n) in others {
                if let Some(f) = self.role_facts(k, &ns, &n) {
                    existing.extend(f.grants.iter().cloned());
                }
            }
            let new = newly_granted(role_grants, &existing);
            if new.is_empty() {
                continue;
            }
            gains.push(SubjectGain {
                note: (s.kind == "Group").then(|| group_note(&s.name)).flatten(),
                kind: s.kind.clone(),
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                newly_granted: summarize(&new),
            });
            all_new.push((s, new));
        }
        if gains.is_empty() {
            return None;
        }
        let admin_equivalent = facts.wildcard;
        let broad: Vec<&Subject> = all_new
            .iter()
            .map(|(s, _)| s)
            .filter(|s| is_broad(s))
            .collect();
        let flat: Vec<PodWriteGrant> = all_new.iter().flat_map(|(_, g)| g.clone()).collect();
        let mut a = Alert::clone(&c.ch.base);
        a.rule_id = BOUND_RULE_ID;
        a.title = BOUND_TITLE;
        a.severity = severity_of(admin_equivalent || !broad.is_empty(), &flat);
        a.role = Some(role_name.clone());
        a.role_kind = Some(ObjKind::from(role_kind_).as_str());
        a.binding_kind = Some(ObjKind::from(after.kind).as_str());
        a.binding = Some(after.name.clone());
        a.namespace = after.namespace.clone();
        a.rules_source = match outcome {
            Outcome::Known(s, _) => *s,
            _ => RulesSource::NotLogged,
        };
        let scope = match &after.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in every namespace".to_string(),
        };
        let who: Vec<String> = gains
            .iter()
            .map(|g| match &g.namespace {
                Some(ns) if g.kind == "ServiceAccount" => format!("ServiceAccount {ns}/{}", g.name),
                _ => format!("{} {}", g.kind, g.name),
            })
            .collect();
        let mut why = vec![format!(
            "{} {} gives {} {} {} to {}, who did not hold that pod write through any other binding.",
            after.kind,
            after.name,
            role_kind_,
            role_name,
            scope,
            who.join(", ")
        )];
        if admin_equivalent {
            why.push(format!(
                "{} {} has `*` verbs on `*` resources: this is cluster-admin.",
                role_kind_, role_name
            ));
        }
        for s in &broad {
            why.push(format!(
                "Group {} is a broad group: {}",
                s.name,
                group_note(&s.name).unwrap_or_default()
            ));
        }
        why.extend(
            crate::explain::why(&flat, a.severity)
                .into_iter()
                .filter(|w| !w.starts_with("The role has `*`")),
        );
        a.why = why;
        let (kind_res, ns_flag) = match &after.namespace {
            Some(ns) => ("rolebinding", format!(" -n {}", sh(ns))),
            None => ("clusterrolebinding", String::new()),
        };
        a.investigation = vec![
            format!("See the binding: kubectl get {kind_res} {}{ns_flag} -o yaml", sh(&after.name)),
            format!(
                "See what the role grants: kubectl get {} {}{} -o yaml",
                if role_kind_ == RoleKind::ClusterRole { "clusterrole" } else { "role" },
                sh(&role_name),
                if role_kind_ == RoleKind::Role { ns_flag.clone() } else { String::new() }
            ),
            "With kubeward, against the cluster: every holder of pod write: kubeward rbac pod-writers --live".into(),
        ];
        a.resolution = vec![
            format!(
                "Remove the binding: kubectl delete {kind_res} {}{ns_flag}",
                sh(&after.name)
            ),
            format!(
                "Or take the subjects out of it: kubectl edit {kind_res} {}{ns_flag}",
                sh(&after.name)
            ),
        ];
        a.grants = summarize(&flat);
        a.context.subjects_granted = Some(gains);
        a.context.previous_state = Some(c.prev_state);
        if self
            .meta
            .get(&(ObjKind::from(role_kind_), rns.clone(), role_name.clone()))
            .is_some_and(|m| m.assumed)
        {
            a.notes.push(format!(
                "{} {} was not seen in the log or a snapshot: its rules are Kubernetes' bootstrap policy (give --rbac-snapshot to use the cluster's own)",
                role_kind_, role_name
            ));
        }
        Some(a)
    }

    fn add_context(&mut self, tx: &Tx<'_>, a: &mut Alert, c: &Ctx<'_>) -> Result<(), StateError> {
        if c.stale {
            a.notes.push(if c.prev_state == PreviousState::Absent {
                "this create arrived after a newer version of the object had been applied (by resourceVersion or time): the newer version stays in the model".into()
            } else {
                "this event arrived after a newer version of the object had been applied (by resourceVersion or time): it was judged against an unknown previous state, and the newer version stays in the model".into()
            });
        }
        if c.recreated {
            a.notes.push("created again with no delete of it in the log since the model learned it: judged against the version the model held (a delete may be missing from the log)".into());
        }
        if c.assumed && a.rule_id != BOUND_RULE_ID {
            a.notes.push("the previous version was assumed from Kubernetes' bootstrap policy (not seen in the log or a snapshot)".into());
        }
        if let Some(r) = a.role.clone() {
            let (kind, ns) = match (a.role_kind, &a.namespace) {
                (Some("Role"), Some(ns)) => (RoleKind::Role, ns.clone()),
                _ => (RoleKind::ClusterRole, String::new()),
            };
            a.context.bound_subjects = Some(self.bound_subjects(kind, &ns, &r));
        } else {
            // No role known: nobody is known to hold it.
            a.context.bound_subjects = Some(Vec::new());
        }
        a.context.role_admins = Some(self.inv.role_admins());
        let mut recent = Vec::new();
        if let (Some(user), Some(t)) = (a.actor.username.as_deref(), c.ch.time_ns) {
            let (rows, total) = self.recent_changes(tx, user, t, c.time, c.audit_id)?;
            a.context.actor_recent_changes_total = Some(total);
            recent = rows;
        }
        a.context.actor_recent_changes = Some(recent);
        Ok(())
    }

    /// The actor's latest changes in the hour up to `t` (at most [`RECENT_LIMIT`]) and their
    /// number. Served from memory; the history is read once per actor, and again only for an
    /// event older than what memory holds.
    fn recent_changes(
        &mut self,
        tx: &Tx<'_>,
        user: &str,
        t: i128,
        until: &str,
        current: &str,
    ) -> Result<(Vec<RecentChange>, u64), StateError> {
        let since = t - RECENT_WINDOW_NS;
        let covered = self
            .actors
            .get(user)
            .is_some_and(|l| l.complete_from <= since);
        if !covered {
            let since_text = audit::time::format_utc_micros(since);
            if self.actors.contains_key(user) {
                // Older than what memory holds (a late event): ask the history directly.
                let (rows, total) =
                    tx.latest_changes_by_actor(user, &since_text, until, RECENT_LIMIT + 1)?;
                let mut rows: Vec<RecentChange> = rows
                    .into_iter()
                    .filter(|r| r.audit_id != current)
                    .map(|r| recent_from(&r.as_new()))
                    .collect();
                let skip = rows.len().saturating_sub(RECENT_LIMIT);
                rows.drain(..skip);
                return Ok((rows, total.saturating_sub(1)));
            }
            let rows = tx.changes_by_actor(user, &since_text, "9999")?;
            let entries = rows
                .into_iter()
                .filter(|r| r.audit_id != current)
                .filter_map(|r| {
                    Some((
                        audit::time::parse_rfc3339(&r.time)?,
                        recent_from(&r.as_new()),
                    ))
                })
                .collect();
            self.actors.insert(
                user.to_string(),
                ActorLog {
                    complete_from: since,
                    entries,
                },
            );
        }
        let log = &self.actors[user];
        let lo = log.entries.partition_point(|(x, _)| *x < since);
        let hi = log.entries.partition_point(|(x, _)| *x <= t);
        let window = &log.entries[lo..hi.max(lo)];
        let total = window.len() as u64;
        let first = window.len().saturating_sub(RECENT_LIMIT);
        Ok((
            window[first..].iter().map(|(_, r)| r.clone()).collect(),
            total,
        ))
    }

    /// Adds a recorded change to its actor's in-memory log, if that log is loaded, and forgets
    /// what no alert can ask for any more.
    fn note_change(&mut self, r: &NewChange<'_>, t: Option<i128>) {
        let (Some(user), Some(t)) = (r.actor, t) else {
            return;
        };
        let Some(log) = self.actors.get_mut(user) else {
            return;
        };
        let at = log.entries.partition_point(|(x, _)| *x <= t);
        log.entries.insert(at, (t, recent_from(r)));
        // Keep two windows back from the newest change: enough for any event in order, and a
        // late one older than that asks the history.
        if let Some(newest) = log.entries.last().map(|(x, _)| *x) {
            let keep = newest - 2 * RECENT_WINDOW_NS;
            if keep > log.complete_from {
                let cut = log.entries.partition_point(|(x, _)| *x < keep);
                log.entries.drain(..cut);
                log.complete_from = keep;
            }
        }
    }

    fn emit(
        &mut self,
        tx: &Tx<'_>,
        mut a: Alert,
        at: &Location,
        time: &str,
        audit_id: &str,
        out: &mut Vec<Reported>,
    ) -> Result<(), StateError> {
        a.source = Some(at.clone());
        a.suppressed_by = self.suppressions.matching(&a);
        let t = (!time.is_empty()).then_some(time);
        let Some(json) = tx.insert_alert_value(a.rule_id, audit_id, t, &a)? else {
            self.stats.repeated_alerts += 1;
            return Ok(());
        };
        out.push(Reported { alert: a, json });
        Ok(())
    }
}

/// The record of a change, borrowed from it ([`Tx::record_change`]).
fn new_change<'a>(
    ch: &'a Change,
    audit_id: &'a str,
    time: &'a str,
    resource_version: Option<&'a str>,
    outcome: &'a str,
) -> NewChange<'a> {
    NewChange {
        audit_id,
        kind: ch.kind.as_str(),
        namespace: &ch.namespace,
        name: ch.name.as_deref().unwrap_or_default(),
        verb: &ch.verb,
        actor: ch.base.actor.username.as_deref(),
        time,
        resource_version,
        outcome,
    }
}

/// A change as an alert lists it among its actor's recent changes.
fn recent_from(r: &NewChange<'_>) -> RecentChange {
    RecentChange {
        time: r.time.to_string(),
        verb: r.verb.to_string(),
        kind: r.kind.to_string(),
        namespace: (!r.namespace.is_empty()).then(|| r.namespace.to_string()),
        name: r.name.to_string(),
        audit_id: r.audit_id.to_string(),
    }
}

/// Whether a patch body is the whole object of this kind (a server-side apply), so that it
/// stands on its own when the object it patches is not known.
fn is_whole_object(value: &Value, kind: ObjKind) -> bool {
    value.get("kind").and_then(Value::as_str) == Some(kind.as_str())
}

/// Everything about the change being judged.
struct Ctx<'a> {
    ch: &'a Change,
    /// A create of an object the model already held.
    recreated: bool,
    key: &'a Key,
    time: &'a str,
    audit_id: &'a str,
    prev_state: PreviousState,
    stale: bool,
    assumed: bool,
    /// The pod write of the previous version's own rules, when cached.
    prev_grants: Option<std::sync::Arc<Vec<PodWriteGrant>>>,
}
