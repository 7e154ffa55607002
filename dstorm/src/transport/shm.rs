//! The shared-memory transport: every segment is a file in `/dev/shm` (mode
//! 0600) that its owner creates and its peers map; a write is a store into
//! the peer's mapping followed by a doorbell ring.
//!
//! Each file's control block records the owner's pid and process start time.
//! A file whose owner is gone (a crashed or SIGKILLed run) is reclaimed; a
//! file whose owner is alive is an error naming that process.

use crate::config::TransportKind;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::segment::{ctl, Region};
use crate::transport::{Endpoint, Links, RejectCounts, Transport};
use crate::wire::{Payload, SlotHeader};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Prefix of every segment file name.
pub const FILE_PREFIX: &str = "malt-";

#[derive(Debug)]
pub(crate) struct ShmTransport {
    dir: PathBuf,
    /// The job part of the segment names: from the token until the
    /// coordinator's welcome, then from the token and the job's nonce.
    token: String,
    job: std::sync::atomic::AtomicU64,
    rank: usize,
    own: Mutex<Vec<(u32, PathBuf)>>,
}

impl ShmTransport {
    pub fn new(dir: &Path, token: &str, rank: usize) -> Result<ShmTransport> {
        if !dir.is_dir() {
            return Err(Error::Unsupported {
                transport: "shm",
                why: format!(
                    "{} is not a directory (set MALT_SHM_DIR to a tmpfs directory)",
                    dir.display()
                ),
            });
        }
        reap_stale(dir);
        Ok(ShmTransport {
            dir: dir.to_path_buf(),
            token: token.to_string(),
            job: job_of(token, 0).into(),
            rank,
            own: Mutex::new(Vec::new()),
        })
    }

    fn job(&self) -> u64 {
        self.job.load(Ordering::Relaxed)
    }

    fn path(&self, object: u32, rank: usize) -> PathBuf {
        segment_path(&self.dir, self.job(), object, rank)
    }
}

/// The file of `rank`'s segment for `object` in job `job`.
pub fn segment_path(dir: &Path, job: u64, object: u32, rank: usize) -> PathBuf {
    dir.join(format!("{FILE_PREFIX}{job:016x}-o{object}-r{rank}"))
}

/// This process's effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `m` (taken without following a symlink) is a regular file owned
/// by this user: the only kind of entry malt opens or removes in the shared
/// directory, where other users may plant FIFOs, symlinks or files of their
/// own under the names malt uses.
fn is_own_file(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.file_type().is_file() && m.uid() == euid()
}

/// Opens an existing segment file without following a symlink and without
/// blocking on a FIFO, and checks that it is a regular file of this user.
fn open_own(path: &Path, write: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !is_own_file(&f.metadata()?) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a regular file owned by this user",
        ));
    }
    Ok(f)
}

/// The job part of a segment file's name, from the job token and the
/// random nonce the coordinator gives every job (so that names cannot be
/// predicted even from a guessable token, and two jobs that share a token
/// do not share segments).
pub fn job_of(token: &str, nonce: u64) -> u64 {
    let mut h = twox_hash::XxHash3_64::with_seed(nonce);
    std::hash::Hasher::write(&mut h, token.as_bytes());
    std::hash::Hasher::finish(&h)
}

/// Removes the segment files of job `job` ([`job_of`]) from `dir`,
/// for the launcher once every rank has exited, some of them killed before
/// they could remove their own. Only regular files owned by this user are
/// removed, and none is opened. Returns how many were removed.
pub fn remove_job_files(dir: &Path, job: u64) -> usize {
    remove_own_files(dir, &format!("{FILE_PREFIX}{job:016x}-o"), |_, _| true)
}

/// Removes this user's regular files in `dir` whose names start with
/// `prefix` and for which `doomed(rest of the name, path)` holds; returns
/// how many. Other entries (another user's, FIFOs, symlinks) are neither
/// opened nor removed.
fn remove_own_files(
    dir: &Path,
    prefix: &str,
    mut doomed: impl FnMut(&str, &Path) -> bool,
) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let path = e.path();
        let ours = fs::symlink_metadata(&path).is_ok_and(|m| is_own_file(&m));
        if ours && doomed(rest, &path) && fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "removed a segment file");
            removed += 1;
        }
    }
    removed
}

/// Start time of a process in clock ticks since boot, if it is alive.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's PID namespace (0 if it cannot be read).
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Owner (magic, pid, start time, PID namespace) recorded in a segment
/// file's control block.
fn file_owner(path: &Path) -> Option<(u64, u32, u64, u64)> {
    let mut f = open_own(path, false).ok()?;
    let mut b = [0u8; ctl::PID_NS + 8];
    f.read_exact(&mut b).ok()?;
    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Some((
        w(ctl::MAGIC),
        w(ctl::PID) as u32,
        w(ctl::START_TIME),
        w(ctl::PID_NS),
    ))
}

/// Whether the process that created `path` may still be running: it is
/// alive in this PID namespace, or it lives in another one (where its pid
/// means nothing here). Files without a complete control block are young
/// (being created) only if the file is.
fn owner_alive(path: &Path) -> Option<u32> {
    match file_owner(path) {
        Some((magic, pid, start, ns)) if magic == ctl::SEGMENT_MAGIC => {
            let elsewhere = ns != 0 && ns != pid_namespace();
            (elsewhere || process_start_time(pid) == Some(start)).then_some(pid)
        }
        _ => {
            let young = fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60);
            young.then_some(0)
        }
    }
}

/// Removes segment files of dead processes (best effort, own files only:
/// the sticky /dev/shm refuses to unlink other users' files anyway).
fn reap_stale(dir: &Path) {
    remove_own_files(dir, FILE_PREFIX, |_, path| owner_alive(path).is_none());
}

/// Gives a new segment file its size with the space reserved, so that a
/// full tmpfs is an error now instead of a SIGBUS at the first write.
fn reserve(file: &File, dir: &Path, path: &Path, len: usize) -> Result<()> {
    use std::os::fd::AsRawFd;
    let len_off = libc::off_t::try_from(len).map_err(|_| {
        seg_err(path, "size")(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes is more than a file can hold"),
        ))
    })?;
    let reserved = loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call;
        // posix_fallocate only allocates blocks of that file.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len_off) } {
            libc::EINTR => continue,
            rc => break rc,
        }
    };
    match reserved {
        0 => {}
        libc::ENOSPC | libc::EFBIG => {
            return Err(Error::ShmFull {
                dir: dir.to_path_buf(),
                needed: len as u64,
                free: free_bytes(dir).unwrap_or(0),
            })
        }
        // A file system that cannot reserve space: size the file anyway.
        libc::EOPNOTSUPP | libc::EINVAL => {}
        errno => {
            return Err(seg_err(path, "reserve space")(
                io::Error::from_raw_os_error(errno),
            ))
        }
    }
    file.set_len(len as u64).map_err(seg_err(path, "size"))
}

/// Bytes available to this user in the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable
    // memory of the type statvfs fills in.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn seg_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Segment {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl Transport for ShmTransport {
    fn remove_own(&self) {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        for (_, path) in own.drain(..) {
            let _ = fs::remove_file(path);
        }
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Shm
    }

    fn local_endpoint(&self) -> Option<String> {
        None
    }

    fn start(&self, _table: &[Endpoint]) -> Result<()> {
        Ok(())
    }

    fn create(&self, object: u32, _name: &str, layout: &Layout) -> Result<Arc<Region>> {
        let path = self.path(object, self.rank);
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
        };
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(&path).is_ok_and(|m| is_own_file(&m)) {
                    return Err(seg_err(&path, "create")(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the name is taken by an entry that is not a regular file of this \
                         user (another user's file, a FIFO or a symlink); remove it, or set \
                         MALT_SHM_DIR to a directory of your own",
                    )));
                }
                if let Some(pid) = owner_alive(&path) {
                    return Err(Error::ShmInUse { path, pid });
                }
                fs::remove_file(&path).map_err(seg_err(&path, "remove stale file"))?;
                open().map_err(seg_err(&path, "create"))?
            }
            Err(e) => return Err(seg_err(&path, "create")(e)),
        };
        // The file is ours from here on: no error may leave it behind.
        let region = reserve(&file, &self.dir, &path, layout.total)
            .and_then(|()| Region::shared(&file, layout.total).map_err(seg_err(&path, "map")));
        let region = match region {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let pid = std::process::id();
        let start = process_start_time(pid).unwrap_or(0);
        region.word(ctl::OWNER).store(
            self.rank as u64 | (u64::from(crate::wire::VERSION) << 32),
            Ordering::Relaxed,
        );
        region
            .word(ctl::PID)
            .store(u64::from(pid), Ordering::Relaxed);
        region.word(ctl::START_TIME).store(start, Ordering::Relaxed);
        region
            .word(ctl::PID_NS)
            .store(pid_namespace(), Ordering::Relaxed);
        region.word(ctl::JOB).store(self.job(), Ordering::Relaxed);
        region
            .word(ctl::SIZE)
            .store(layout.total as u64, Ordering::Relaxed);
        region
            .word(ctl::OBJECT)
            .store(u64::from(object), Ordering::Relaxed);
        region
            .word(ctl::MAGIC)
            .store(ctl::SEGMENT_MAGIC, Ordering::Release);
        tracing::debug!(object, path = %path.display(), bytes = layout.total, "created a segment");
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((object, path));
        Ok(Arc::new(region))
    }

    fn connect(
        &self,
        object: u32,
        _name: &str,
        peers: &[(usize, Layout)],
    ) -> Result<Box<dyn Links>> {
        let mut regions: Vec<Option<Region>> = Vec::new();
        for (peer, layout) in peers {
            let path = self.path(object, *peer);
            let file = open_own(&path, true).map_err(seg_err(&path, "open peer segment"))?;
            let size = file
                .metadata()
                .map_err(seg_err(&path, "stat peer segment"))?
                .len();
            if size != layout.total as u64 {
                return Err(Error::SegmentMismatch {
                    path,
                    problem: format!("size {size}, expected {}", layout.total),
                });
            }
            let region = Region::shared(&file, layout.total).map_err(seg_err(&path, "map"))?;
            let (magic, job, obj) = (
                region.word(ctl::MAGIC).load(Ordering::Acquire),
                region.word(ctl::JOB).load(Ordering::Relaxed),
                region.word(ctl::OBJECT).load(Ordering::Relaxed),
            );
            if magic != ctl::SEGMENT_MAGIC || job != self.job() || obj != u64::from(object) {
                return Err(Error::SegmentMismatch {
                    path,
                    problem: format!(
                        "control block says magic {magic:#x} job {job:#x} object {obj}"
                    ),
                });
            }
            if regions.len() <= *peer {
                regions.resize_with(peer + 1, || None);
            }
            regions[*peer] = Some(region);
            tracing::debug!(object, peer, path = %path.display(), "mapped a peer's segment");
        }
        Ok(Box::new(ShmLinks { regions }))
    }

    fn destroy(&self, object: u32) {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.retain(|(o, path)| {
            if *o == object {
                let _ = fs::remove_file(path);
                false
            } else {
                true
            }
        });
    }

    fn rejected(&self) -> RejectCounts {
        RejectCounts::default()
    }

    fn welcome(&self, nonce: u64) {
        self.job
            .store(job_of(&self.token, nonce), Ordering::Relaxed);
    }

    fn forget(&self, peers: &[usize]) {
        // A departed rank cannot remove its segment files; the survivors
        // do. An evicted rank that still runs keeps its mappings.
        let prefix = format!("{FILE_PREFIX}{:016x}-o", self.job());
        remove_own_files(&self.dir, &prefix, |rest, _| {
            rest.rsplit_once("-r")
                .and_then(|(_, r)| r.parse::<usize>().ok())
                .is_some_and(|r| peers.contains(&r))
        });
    }
}

impl Drop for ShmTransport {
    fn drop(&mut self) {
        self.remove_own();
    }
}

#[derive(Debug)]
struct ShmLinks {
    regions: Vec<Option<Region>>,
}

impl ShmLinks {
    fn region(&self, peer: usize) -> &Region {
        // Object only calls with peers it connected; anything else is a bug.
        self.regions
            .get(peer)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("no shm link to rank {peer}"))
    }
}

impl Links for ShmLinks {
    fn write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        let r = self.region(peer);
        r.store_slot(offset, h, payload);
        r.ring();
        Ok(())
    }

    #[cfg(feature = "testing")]
    fn write_slot_torn(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        let r = self.region(peer);
        r.store_slot_torn(offset, h, payload);
        r.ring();
        Ok(())
    }

    fn write_word(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        let r = self.region(peer);
        r.word(offset).store(value, Ordering::Release);
        r.ring();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let a = process_start_time(me).expect("own /proc entry");
        assert_eq!(process_start_time(me), Some(a));
    }

    #[test]
    fn a_live_owner_blocks_creation_and_a_dead_one_does_not() {
        let dir = std::env::temp_dir().join(format!("malt-shm-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let layout = Layout::new(64, 2, vec![1], 2);
        let a = ShmTransport::new(&dir, "42", 0).unwrap();
        let _seg = a.create(0, "x", &layout).unwrap();
        // Same job, same rank, owner alive: refused with the owner's pid.
        let b = ShmTransport::new(&dir, "42", 0).unwrap();
        match b.create(0, "x", &layout) {
            Err(Error::ShmInUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected ShmInUse, got {other:?}"),
        }
        // Forge a dead owner: a start time no live process has.
        let path = segment_path(&dir, job_of("42", 0), 0, 0);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let r = Region::shared(&f, layout.total).unwrap();
        r.word(ctl::START_TIME).store(u64::MAX, Ordering::Relaxed);
        // An owner in another PID namespace: its pid means nothing here,
        // so the file is left alone.
        r.word(ctl::PID_NS)
            .store(pid_namespace() + 1, Ordering::Relaxed);
        drop(ShmTransport::new(&dir, "42", 9).unwrap());
        assert!(
            path.exists(),
            "a segment of another PID namespace was reaped"
        );
        r.word(ctl::PID_NS)
            .store(pid_namespace(), Ordering::Relaxed);
        let c = ShmTransport::new(&dir, "42", 0).unwrap();
        // reap_stale already removed it, so creation succeeds.
        assert!(!path.exists());
        c.create(0, "x", &layout).unwrap();
        drop((a, b, c));
        fs::remove_dir_all(&dir).unwrap();
    }
}
