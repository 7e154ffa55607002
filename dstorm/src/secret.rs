//! The per-user secret that, mixed with a launcher's job id, makes the job
//! token under srun, mpirun and torchrun when `MALT_JOB_TOKEN` is not set.
//!
//! Job ids are public (`squeue`, `ps`), so a token made from them alone
//! could be guessed by any other user of the cluster. The secret is a file
//! that only its owner can read (`MALT_SECRET_FILE`, by default
//! `$XDG_CONFIG_HOME/malt/secret` or `~/.config/malt/secret`), created on
//! first use with 32 random bytes. All ranks of a job read the same file
//! where the home directory is shared; where it is not, their tokens differ
//! and authentication fails with a message that says what to set.

use crate::env::Env;
use crate::error::{Error, Result};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random 128-bit token from the operating system's generator, in
/// hex: what `malt launch` gives each job, and a single-rank job itself.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex(&b)
}

/// Longest secret file read (the file is 65 bytes as written).
const MAX_BYTES: u64 = 4096;
/// Fewest bytes a secret must have.
const MIN_BYTES: usize = 16;

/// Where this user's secret lives, if anywhere can be named.
pub fn path(env: &dyn Env) -> Option<PathBuf> {
    if let Some(p) = env.get("MALT_SECRET_FILE") {
        return Some(PathBuf::from(p));
    }
    let config = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(config.join("malt").join("secret"))
}

fn err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!("the secret file {}: {what}", path.display()))
}

/// Reads the secret at `path`, creating it (mode 0600, in a directory
/// created 0700) on first use. Ranks that start together may all try to
/// create it: each writes a file of its own and links it into place, and
/// those that lose the race read the winner's.
pub fn load_or_create(path: &Path) -> Result<Vec<u8>> {
    if let Some(secret) = read(path)? {
        return Ok(secret);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(path, format_args!("cannot create its directory: {e}")))?;
        // Another user who may rename or remove entries in the directory
        // could replace the secret between two ranks' reads (a sticky
        // directory such as /tmp forbids that).
        let m = fs::symlink_metadata(dir).map_err(|e| err(path, e))?;
        let private = m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0;
        let sticky = m.mode() & 0o1000 != 0;
        if !m.is_dir() || !(private || sticky) {
            return Err(err(
                path,
                format_args!(
                    "its directory {} must be this user's own and writable by nobody else \
                     (or sticky, as /tmp is)",
                    dir.display()
                ),
            ));
        }
    }
    let tmp = path.with_extension(format!(
        "tmp-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let bytes: [u8; 32] = rand::random();
        f.write_all(format!("{}\n", hex(&bytes)).as_bytes())?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = fs::remove_file(&tmp);
    written.map_err(|e| err(path, format_args!("cannot create it: {e}")))?;
    tracing::info!(path = %path.display(), "created the per-user malt secret");
    read(path)?.ok_or_else(|| err(path, "it vanished as it was made"))
}

/// Reads an existing secret: a regular file of this user that nobody else
/// can read, of at most [`MAX_BYTES`]; `None` if there is none.
fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    let open = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut f = match open {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(path, e)),
    };
    let m = f.metadata().map_err(|e| err(path, e))?;
    if !m.file_type().is_file() || m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(err(path, "not a regular file of this user"));
    }
    if m.mode() & 0o077 != 0 {
        return Err(err(
            path,
            format_args!(
                "other users may read it (mode {:o}): chmod 600 it, or remove it to have a new one made",
                m.mode() & 0o777
            ),
        ));
    }
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(path, e))?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(err(path, format_args!("longer than {MAX_BYTES} bytes")));
    }
    let secret = buf.trim_ascii().to_vec();
    if secret.len() < MIN_BYTES {
        return Err(err(path, format_args!("shorter than {MIN_BYTES} bytes")));
    }
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("malt-secret-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn made_once_private_and_the_same_for_every_rank_that_races_for_it() {
        let d = dir("race");
        let p = d.join("sub").join("secret");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || load_or_create(&p).unwrap())
            })
            .collect();
        let got: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            got.iter().all(|s| *s == got[0]),
            "ranks got different secrets"
        );
        assert_eq!(got[0].len(), 64);
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(p.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("shared");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = load_or_create(&d.join("secret")).unwrap_err().to_string();
        assert!(e.contains("writable by nobody else"), "{e}");
        assert!(!d.join("secret").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_secret_others_can_read_a_symlink_or_a_short_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("bad");
        fs::create_dir_all(&d).unwrap();
        let p = d.join("secret");
        fs::write(&p, "0123456789abcdef0123").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(&p).unwrap(), b"0123456789abcdef0123");
        let link = d.join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(load_or_create(&link).is_err());
        fs::write(&p, "short").unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("shorter"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
