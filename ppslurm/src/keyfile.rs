//! The key file the nodes read: the client's keys, one a line, in a file of
//! mode 0600 that is removed when the nodes are stopped.

use crate::error::SlurmError;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The key file: written with mode 0600 on start, removed on drop.
#[derive(Debug)]
pub(crate) struct KeyFile(PathBuf);

impl KeyFile {
    /// Writes `secret` to a new file in `dir` (made 0700 if missing), mode
    /// 0600, named with `tag`.
    pub(crate) fn write(dir: &Path, tag: &str, secret: &[u8]) -> Result<Self, SlurmError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| SlurmError::KeyFile { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err(dir))?;
        let path = dir.join(format!("slurm-{}-{tag}.key", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(err(&path))?;
        let key = KeyFile(path);
        file.write_all(secret).map_err(err(&key.0))?;
        file.sync_all().map_err(err(&key.0))?;
        Ok(key)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A few random hex digits, to tell this client's files and steps apart.
pub(crate) fn random_tag() -> String {
    ppcore::Key::generate()
        .map(|k| k.fingerprint())
        .unwrap_or_default()
}

/// The text of a key file for the nodes: one `ppk1-` key a line (what
/// [`start`](crate::launch::start) takes as the secret).
pub fn key_file_text(keys: &ppcore::KeySet) -> Vec<u8> {
    keys.keys()
        .iter()
        .map(|k| k.to_text() + "\n")
        .collect::<String>()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pp-key-test-{}", std::process::id()));
        let key = KeyFile::write(&dir, "ab12", b"s3cret").unwrap();
        let path = key.path().to_owned();
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(key);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
