//! The shared-memory directory is shared with every other user of the host:
//! entries planted there under malt's names must neither stall a job nor be
//! opened or removed, and a directory too small for the segments must be a
//! clear error, not a SIGBUS.

mod common;

use common::{malt, run_with_deadline, ShmDir};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `malt launch -n N -- malt check ARGS` with segments in `dir`.
fn check_job(ranks: usize, dir: &str, args: &[&str], deadline: Duration) -> common::Job {
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", &ranks.to_string(), "--timeout", "20", "--"])
        .arg(malt())
        .arg("check")
        .args(args)
        .env("MALT_SHM_DIR", dir);
    run_with_deadline(cmd, deadline)
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Whether this process may give files away (root may; then "another
/// user's file" is a real one, owned by nobody).
fn can_chown() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn planted_fifos_symlinks_and_other_users_files_neither_stall_a_job_nor_are_touched() {
    let shm = ShmDir::new("planted");
    let dir = shm.0.clone();
    // A FIFO: opening it for reading blocks until a writer comes.
    let fifo = dir.join("malt-0000000000000000-o0-r0");
    mkfifo(&fifo);
    // Symlinks, to the FIFO and to a file outside the directory.
    let outside = tempfile_outside();
    let link_fifo = dir.join("malt-1111111111111111-o0-r1");
    let link_file = dir.join("malt-2222222222222222-o0-r0");
    std::os::unix::fs::symlink(&fifo, &link_fifo).expect("symlink");
    std::os::unix::fs::symlink(&outside, &link_file).expect("symlink");
    // Another user's file that looks stale: no owner in its header, and old.
    let foreign = dir.join("malt-3333333333333333-o0-r0");
    std::fs::write(&foreign, vec![0u8; 4096]).expect("write");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&foreign)
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    if can_chown() {
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    } else {
        eprintln!("not root: the planted file stays this user's own, so only its removal by age is tested");
    }
    let before = |p: &Path| std::fs::symlink_metadata(p).map(|m| (m.ino(), m.mtime()));
    let planted = [&fifo, &link_fifo, &link_file, &foreign];
    let stamps: Vec<_> = planted
        .iter()
        .map(|p| before(p).expect("planted"))
        .collect();

    let t = Instant::now();
    let job = check_job(2, &shm.path(), &[], Duration::from_secs(60));
    assert!(!job.timed_out, "the job hung ({:?}): {job:?}", t.elapsed());
    assert_eq!(job.code, Some(0), "{job:?}");
    let lines = job.json_lines();
    assert_eq!(lines.len(), 2, "{job:?}");
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
    }
    if can_chown() {
        for (p, stamp) in planted.iter().zip(&stamps) {
            assert_eq!(
                before(p).ok().as_ref(),
                Some(stamp),
                "{} was touched",
                p.display()
            );
        }
    } else {
        // Our own stale-looking file may be reclaimed; the others stay.
        for (p, stamp) in planted.iter().zip(&stamps).take(3) {
            assert_eq!(
                before(p).ok().as_ref(),
                Some(stamp),
                "{} was touched",
                p.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(&outside).ok().as_deref(),
        Some("outside"),
        "the symlink's target was written"
    );
    let _ = std::fs::remove_file(outside);
}

/// A file outside the shm directory that a symlink may point to.
fn tempfile_outside() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("malt-outside-{}", std::process::id()));
    std::fs::write(&p, "outside").expect("write");
    p
}

/// A tmpfs of `size` mounted for the test, unmounted on drop.
struct Tmpfs(ShmDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let d = ShmDir::new("small");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&d.0)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(d))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

#[test]
fn a_tmpfs_too_small_for_the_segments_is_a_clear_error_and_nothing_is_left() {
    let Some(fs) = Tmpfs::mount("64m") else {
        assert!(
            !nix::unistd::geteuid().is_root(),
            "root could not mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let t = Instant::now();
    // Four ranks, each receiving 20 MB updates from three peers: no queue
    // layout fits 64 MiB.
    let job = check_job(
        4,
        &fs.0.path(),
        &["--size", "20000000"],
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    assert!(!job.timed_out, "the job hung: {job:?}");
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {job:?}");
    assert!(!job.stderr.contains("SIGBUS"), "{}", job.stderr);
    assert!(
        job.stderr.contains("no room in") && job.stderr.contains("MALT_SHM_DIR"),
        "the error must name the cause and the fix: {}",
        job.stderr
    );
    assert_eq!(fs.0.files(), Vec::<String>::new(), "files left behind");
}
