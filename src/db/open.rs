//! Opening a repository: the writer lock (one writing process per repository), the journal
//! replayed into the working layer, and a journal recognised as already committed when the
//! process died between the two. Apart because it runs once, before the handle is shared.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use crate::db::error::journal_err;
use crate::db::head::adopt_hlc;
use crate::db::journal::{self, Journal, Record};
use crate::db::journaling::apply_records;
use crate::db::meta::MetaStore;
use crate::db::staged::staged_ids;
use crate::db::stamp::nearest_stamp;
use crate::db::witness::Witnesses;
use crate::db::working::Working;
use crate::db::{
    Change, CommitStamp, DbError, Followed, GitDb, Hlc, JournalState, NodeId, Options, Pending,
    Result, State, metrics,
};
use crate::store::{ObjectId, Store, StoreError};

/// Temp files of gix writers older than this are left over from a killed process.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a ref lock found at open may stay before it is taken for a dead node's: git
/// holds one for the milliseconds of a ref update.
const STALE_REF_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl GitDb {
    /// Opens the repository at `path` (creating a bare one if absent and `options.create`),
    /// takes the writer lock unless read-only, and replays the journal. Needs no free space
    /// when the repository and journal exist (a full disk must not keep the daemon down).
    pub fn open(path: impl AsRef<Path>, node: NodeId, options: Options) -> Result<GitDb> {
        let path = path.as_ref();
        let store = if options.create && !options.read_only {
            Store::open_or_create(path, options.caches)?
        } else {
            Store::open(path, options.caches)?
        };
        let branch_ref = format!("refs/heads/{}", options.branch);
        if gix::refs::FullName::try_from(branch_ref.as_str()).is_err() {
            return Err(DbError::Store(StoreError::Ref {
                name: branch_ref,
                source: "invalid branch name".into(),
            }));
        }
        let meta_dir = store.git_dir().join("gitdb");
        let writer_lock = if options.read_only {
            None
        } else {
            std::fs::create_dir_all(&meta_dir).map_err(journal_err(&meta_dir))?;
            let lock = take_writer_lock(&meta_dir.join("lock"), store.git_dir())?;
            // Before any ref is moved: a node killed while it moved one left its lock.
            store.remove_stale_ref_locks(&branch_ref, STALE_REF_LOCK_GRACE);
            if store.read_ref(&branch_ref)?.is_none() {
                store.point_head_at(&branch_ref)?;
            }
            // We hold the writer lock: no gix writer of ours is running, and the age spares
            // one of another tool.
            store.remove_stale_temp_files(STALE_TEMP_AGE);
            Some(lock)
        };
        let head = store.read_ref(&branch_ref)?;
        let head_tree = match head {
            Some(id) => store.commit_info(id)?.tree,
            None => store.empty_tree(),
        };
        let stamp = match head {
            Some(id) => nearest_stamp(&store, id)?,
            None => CommitStamp::default(),
        };
        let journal_path = meta_dir.join("journal");
        let meta = MetaStore::open(&meta_dir.join("meta"), options.read_only)?;
        let (journal, records, followed) = if options.read_only {
            let followed = Followed {
                follower: journal::Follower::new(&journal_path),
                working: Working::new(),
                pending: Pending::default(),
                base: None,
            };
            (None, Vec::new(), Some(followed))
        } else {
            let (j, records) = Journal::open(&journal_path).map_err(journal_err(&journal_path))?;
            (Some(j), records, None)
        };
        let db = GitDb {
            store,
            node,
            branch: options.branch.clone(),
            branch_ref,
            read_only: options.read_only,
            commit_lock: Mutex::new(()),
            journal: Mutex::new(JournalState {
                journal,
                unsynced: Vec::new(),
                appended: 0,
                stale: false,
                protected: std::collections::HashSet::new(),
                unsynced_refs: Vec::new(),
                followed,
            }),
            state: RwLock::new(State {
                head,
                head_tree,
                working: Working::new(),
                pending: Pending::default(),
                clock: stamp.clock,
                hlc: match (stamp.hlc, head) {
                    (Some(h), Some(id)) => adopt_hlc(Hlc::default(), h, id),
                    _ => Hlc::default(),
                },
            }),
            subscribers: Mutex::new(Vec::new()),
            head_watch: std::sync::OnceLock::new(),
            tasks: crate::db::tasks::TaskState::default(),
            meta: Mutex::new(meta),
            witnesses: Witnesses::default(),
            replicator: RwLock::new(None),
            metrics: metrics::DbMetrics::new(),
            _writer_lock: writer_lock,
            #[cfg(test)]
            after_ref_moved: Mutex::new(None),
        };
        if options.read_only {
            db.follow_journal(false)?;
        } else {
            db.replay(records)?;
            // A commit or rollback that died before its metadata settled: with nothing left
            // uncommitted there is nothing to undo.
            if db.read_state().working.is_empty() {
                let mark = db.lock_meta().undo_len();
                db.settle_meta(mark);
            }
        }
        Ok(db)
    }

    /// Rebuilds the working layer from journal records. If the journal was made on an older
    /// head and that head plus the journal is exactly the current head, the process died after
    /// committing but before emptying the journal: the changes are committed, drop them.
    ///
    /// The file is left as it is wherever replaying it again gives the same working layer, so
    /// opening writes nothing that needs space: a journal on an older head gets a `Base`
    /// record for the current one appended (owed if the disk is full), a committed one is
    /// reset in place, and the count of its records lets compaction shrink it later.
    fn replay(&self, records: Vec<Record>) -> Result<()> {
        let count = records.len();
        let mut working = Working::new();
        let mut pending = Pending::default();
        let mut base: Option<Option<ObjectId>> = None;
        apply_records(&self.store, &mut working, &mut pending, &mut base, records)?;
        let (head, head_tree) = {
            let st = self.read_state();
            (st.head, st.head_tree)
        };
        let mut committed = false;
        if let Some(base) = base
            && base != head
            && !working.is_empty()
            && self.journal_committed(base, head_tree, &working)
        {
            log::info!("journal already committed as {head:?}; dropping it");
            working.clear();
            pending = Pending::default();
            committed = true;
        }
        self.prune_tombstones(&mut working, head_tree);
        let referenced = staged_ids(&working);
        pending.retain(|id| referenced.contains(id));
        {
            let mut st = self.write_state();
            st.working = working;
            st.pending = pending;
        }
        let mut js = self.lock_journal();
        if let Some(j) = js.journal.as_mut() {
            if committed {
                if let Err(e) = j.reset(Record::base(head)) {
                    // Replaying the old file again finds it committed again.
                    log::warn!("journal {}: cannot empty it: {e}", j.path().display());
                    js.stale = true;
                }
            } else if base != Some(head) {
                j.append_base(Record::base(head));
            }
        }
        js.appended = count;
        self.reconcile_staged_refs(&mut js);
        Ok(())
    }

    /// Whether `working` on top of commit `base` gives exactly `head_tree` (computed without
    /// writing: opening needs no free space). The blobs need not be written for that: if the
    /// journal was committed, that commit wrote them.
    fn journal_committed(
        &self,
        base: Option<ObjectId>,
        head_tree: ObjectId,
        working: &Working,
    ) -> bool {
        let base_tree = match base {
            Some(id) => match self.store.commit_info(id) {
                Ok(c) => c.tree,
                Err(_) => return false,
            },
            None => self.store.empty_tree(),
        };
        self.working_tree(base_tree, working, false).ok() == Some(head_tree)
    }

    /// Drops the tombstones over what `head_tree` does not hold. As at every delete (see
    /// `drop_needless_tombstone`): the journal records each delete, but only tombstones over
    /// what the head holds matter.
    pub(super) fn prune_tombstones(&self, working: &mut Working, head_tree: ObjectId) {
        let absent: Vec<String> = working
            .iter()
            .filter(|(_, c)| **c == Change::Delete)
            .map(|(path, _)| path.clone())
            .filter(|path| matches!(self.hides_nothing(head_tree, path), Ok(true)))
            .collect();
        for path in absent {
            working.remove(&path);
        }
    }
}

fn take_writer_lock(path: &Path, git_dir: &Path) -> Result<File> {
    let io_err = |source: std::io::Error| journal_err(path)(source);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(DbError::Locked {
                path: git_dir.to_owned(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    // The pid is only for the message a second writer gets: on a full disk it may not fit,
    // which must not keep the writer from opening.
    let pid = file
        .set_len(0)
        .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
        .and_then(|_| write!(file, "{}", std::process::id()));
    if let Err(e) = pid {
        log::warn!("cannot write the pid into {}: {e}", path.display());
    }
    Ok(file)
}
