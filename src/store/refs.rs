//! Refs: reading, compare-and-swap moves, `HEAD`, listing under a prefix, forced multi-ref
//! transactions and revision parsing.
//!
//! Apart from objects because refs are the only mutable state in the repository: every move
//! here is a compare-and-swap (or an explicit force), so a concurrent writer (another node's
//! merge, stock git) is never lost.

use gix::refs::Target;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use super::{BoxError, ObjectId, Result, Store, StoreError, boxed};

impl Store {
    /// The commit a ref points to, or `None` if the ref does not exist yet.
    pub fn read_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        self.with_repo(|repo| {
            let err = |e: BoxError| StoreError::Ref {
                name: name.to_owned(),
                source: e,
            };
            match repo.try_find_reference(name).map_err(|e| err(boxed(e)))? {
                None => Ok(None),
                Some(mut r) => Ok(Some(r.peel_to_id().map_err(|e| err(boxed(e)))?.detach())),
            }
        })
    }

    /// Points `name` at `new` if and only if it currently points at `expected` (`None`: the ref
    /// must not exist). Fails with [`StoreError::RefMoved`] when someone else moved it first.
    pub fn update_ref(
        &self,
        name: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
        log_message: &str,
    ) -> Result<()> {
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: log_message.into(),
                },
                expected: match expected {
                    Some(id) => PreviousValue::MustExistAndMatch(Target::Object(id)),
                    None => PreviousValue::MustNotExist,
                },
                new: Target::Object(new),
            },
            name: name.try_into().map_err(|e| StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            })?,
            deref: false,
        };
        crate::fault::check("ref update").map_err(|e| StoreError::RefUpdate {
            name: name.to_owned(),
            source: boxed(e),
        })?;
        let result = self.with_repo(|repo| repo.edit_reference(edit).map(|_| ()));
        if let Err(e) = result {
            let actual = self.read_ref(name)?;
            if actual != expected {
                return Err(StoreError::RefMoved {
                    name: name.to_owned(),
                    expected,
                    actual,
                });
            }
            return Err(StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            });
        }
        Ok(())
    }

    /// Makes `HEAD` a symbolic ref to `branch_ref` unless it names another existing branch, so
    /// that stock git (`git log`, `git show`) looks at the branch gitdb writes.
    pub fn point_head_at(&self, branch_ref: &str) -> Result<()> {
        let path = self.git_dir.join("HEAD");
        let want = format!("ref: {branch_ref}\n");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        // HEAD naming a branch that exists is the user's choice (a work tree on another
        // branch, a second gitdb branch): only an unborn or detached HEAD is repointed.
        if let Some(target) = current.trim().strip_prefix("ref: ")
            && target != branch_ref
            && self.read_ref(target)?.is_some()
        {
            return Ok(());
        }
        if current != want {
            std::fs::write(&path, want).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(())
    }

    /// Every ref whose name starts with `prefix` (loose or packed), with the object it points
    /// at (`None` for a symbolic ref).
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(String, Option<ObjectId>)>> {
        self.with_repo(|repo| {
            let err = |e: BoxError| StoreError::Ref {
                name: prefix.to_owned(),
                source: e,
            };
            let platform = repo.references().map_err(|e| err(boxed(e)))?;
            let mut out = Vec::new();
            for r in platform.prefixed(prefix).map_err(|e| err(boxed(e)))? {
                let r = r.map_err(|e| err(boxed(e)))?;
                out.push((
                    r.name().as_bstr().to_string(),
                    r.try_id().map(|id| id.detach()),
                ));
            }
            Ok(out)
        })
    }

    /// In one transaction, points each ref of `set` at its object and deletes each ref of
    /// `delete`, whatever they held before and wherever they are (a ref `git pack-refs` moved
    /// into `packed-refs` is deleted there). A deleted ref that does not exist is fine.
    pub fn force_refs(
        &self,
        set: &[(String, ObjectId)],
        delete: &[String],
        log_message: &str,
    ) -> Result<()> {
        if set.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let full_name = |name: &str| -> Result<gix::refs::FullName> {
            name.try_into().map_err(|e| StoreError::RefUpdate {
                name: name.to_owned(),
                source: boxed(e),
            })
        };
        let mut edits = Vec::with_capacity(set.len() + delete.len());
        for (name, id) in set {
            edits.push(RefEdit {
                change: Change::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: false,
                        message: log_message.into(),
                    },
                    expected: PreviousValue::Any,
                    new: Target::Object(*id),
                },
                name: full_name(name)?,
                deref: false,
            });
        }
        for name in delete {
            edits.push(RefEdit {
                change: Change::Delete {
                    expected: PreviousValue::Any,
                    log: RefLog::AndReference,
                },
                name: full_name(name)?,
                deref: false,
            });
        }
        self.with_repo(|repo| repo.edit_references(edits).map(|_| ()))
            .map_err(|e| StoreError::RefUpdate {
                name: set
                    .first()
                    .map(|(n, _)| n.clone())
                    .or_else(|| delete.first().cloned())
                    .unwrap_or_default(),
                source: boxed(e),
            })
    }

    /// Resolves a revision (`main`, `main~2`, an id or a unique prefix) to a commit id.
    pub fn resolve_commit(&self, spec: &str) -> Result<ObjectId> {
        self.with_repo(|repo| {
            let id = repo
                .rev_parse_single(spec)
                .map_err(|_| StoreError::UnknownRevision {
                    spec: spec.to_owned(),
                })?;
            let object = id.object().map_err(|e| StoreError::Read {
                id: id.detach(),
                source: boxed(e),
            })?;
            let commit = object
                .peel_to_commit()
                .map_err(|_| StoreError::UnknownRevision {
                    spec: spec.to_owned(),
                })?;
            Ok(commit.id)
        })
    }
}
