//! The RBAC objects of a whole tree of manifests, by identity.
//!
//! Files come and go (a working tree is read once; a history walk replaces the files each
//! commit changes), but findings are about objects: the set keeps, for every (kind, namespace,
//! name), the files that define it, so moving a role to another file, or splitting a file in
//! two, leaves the object as it was.

use crate::read::{FileReading, ManifestObject, ObjId, Skip};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The manifests of one tree (a working tree, or a commit).
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    files: BTreeMap<String, Arc<FileReading>>,
    /// Files defining each object. When several do (an overlay next to its base), the first
    /// path in byte order wins, so the answer never depends on the order files were read in.
    by_id: BTreeMap<ObjId, BTreeSet<String>>,
    /// Files that a kustomization applies as patches (path → the kustomization): their
    /// objects are partial, so they are not objects of the tree.
    patches: BTreeMap<String, String>,
}

impl ManifestSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files held (read or skipped).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Sets the content of `path` (replacing what it held before); returns the identities
    /// whose definitions may have changed.
    pub fn set_file(&mut self, path: &str, reading: FileReading) -> BTreeSet<ObjId> {
        let mut touched = self.remove_file(path);
        let reading = Arc::new(reading);
        if !reading.kustomize_patches.is_empty() {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for p in &reading.kustomize_patches {
                let full = join(dir, p);
                self.patches.insert(full.clone(), path.to_string());
                touched.extend(self.unindex(&full));
            }
        }
        self.files.insert(path.to_string(), reading);
        touched.extend(self.index(path));
        touched
    }

    /// The identities whose definition can change when `path` gets the content `new` (`None`:
    /// the file is deleted): what it defines now and will define, and, for a kustomization,
    /// what the files it patches define.
    pub fn affected(&self, path: &str, new: Option<&FileReading>) -> BTreeSet<ObjId> {
        let mut out = BTreeSet::new();
        let mut add_file = |r: &FileReading| out.extend(r.objects.iter().map(|o| o.id.clone()));
        let old = self.files.get(path);
        if let Some(r) = old {
            add_file(r);
        }
        if let Some(r) = new {
            add_file(r);
        }
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let patch_lists = old
            .map(|r| &r.kustomize_patches)
            .into_iter()
            .chain(new.map(|r| &r.kustomize_patches));
        for list in patch_lists {
            for p in list {
                if let Some(r) = self.files.get(&join(dir, p)) {
                    out.extend(r.objects.iter().map(|o| o.id.clone()));
                }
            }
        }
        out
    }

    /// Whether the set knows this file.
    pub fn contains_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Removes `path`; returns the identities it defined.
    pub fn remove_file(&mut self, path: &str) -> BTreeSet<ObjId> {
        let mut touched = self.unindex(path);
        if let Some(old) = self.files.remove(path) {
            if !old.kustomize_patches.is_empty() {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                for p in &old.kustomize_patches {
                    let full = join(dir, p);
                    if self.patches.get(&full).is_some_and(|k| k == path) {
                        self.patches.remove(&full);
                        touched.extend(self.index(&full));
                    }
                }
            }
        }
        touched
    }

    fn index(&mut self, path: &str) -> BTreeSet<ObjId> {
        let mut touched = BTreeSet::new();
        if self.patches.contains_key(path) {
            return touched;
        }
        if let Some(r) = self.files.get(path) {
            for o in &r.objects {
                self.by_id
                    .entry(o.id.clone())
                    .or_default()
                    .insert(path.to_string());
                touched.insert(o.id.clone());
            }
        }
        touched
    }

    fn unindex(&mut self, path: &str) -> BTreeSet<ObjId> {
        let mut touched = BTreeSet::new();
        if let Some(r) = self.files.get(path) {
            for o in &r.objects {
                if let Some(files) = self.by_id.get_mut(&o.id) {
                    files.remove(path);
                    if files.is_empty() {
                        self.by_id.remove(&o.id);
                    }
                }
                touched.insert(o.id.clone());
            }
        }
        touched
    }

    /// The object with this identity, as the winning file defines it.
    pub fn get(&self, id: &ObjId) -> Option<&ManifestObject> {
        let file = self.by_id.get(id)?.iter().next()?;
        self.files.get(file)?.objects.iter().find(|o| &o.id == id)
    }

    /// Every definition of `id`: the files that define it in path order, and within a file in
    /// document order (an object defined twice in one file counts twice).
    pub fn definitions(&self, id: &ObjId) -> Vec<&ManifestObject> {
        let Some(files) = self.by_id.get(id) else {
            return Vec::new();
        };
        files
            .iter()
            .filter_map(|f| self.files.get(f))
            .flat_map(|r| r.objects.iter().filter(|o| &o.id == id))
            .collect()
    }

    /// The definition of `id` nearest to `file`: in the same file, else in the directory
    /// sharing the longest prefix with it, else the first. A binding in `envs/prod/` means the
    /// role next to it when `envs/dev/` defines one of the same name too.
    pub fn get_near(&self, id: &ObjId, file: &str) -> Option<&ManifestObject> {
        let defs = self.definitions(id);
        let common = |o: &&ManifestObject| {
            if o.file == file {
                return usize::MAX;
            }
            o.file
                .split('/')
                .zip(file.split('/'))
                .take_while(|(a, b)| a == b)
                .count()
        };
        let best = defs.iter().map(common).max()?;
        defs.into_iter().find(|o| common(o) == best)
    }

    /// Every definition of every object, file by file in path order (files a kustomization
    /// patches excluded).
    pub fn all_definitions(&self) -> impl Iterator<Item = &ManifestObject> {
        self.files
            .iter()
            .filter(|(p, _)| !self.patches.contains_key(*p))
            .flat_map(|(_, r)| r.objects.iter())
    }

    /// Every object, in identity order.
    pub fn objects(&self) -> impl Iterator<Item = &ManifestObject> {
        self.by_id.keys().filter_map(|id| self.get(id))
    }

    /// Objects of one kind, in identity order.
    pub fn objects_of(&self, kind: crate::read::Kind) -> impl Iterator<Item = &ManifestObject> {
        let lo = ObjId {
            kind,
            namespace: String::new(),
            name: String::new(),
        };
        self.by_id
            .range(lo..)
            .take_while(move |(id, _)| id.kind == kind)
            .filter_map(|(id, _)| self.get(id))
    }

    /// Every file that contributed nothing, with the first reason (a file a kustomization uses
    /// as a patch is reported as such), in path order.
    pub fn skipped_files(&self) -> Vec<(&str, Skip)> {
        self.files
            .iter()
            .filter_map(|(p, r)| {
                if let Some(k) = self.patches.get(p) {
                    if !r.objects.is_empty() {
                        return Some((p.as_str(), Skip::KustomizePatch(format!("listed in {k}"))));
                    }
                }
                r.skipped.clone().map(|s| (p.as_str(), s))
            })
            .collect()
    }

    /// Documents skipped inside files that were otherwise read: (file, document, reason).
    pub fn skipped_documents(&self) -> Vec<(&str, usize, &Skip)> {
        self.files
            .iter()
            .filter(|(_, r)| r.skipped.is_none())
            .flat_map(|(p, r)| {
                r.skipped_documents
                    .iter()
                    .map(move |(d, s)| (p.as_str(), *d, s))
            })
            .collect()
    }
}

/// `dir/rel`, with `./` and `../` folded, as Kustomize resolves paths.
fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::read_file;

    const ROLE: &str = "kind: ClusterRole\nmetadata: {name: a}\nrules: []\n";

    #[test]
    fn identity_survives_a_move() {
        let mut s = ManifestSet::new();
        s.set_file("x/a.yaml", read_file("x/a.yaml", ROLE.as_bytes()));
        let id = s.objects().next().unwrap().id.clone();
        s.remove_file("x/a.yaml");
        s.set_file("y/b.yaml", read_file("y/b.yaml", ROLE.as_bytes()));
        assert_eq!(s.get(&id).unwrap().file, "y/b.yaml");
        assert_eq!(s.objects().count(), 1);
    }

    #[test]
    fn kustomize_patches_are_not_objects() {
        let mut s = ManifestSet::new();
        s.set_file("o/patch.yaml", read_file("o/patch.yaml", ROLE.as_bytes()));
        assert_eq!(s.objects().count(), 1);
        let k = "patches:\n- path: ./patch.yaml\n";
        s.set_file(
            "o/kustomization.yaml",
            read_file("o/kustomization.yaml", k.as_bytes()),
        );
        assert_eq!(s.objects().count(), 0);
        let skipped = s.skipped_files();
        assert!(
            matches!(skipped[1], ("o/patch.yaml", Skip::KustomizePatch(_))),
            "{skipped:?}"
        );
        s.remove_file("o/kustomization.yaml");
        assert_eq!(s.objects().count(), 1);
        assert_eq!(join("a/b", "../c/./d.yaml"), "a/c/d.yaml");
    }
}
