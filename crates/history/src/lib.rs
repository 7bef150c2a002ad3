//! Where pod write came from: a walk of a Git history that reports each commit that
//! introduced or widened a role granting pod write, bound one, or labelled one into an
//! aggregating role, with its author and committer.
//!
//! The walk reads Git objects directly (gix, no `git` process). Per commit it compares the
//! commit's tree with its parent's, descending only into subtrees whose ids differ, and reads
//! only the blobs of changed `.yaml`/`.yml`/`.json` paths. The RBAC objects of the tree are
//! kept by identity ([`manifest::ManifestSet`]), so a moved or split file is not a change.
//!
//! Commits are visited oldest first. By default only first parents are followed, as
//! `git log --first-parent` does: a merge is one change, made by whoever merged. With
//! [`Options::all_parents`] every commit of merged branches is visited too, and a merge is
//! credited only with what none of its parents had (a conflict resolution, an evil merge).

#![warn(missing_docs)]

mod time;

use gix::bstr::ByteSlice;
use gix::ObjectId;
use manifest::{
    is_manifest_path, read_file, Aggregation, Body, Change, ChangeKind, Evaluator, Kind,
    ManifestObject, ManifestSet, ObjId, Skip,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

pub use time::format_time;

/// Why a walk could not be done.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// The path is not in a Git repository.
    #[error("{path}: not a git repository (or any parent up to the filesystem root): {message}")]
    NotARepository {
        /// The path given.
        path: String,
        /// What gix said.
        message: String,
    },
    /// `--rev` names nothing, or not a commit.
    #[error("bad revision '{rev}': {message}")]
    BadRevision {
        /// The revision or range.
        rev: String,
        /// Why.
        message: String,
    },
    /// `--since` could not be read.
    #[error("bad --since '{0}': expected YYYY-MM-DD, an RFC 3339 time, or seconds since 1970")]
    BadSince(String),
    /// A `--paths` pattern is empty.
    #[error("empty --paths pattern")]
    BadPattern,
    /// `--role` is neither `NAME` nor `NAMESPACE/NAME`.
    #[error("bad --role '{0}': expected NAME (a ClusterRole) or NAMESPACE/NAME (a Role)")]
    BadRole(String),
    /// HEAD names no commit (a new repository, or an unborn branch).
    #[error("{0}: the repository has no commits yet (HEAD names no commit; on an unborn branch, give --rev BRANCH)")]
    Empty(String),
    /// An object could not be read (a corrupt or incomplete repository).
    #[error("reading {what}: {message}")]
    Read {
        /// Which object.
        what: String,
        /// Why.
        message: String,
    },
}

fn read_err(what: impl Into<String>, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Read {
        what: what.into(),
        message: format!("{e:#}"),
    }
}

/// What to walk, and what to report.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A revision (`main`, a commit id, `HEAD~20`) or a range `A..B` (commits reachable from
    /// B and not from A). Default: `HEAD`.
    pub rev: Option<String>,
    /// Only commits with a committer time at or after this (seconds since 1970).
    pub since: Option<i64>,
    /// Only manifests whose path matches one of these patterns (`*` within a directory, `**`
    /// across directories; a pattern without wildcards is a file or a directory prefix).
    pub paths: Vec<String>,
    /// Visit the commits of merged branches too.
    pub all_parents: bool,
    /// Report the story of this role only (`NAME`: a ClusterRole, `NAMESPACE/NAME`: a Role;
    /// see [`RoleSelector`]): the commit that first gave it pod write and every later change
    /// to its rules or bindings.
    pub role: Option<String>,
    /// The pod-write definition's options.
    pub pod_write: rbac::PodWriteOptions,
}

/// The role `--role` names. A ClusterRole and a Role may share a name (and Roles of one name
/// exist in many namespaces); they are different roles, so the selector says which:
/// `NAME` is the ClusterRole NAME, `NAMESPACE/NAME` the Role NAME in NAMESPACE (a Role
/// manifest without a namespace, which gets one at deploy time, matches any NAMESPACE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSelector {
    /// A ClusterRole, by name.
    ClusterRole(String),
    /// A Role, by namespace and name.
    Role {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl RoleSelector {
    /// Reads `NAME` or `NAMESPACE/NAME`.
    pub fn parse(s: &str) -> Result<RoleSelector, HistoryError> {
        let bad = || HistoryError::BadRole(s.to_string());
        match s.split_once('/') {
            None if !s.is_empty() => Ok(RoleSelector::ClusterRole(s.to_string())),
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(RoleSelector::Role {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// Whether a change is to this role, or to a binding of it.
    pub fn matches(&self, ch: &Change) -> bool {
        match self {
            RoleSelector::ClusterRole(name) => ch.role_kind == "ClusterRole" && &ch.role == name,
            // A role change carries the Role's namespace; a RoleBinding of a Role refers to
            // the Role in its own namespace, so its namespace is the Role's too.
            RoleSelector::Role { namespace, name } => {
                ch.role_kind == "Role"
                    && &ch.role == name
                    && (&ch.namespace == namespace || ch.namespace.is_empty())
            }
        }
    }

    /// The identities the role may have in manifests.
    fn ids(&self) -> Vec<ObjId> {
        match self {
            RoleSelector::ClusterRole(name) => vec![ObjId {
                kind: Kind::ClusterRole,
                namespace: String::new(),
                name: name.clone(),
            }],
            RoleSelector::Role { namespace, name } => [namespace.as_str(), ""]
                .into_iter()
                .map(|ns| ObjId {
                    kind: Kind::Role,
                    namespace: ns.to_string(),
                    name: name.clone(),
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for RoleSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleSelector::ClusterRole(n) => write!(f, "ClusterRole {n}"),
            RoleSelector::Role { namespace, name } => write!(f, "Role {namespace}/{name}"),
        }
    }
}

/// One reported change, with the commit that made it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Full commit id.
    pub commit: String,
    /// Author name.
    pub author_name: String,
    /// Author e-mail.
    pub author_email: String,
    /// Author time, RFC 3339 with the author's offset.
    pub time: String,
    /// Committer name.
    pub committer_name: String,
    /// Committer e-mail.
    pub committer_email: String,
    /// Committer time, RFC 3339.
    pub committer_time: String,
    /// First line of the commit message.
    pub subject: String,
    /// Whether the commit is a merge.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub merge: bool,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// Counters of a walk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Commits visited.
    pub commits: usize,
    /// Manifest blobs read and parsed.
    pub blobs_read: usize,
    /// Bytes of those blobs.
    pub bytes_read: u64,
    /// Files skipped (nothing usable in them), each with the first reason seen.
    pub skipped_files: BTreeMap<String, Skip>,
    /// Documents skipped in files that were otherwise read (file → first reason).
    pub skipped_documents: BTreeMap<String, (usize, Skip)>,
    /// Parents that are not in the repository (a shallow clone): their commits were treated
    /// as roots.
    pub missing_parents: usize,
}

impl Stats {
    /// Skipped files counted by reason key.
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for s in self.skipped_files.values() {
            *m.entry(s.key()).or_default() += 1;
        }
        m
    }
}

/// The result of a walk.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Findings, oldest commit first (file order within a commit).
    pub findings: Vec<Finding>,
    /// Counters.
    pub stats: Stats,
}

/// Parses `--since`: `YYYY-MM-DD` (midnight UTC), an RFC 3339 time, or seconds since 1970.
pub fn parse_since(s: &str) -> Result<i64, HistoryError> {
    time::parse(s).ok_or_else(|| HistoryError::BadSince(s.to_string()))
}

/// A changed manifest path and its new blob (`None`: deleted).
type BlobChange = (String, Option<ObjectId>);

/// The definitions of the touched objects before a change.
type Before = BTreeMap<ObjId, Vec<ManifestObject>>;

/// One entry of a tree, as the diff needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// A subtree.
    tree: bool,
    /// A regular (or executable) file; symlinks and submodules are neither.
    blob: bool,
    id: ObjectId,
}

/// A commit's facts, read once.
struct CommitInfo {
    id: ObjectId,
    tree: ObjectId,
    parents: Vec<ObjectId>,
    author_name: String,
    author_email: String,
    author_time: String,
    committer_name: String,
    committer_email: String,
    committer_time: String,
    committer_seconds: i64,
    subject: String,
}

struct Walker<'r> {
    repo: &'r gix::Repository,
    eval: Evaluator,
    paths: Vec<String>,
    stats: Stats,
    /// `--role`.
    role: Option<RoleSelector>,
    /// Whether that role already granted pod write in the tree the walk starts from.
    role_granted_at_start: bool,
}

/// Walks the history of the repository at (or above) `repo_path` and reports what
/// [`Options`] asks. `progress` is called with (commits done, commits to visit).
pub fn walk(
    repo_path: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, HistoryError> {
    if opts.paths.iter().any(|p| p.trim_matches('/').is_empty()) {
        return Err(HistoryError::BadPattern);
    }
    let role = opts.role.as_deref().map(RoleSelector::parse).transpose()?;
    let mut repo = gix::discover(repo_path).map_err(|e| HistoryError::NotARepository {
        path: repo_path.display().to_string(),
        message: format!("{e}"),
    })?;
    // Trees are read twice (as a commit's and as its child's parent tree): a cache saves it.
    repo.object_cache_size(Some(64 * 1024 * 1024));
    // Packed trees are deltas against each other; without a cache of delta bases every tree
    // read re-inflates its whole chain. (gix sets this up only with its `max-performance`
    // feature, which also brings threads kubeward does not use here.)
    repo.objects.set_pack_cache(|| {
        Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(
            64 * 1024 * 1024,
        ))
    });
    let mut w = Walker {
        repo: &repo,
        eval: Evaluator::new(opts.pod_write),
        paths: opts
            .paths
            .iter()
            .map(|p| p.trim_start_matches("./").to_string())
            .collect(),
        stats: Stats::default(),
        role,
        role_granted_at_start: false,
    };
    let (tip, hidden) = w.resolve(opts.rev.as_deref().unwrap_or("HEAD"), repo_path)?;
    let excluded = match hidden {
        Some(h) => w.ancestors(h)?,
        None => HashSet::new(),
    };
    let commits = if opts.all_parents {
        w.all_commits(tip, &excluded, opts.since)?
    } else {
        w.first_parent_chain(tip, &excluded, opts.since)?
    };
    let mut findings = w.visit(&commits, opts.all_parents, progress)?;
    match &w.role {
        Some(role) => {
            findings.retain(|f| role.matches(&f.change));
            // The story starts where the role first granted pod write: before that, changes
            // to it or its bindings hand out nothing on pods. When it already granted pod
            // write where the walk starts (defined before --since or the range, or one of
            // Kubernetes' own roles such as edit, which no commit introduces), the story is
            // already under way and every change in the walk belongs to it. Otherwise it
            // starts at the first grant: introduced, widened, labelled into an aggregating
            // role, or bound (a role can gain pod write without a change of its own, through
            // an aggregation rule picking up another role).
            if !w.role_granted_at_start {
                match findings.iter().position(|f| f.change.change.is_grant()) {
                    Some(first) => {
                        findings.drain(..first);
                    }
                    None => findings.clear(),
                }
            }
        }
        None => findings.retain(|f| f.change.change.is_grant()),
    }
    let stats = w.stats;
    Ok(Report { findings, stats })
}

impl<'r> Walker<'r> {
    /// `A..B` → (B, Some(A)); `B` → (B, None).
    fn resolve(
        &self,
        rev: &str,
        repo_path: &Path,
    ) -> Result<(ObjectId, Option<ObjectId>), HistoryError> {
        let one = |spec: &str| -> Result<ObjectId, HistoryError> {
            let bad = |m: String| HistoryError::BadRevision {
                rev: rev.to_string(),
                message: m,
            };
            let id = self
                .repo
                .rev_parse_single(spec)
                .map_err(|e| bad(format!("{e}")))?;
            let commit = id
                .object()
                .map_err(|e| bad(format!("{e}")))?
                .peel_to_commit()
                .map_err(|e| bad(format!("not a commit: {e}")))?;
            Ok(commit.id)
        };
        if let Some((a, b)) = rev.split_once("..") {
            if a.is_empty() || b.is_empty() || b.starts_with('.') {
                return Err(HistoryError::BadRevision {
                    rev: rev.to_string(),
                    message: "expected A..B with both ends given".into(),
                });
            }
            return Ok((one(b)?, Some(one(a)?)));
        }
        if rev == "HEAD" && self.repo.head_id().is_err() {
            return Err(HistoryError::Empty(repo_path.display().to_string()));
        }
        Ok((one(rev)?, None))
    }

    fn commit(&mut self, id: ObjectId) -> Result<Option<CommitInfo>, HistoryError> {
        let c = match self.repo.find_commit(id) {
            Ok(c) => c,
            Err(_) if self.repo.has_object(id) => {
                return Err(read_err(format!("commit {id}"), "not a commit"))
            }
            Err(_) => return Ok(None),
        };
        let author = c
            .author()
            .map_err(|e| read_err(format!("commit {id}"), e))?;
        let committer = c
            .committer()
            .map_err(|e| read_err(format!("commit {id}"), e))?;
        let at = author.time().ok();
        let ct = committer.time().ok();
        let subject = c
            .message()
            .map(|m| m.summary().to_str_lossy().into_owned())
            .unwrap_or_default();
        Ok(Some(CommitInfo {
            id,
            tree: c
                .tree_id()
                .map_err(|e| read_err(format!("commit {id}"), e))?
                .detach(),
            parents: c.parent_ids().map(|p| p.detach()).collect(),
            author_name: author.name.trim().to_str_lossy().into_owned(),
            author_email: author.email.trim().to_str_lossy().into_owned(),
            author_time: at.map(format_time).unwrap_or_default(),
            committer_name: committer.name.trim().to_str_lossy().into_owned(),
            committer_email: committer.email.trim().to_str_lossy().into_owned(),
            committer_time: ct.map(format_time).unwrap_or_default(),
            committer_seconds: ct.map_or(0, |t| t.seconds),
            subject,
        }))
    }

    /// Every commit reachable from `tip` (all parents).
    fn ancestors(&mut self, tip: ObjectId) -> Result<HashSet<ObjectId>, HistoryError> {
        let mut seen = HashSet::new();
        let mut stack = vec![tip];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match self.repo.find_commit(id) {
                Ok(c) => stack.extend(c.parent_ids().map(|p| p.detach())),
                Err(_) => self.stats.missing_parents += 1,
            }
        }
        Ok(seen)
    }

    /// The first-parent chain from `tip`, oldest first, stopping at excluded or old commits.
    fn first_parent_chain(
        &mut self,
        tip: ObjectId,
        excluded: &HashSet<ObjectId>,
        since: Option<i64>,
    ) -> Result<Vec<CommitInfo>, HistoryError> {
        let mut out = Vec::new();
        let mut next = Some(tip);
        while let Some(id) = next {
            if excluded.contains(&id) {
                break;
            }
            let Some(c) = self.commit(id)? else {
                self.stats.missing_parents += 1;
                break;
            };
            if since.is_some_and(|s| c.committer_seconds < s) {
                break;
            }
            next = c.parents.first().copied();
            out.push(c);
        }
        out.reverse();
        Ok(out)
    }

    /// Every commit reachable from `tip` that is not excluded or too old, parents before
    /// children (ties by committer time, then id, so the order is reproducible).
    fn all_commits(
        &mut self,
        tip: ObjectId,
        excluded: &HashSet<ObjectId>,
        since: Option<i64>,
    ) -> Result<Vec<CommitInfo>, HistoryError> {
        let mut infos: HashMap<ObjectId, CommitInfo> = HashMap::new();
        let mut stack = vec![tip];
        while let Some(id) = stack.pop() {
            if infos.contains_key(&id) || excluded.contains(&id) {
                continue;
            }
            let Some(c) = self.commit(id)? else {
                self.stats.missing_parents += 1;
                continue;
            };
            if since.is_some_and(|s| c.committer_seconds < s) {
                continue;
            }
            stack.extend(c.parents.iter().copied());
            infos.insert(id, c);
        }
        // Kahn's algorithm over the parent edges inside the set.
        let mut pending: HashMap<ObjectId, usize> = HashMap::new();
        let mut children: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        for (id, c) in &infos {
            let inside: Vec<_> = c
                .parents
                .iter()
                .filter(|p| infos.contains_key(*p))
                .collect();
            pending.insert(*id, inside.len());
            for p in inside {
                children.entry(*p).or_default().push(*id);
            }
        }
        let key = |id: &ObjectId, infos: &HashMap<ObjectId, CommitInfo>| {
            (
                std::cmp::Reverse(infos[id].committer_seconds),
                std::cmp::Reverse(*id),
            )
        };
        // A max-heap on Reverse(time): the oldest ready commit comes out first.
        let mut ready: std::collections::BinaryHeap<_> = pending
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| (key(id, &infos), *id))
            .collect();
        let mut order = Vec::with_capacity(infos.len());
        while let Some((_, id)) = ready.pop() {
            order.push(id);
            for ch in children.get(&id).into_iter().flatten() {
                let n = pending.get_mut(ch).expect("child is in the set");
                *n -= 1;
                if *n == 0 {
                    ready.push((key(ch, &infos), *ch));
                }
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|id| infos.remove(&id))
            .collect())
    }

    fn wanted(&self, path: &str) -> bool {
        is_manifest_path(path)
            && (self.paths.is_empty() || self.paths.iter().any(|p| path_matches(p, path)))
    }

    /// The manifest paths that differ between two trees, with their new blobs.
    fn tree_changes(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
    ) -> Result<Vec<BlobChange>, HistoryError> {
        let mut out = Vec::new();
        self.diff_trees(old, new, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn entries(&self, tree: Option<ObjectId>) -> Result<BTreeMap<Vec<u8>, Entry>, HistoryError> {
        let mut m = BTreeMap::new();
        let Some(id) = tree else { return Ok(m) };
        let t = self
            .repo
            .find_tree(id)
            .map_err(|e| read_err(format!("tree {id}"), e))?;
        let decoded = t.decode().map_err(|e| read_err(format!("tree {id}"), e))?;
        for e in decoded.entries {
            m.insert(
                e.filename.to_vec(),
                Entry {
                    tree: e.mode.is_tree(),
                    blob: e.mode.is_blob(),
                    id: e.oid.to_owned(),
                },
            );
        }
        Ok(m)
    }

    /// Compares two trees from the root down. Subtrees with the same id on both sides are
    /// never opened, which is what keeps a commit that changes one file cheap in a large
    /// tree. A work list instead of recursion: a crafted repository nesting directories
    /// thousands deep must not exhaust the stack.
    fn diff_trees(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        out: &mut Vec<BlobChange>,
    ) -> Result<(), HistoryError> {
        let mut work = vec![(old, new, String::new())];
        while let Some((old, new, prefix)) = work.pop() {
            if old == new {
                continue;
            }
            let a = self.entries(old)?;
            let b = self.entries(new)?;
            let names: BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
            for name in names {
                let ea = a.get(name);
                let eb = b.get(name);
                if ea == eb {
                    continue;
                }
                let path = format!("{prefix}{}", name.to_str_lossy());
                let sub = |e: Option<&Entry>| e.filter(|e| e.tree).map(|e| e.id);
                let blob = |e: Option<&Entry>| e.filter(|e| e.blob).map(|e| e.id);
                let (ta, tb) = (sub(ea), sub(eb));
                if ta.is_some() || tb.is_some() {
                    work.push((ta, tb, format!("{path}/")));
                }
                let (ba, bb) = (blob(ea), blob(eb));
                if (ba.is_some() || bb.is_some()) && ba != bb && self.wanted(&path) {
                    out.push((path, bb));
                }
            }
        }
        Ok(())
    }

    fn read_blob(
        &mut self,
        path: &str,
        id: ObjectId,
    ) -> Result<manifest::FileReading, HistoryError> {
        let blob = self
            .repo
            .find_blob(id)
            .map_err(|e| read_err(format!("{path} (blob {id})"), e))?;
        self.stats.blobs_read += 1;
        self.stats.bytes_read += blob.data.len() as u64;
        let r = read_file(path, &blob.data);
        if let Some(s) = &r.skipped {
            self.stats
                .skipped_files
                .entry(path.to_string())
                .or_insert_with(|| s.clone());
        } else if let Some((d, s)) = r.skipped_documents.first() {
            self.stats
                .skipped_documents
                .entry(path.to_string())
                .or_insert_with(|| (*d, s.clone()));
        }
        Ok(r)
    }

    /// Applies the manifest changes between two trees to `set`; returns the objects as they
    /// were before, and the identities touched.
    fn apply(
        &mut self,
        set: &mut ManifestSet,
        old_tree: Option<ObjectId>,
        new_tree: ObjectId,
    ) -> Result<(Before, BTreeSet<ObjId>), HistoryError> {
        let changes = self.tree_changes(old_tree, Some(new_tree))?;
        let mut readings = Vec::with_capacity(changes.len());
        for (path, new) in changes {
            let r = match new {
                Some(id) => Some(self.read_blob(&path, id)?),
                None => None,
            };
            readings.push((path, r));
        }
        let mut touched = BTreeSet::new();
        for (path, r) in &readings {
            touched.extend(set.affected(path, r.as_ref()));
        }
        let before: Before = touched
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    set.definitions(id).into_iter().cloned().collect(),
                )
            })
            .collect();
        for (path, r) in readings {
            match r {
                Some(r) => {
                    set.set_file(&path, r);
                }
                None => {
                    set.remove_file(&path);
                }
            }
        }
        Ok((before, touched))
    }

    /// Whether the changed objects can change what aggregating roles hold.
    fn aggregation_may_change(
        before: &Before,
        after: &ManifestSet,
        agg: &Aggregation,
        touched: &BTreeSet<ObjId>,
    ) -> bool {
        touched
            .iter()
            .filter(|id| id.kind == Kind::ClusterRole)
            .any(|id| {
                let old = before.get(id).into_iter().flatten();
                old.chain(after.definitions(id)).any(|o| match &o.body {
                    Body::Role(r) => r.aggregation.is_some() || agg.selects(&r.labels),
                    Body::Binding(_) => false,
                })
            })
    }

    fn visit(
        &mut self,
        commits: &[CommitInfo],
        all_parents: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Finding>, HistoryError> {
        // States (manifest set + aggregation) of commits whose children are still to come.
        let mut states: HashMap<ObjectId, (ManifestSet, Arc<Aggregation>)> = HashMap::new();
        let mut remaining_children: HashMap<ObjectId, usize> = HashMap::new();
        let in_walk: HashSet<ObjectId> = commits.iter().map(|c| c.id).collect();
        for c in commits {
            let parents: &[ObjectId] = if all_parents {
                &c.parents
            } else {
                &c.parents[..c.parents.len().min(1)]
            };
            for p in parents {
                *remaining_children.entry(*p).or_default() += 1;
            }
        }
        let mut findings = Vec::new();
        let total = commits.len();
        for (n, c) in commits.iter().enumerate() {
            progress(n, total);
            self.stats.commits += 1;
            let first = c.parents.first().copied();
            // The starting state: the first parent's, taken over when this is its last child.
            let (mut set, agg_before, base_tree) = match first {
                Some(p) => {
                    let (set, agg) =
                        self.state_of(p, &in_walk, &mut states, &mut remaining_children)?;
                    let tree = self.commit(p)?.map(|pc| pc.tree);
                    if tree.is_none() {
                        self.stats.missing_parents += 1;
                    }
                    (set, agg, tree)
                }
                None => (
                    ManifestSet::new(),
                    Arc::new(self.eval.aggregation(&ManifestSet::new())),
                    None,
                ),
            };
            if n == 0 {
                if let Some(role) = &self.role {
                    self.role_granted_at_start = role
                        .ids()
                        .iter()
                        .any(|id| self.eval.role_grants_pod_write(&set, &agg_before, id));
                }
            }
            let (before, touched) = self.apply(&mut set, base_tree, c.tree)?;
            let agg_after = if Self::aggregation_may_change(&before, &set, &agg_before, &touched) {
                Arc::new(self.eval.aggregation(&set))
            } else {
                // Shared, not copied: most commits change no aggregating role.
                Arc::clone(&agg_before)
            };
            let mut changes = self
                .eval
                .diff(&before, &agg_before, &set, &agg_after, &touched);
            if all_parents && c.parents.len() > 1 {
                // Credit the merge only with what none of its parents had: whatever a parent
                // already granted was reported on that parent's side. The changes above are
                // against the first parent; each other parent's own diff says what the merge
                // adds from its side, and only what is new from every side is kept. A conflict
                // resolution that keeps both sides' grants ([get, delete] and [get, create]
                // resolved to [get, delete, create]) then grants nothing new.
                let mut per_parent = Vec::new();
                for p in &c.parents[1..] {
                    let (s, agg) = self.peek_state(*p, &in_walk, &states)?;
                    let before_p: Before = touched
                        .iter()
                        .map(|id| (id.clone(), s.definitions(id).into_iter().cloned().collect()))
                        .collect();
                    let diff = self.eval.diff(&before_p, &agg, &set, &agg_after, &touched);
                    per_parent.push((s, diff));
                }
                changes = changes
                    .into_iter()
                    .filter_map(|mut ch| {
                        let id = ObjId {
                            kind: ch.kind,
                            namespace: ch.namespace.clone(),
                            name: ch.name.clone(),
                        };
                        let now = set.definitions(&id);
                        // Exactly what a parent had: that parent's change, not the merge's.
                        let like_a_parent = per_parent
                            .iter()
                            .any(|(s, _)| same_definitions(&s.definitions(&id), &now));
                        if like_a_parent {
                            return None;
                        }
                        for (_, diff) in &per_parent {
                            if ch.change.is_grant() && !subtract_parent(&mut ch, diff) {
                                return None;
                            }
                        }
                        Some(ch)
                    })
                    .collect();
            }
            for p in c.parents.iter().skip(1).filter(|_| all_parents) {
                self.release(*p, &mut states, &mut remaining_children);
            }
            findings.extend(changes.into_iter().map(|change| Finding {
                commit: c.id.to_string(),
                author_name: c.author_name.clone(),
                author_email: c.author_email.clone(),
                time: c.author_time.clone(),
                committer_name: c.committer_name.clone(),
                committer_email: c.committer_email.clone(),
                committer_time: c.committer_time.clone(),
                subject: c.subject.clone(),
                merge: c.parents.len() > 1,
                change,
            }));
            if remaining_children.get(&c.id).copied().unwrap_or(0) > 0 {
                states.insert(c.id, (set, agg_after));
            }
        }
        progress(total, total);
        Ok(findings)
    }

    /// The state after commit `id`: kept from the walk (moved out when no other child needs
    /// it), or read from its full tree when the commit is outside the walk.
    fn state_of(
        &mut self,
        id: ObjectId,
        in_walk: &HashSet<ObjectId>,
        states: &mut HashMap<ObjectId, (ManifestSet, Arc<Aggregation>)>,
        remaining: &mut HashMap<ObjectId, usize>,
    ) -> Result<(ManifestSet, Arc<Aggregation>), HistoryError> {
        let left = remaining.get_mut(&id).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if in_walk.contains(&id) {
            if left == Some(0) {
                if let Some(s) = states.remove(&id) {
                    return Ok(s);
                }
            } else if let Some(s) = states.get(&id) {
                return Ok(s.clone());
            }
        }
        // Outside the walk (before --since, or the hidden end of a range): start from its tree.
        let s = self.full_state(id)?;
        if left.is_some_and(|n| n > 0) {
            states.insert(id, s.clone());
        }
        Ok(s)
    }

    fn peek_state(
        &mut self,
        id: ObjectId,
        _in_walk: &HashSet<ObjectId>,
        states: &HashMap<ObjectId, (ManifestSet, Arc<Aggregation>)>,
    ) -> Result<(ManifestSet, Arc<Aggregation>), HistoryError> {
        if let Some(s) = states.get(&id) {
            return Ok(s.clone());
        }
        self.full_state(id)
    }

    fn release(
        &mut self,
        id: ObjectId,
        states: &mut HashMap<ObjectId, (ManifestSet, Arc<Aggregation>)>,
        remaining: &mut HashMap<ObjectId, usize>,
    ) {
        if let Some(n) = remaining.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                states.remove(&id);
            }
        }
    }

    fn full_state(
        &mut self,
        id: ObjectId,
    ) -> Result<(ManifestSet, Arc<Aggregation>), HistoryError> {
        let mut set = ManifestSet::new();
        if let Some(c) = self.commit(id)? {
            self.apply(&mut set, None, c.tree)?;
        } else {
            self.stats.missing_parents += 1;
        }
        let agg = Arc::new(self.eval.aggregation(&set));
        Ok((set, agg))
    }
}

/// Which of a merge's grant changes answer each other: a role's new grants (introduced on one
/// side, widened on the other), a binding's new subjects, a role's new aggregating roles.
fn grant_family(k: ChangeKind) -> u8 {
    match k {
        ChangeKind::Introduced | ChangeKind::Widened => 0,
        ChangeKind::Bound => 1,
        ChangeKind::AggregationLabel => 2,
        _ => 3,
    }
}

/// Narrows a merge's grant change (computed against its first parent) to what is also new
/// against another parent, whose own diff to the merge is `other`. When nothing is left the
/// change is not a grant: a role whose rules still differ from every parent is
/// `rules-changed`, a binding `binding-changed` (both reported with `--role` only), and a label
/// that feeds nothing new is dropped (returns false).
fn subtract_parent(ch: &mut Change, other: &[Change]) -> bool {
    let family = grant_family(ch.change);
    let same = |m: &&Change| {
        m.kind == ch.kind
            && m.namespace == ch.namespace
            && m.name == ch.name
            && grant_family(m.change) == family
    };
    let matching = other
        .iter()
        .filter(same)
        .find(|m| m.file == ch.file)
        .or_else(|| other.iter().find(same));
    let emptied = match ch.change {
        ChangeKind::Introduced | ChangeKind::Widened => {
            let theirs = matching.map(|m| m.newly_granted.as_slice()).unwrap_or(&[]);
            ch.newly_granted.retain(|g| {
                theirs.iter().any(|t| {
                    t.capability_id == g.capability_id && t.resource_names == g.resource_names
                })
            });
            ch.newly_granted.is_empty()
        }
        ChangeKind::Bound => {
            let theirs = matching.map(|m| m.subjects_added.as_slice()).unwrap_or(&[]);
            ch.subjects_added.retain(|s| theirs.contains(s));
            ch.subjects_added.is_empty()
        }
        ChangeKind::AggregationLabel => {
            let theirs = matching
                .map(|m| m.aggregated_into.as_slice())
                .unwrap_or(&[]);
            ch.aggregated_into.retain(|a| theirs.contains(a));
            ch.aggregated_into.is_empty()
        }
        _ => false,
    };
    if !emptied {
        return true;
    }
    ch.newly_granted.clear();
    ch.change = match ch.change {
        ChangeKind::Introduced | ChangeKind::Widened => ChangeKind::RulesChanged,
        ChangeKind::Bound if !ch.subjects_removed.is_empty() => ChangeKind::BindingChanged,
        // Not a change of its own: the role's rules change, if any, is reported beside it.
        _ => return false,
    };
    true
}

/// Whether two lists of definitions say the same things (in any order).
fn same_definitions(a: &[&ManifestObject], b: &[&ManifestObject]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut left: Vec<Option<&ManifestObject>> = a.iter().copied().map(Some).collect();
    b.iter().all(|x| {
        left.iter_mut()
            .find(|o| o.is_some_and(|o| o.body.same_content(&x.body)))
            .map(|slot| *slot = None)
            .is_some()
    })
}

/// Whether `path` matches a `--paths` pattern: wildcards (`*` inside one directory, `**`
/// across them, `?`, `[...]`), or, without any, the path itself or a directory above it.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches("./");
    if !pattern.contains(['*', '?', '[']) {
        let dir = pattern.trim_end_matches('/');
        return path == dir || path.starts_with(&format!("{dir}/"));
    }
    gix::glob::wildmatch(
        pattern.into(),
        path.into(),
        gix::glob::wildmatch::Mode::NO_MATCH_SLASH_LITERAL,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_selectors() {
        assert_eq!(
            RoleSelector::parse("edit").unwrap(),
            RoleSelector::ClusterRole("edit".into())
        );
        assert_eq!(
            RoleSelector::parse("system:controller:x").unwrap(),
            RoleSelector::ClusterRole("system:controller:x".into())
        );
        assert_eq!(
            RoleSelector::parse("ops/janitor").unwrap(),
            RoleSelector::Role {
                namespace: "ops".into(),
                name: "janitor".into()
            }
        );
        for bad in ["", "/x", "x/", "a/b/c"] {
            assert!(
                matches!(RoleSelector::parse(bad), Err(HistoryError::BadRole(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("deploy", "deploy/a.yaml"));
        assert!(path_matches("deploy/", "deploy/x/a.yaml"));
        assert!(!path_matches("deploy", "deployment/a.yaml"));
        assert!(path_matches("deploy/*.yaml", "deploy/a.yaml"));
        assert!(!path_matches("deploy/*.yaml", "deploy/x/a.yaml"));
        assert!(path_matches("deploy/**/*.yaml", "deploy/x/y/a.yaml"));
        assert!(path_matches("**/rbac*.yaml", "a/b/rbac-x.yaml"));
    }
}
