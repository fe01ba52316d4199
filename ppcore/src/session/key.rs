//! Keys, not passwords: 256-bit random keys in a recognisable text form.
//!
//! A key is written `ppk1-` followed by the standard base64 of 32 random
//! bytes (44 characters). Every pre-shared-key handshake lets an active
//! attacker test guesses offline, so anything that is not such a key (a
//! password, a dictionary word, a truncated key) is refused before it can
//! reach the network, with a message saying how to make a real one.
//!
//! A [`KeySet`] holds one key, or two during a rollover (the new one and the
//! old one). Neither a key nor a key set ever shows its bytes in `Debug`;
//! logs name a key by its [`fingerprint`](Key::fingerprint).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use zeroize::Zeroize;

/// How every key's text starts.
pub const KEY_PREFIX: &str = "ppk1-";
/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// The most keys a [`KeySet`] holds: the new and the old during a rollover.
pub const MAX_KEYS: usize = 2;
/// The environment variable that holds the key (the text of a key file)
/// where no key file is named: read by `ppserver`, the `ppclient` command
/// and a client's `Builder`.
pub const SECRET_ENV: &str = "PP_SECRET";

/// How to make a key, for every refusal.
const HOW_TO_MAKE: &str =
    "make one with `ppserver --gen-secret FILE` or `ppclient secret new FILE` \
and pass it with --secret-file FILE or PP_SECRET";

/// Why a key (or a key file) was refused. Never holds the refused text: it
/// may have been someone's password.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a key in the `ppk1-` format.
    #[error("not a pp key ({why}): a key is `{KEY_PREFIX}` followed by 44 base64 characters; {HOW_TO_MAKE}")]
    NotAKey {
        /// What is wrong with it, without repeating it.
        why: &'static str,
    },
    /// No key at all where one is needed.
    #[error("no key given: {HOW_TO_MAKE}")]
    Missing,
    /// More keys than a rollover needs.
    #[error("{0} keys given; at most {MAX_KEYS} (the new and the old during a rollover)")]
    TooMany(usize),
    /// The same key twice.
    #[error("the same key is given twice")]
    Duplicate,
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The system has no randomness to give.
    #[error("no randomness for a new key: {0}")]
    Random(getrandom::Error),
}

crate::debug_as_display!(KeyError);

/// A 256-bit pre-shared key. Zeroed when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes).map_err(KeyError::Random)?;
        Ok(Key(bytes))
    }

    /// A key from its bytes (tests, and keys kept elsewhere than in text).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// Parses `ppk1-<base64>`; surrounding whitespace is ignored. A key
    /// whose 32 bytes are all the same (all zeros, say) is refused: it was
    /// not generated.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let not = |why| KeyError::NotAKey { why };
        let text = text.trim();
        let body = text
            .strip_prefix(KEY_PREFIX)
            .ok_or(not("it does not start with `ppk1-`"))?;
        let mut bytes = STANDARD
            .decode(body)
            .map_err(|_| not("what follows `ppk1-` is not base64"))?;
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| not("it does not hold 32 bytes"))
            .and_then(|b| match b.iter().all(|&x| x == b[0]) {
                // All zeros (or any one byte 32 times) is no generated key:
                // someone wrote it by hand, and anyone can guess it.
                true => Err(not("its 32 bytes are all the same")),
                false => Ok(Key(b)),
            });
        bytes.zeroize();
        key
    }

    /// The key's text, `ppk1-<base64>`: for writing a key file, nothing else.
    pub fn to_text(&self) -> String {
        format!("{KEY_PREFIX}{}", STANDARD.encode(self.0))
    }

    /// The raw bytes, for the handshake.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A short public name for the key (8 hex digits of a labelled SHA-256),
    /// to tell keys apart in logs during a rollover. It reveals nothing
    /// usable: the key is 256 random bits.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"pp key fingerprint v1")
            .chain_update(self.0)
            .finalize();
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint())
    }
}

/// The keys a node or a client accepts: one, or two during a rollover. The
/// first is the one a client offers first.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySet(Vec<Key>);

impl KeySet {
    /// One key.
    pub fn one(key: Key) -> Self {
        KeySet(vec![key])
    }

    /// One or two distinct keys, the preferred first.
    pub fn new(keys: Vec<Key>) -> Result<Self, KeyError> {
        match keys.len() {
            0 => Err(KeyError::Missing),
            n if n > MAX_KEYS => Err(KeyError::TooMany(n)),
            _ if keys.windows(2).any(|w| w[0] == w[1]) => Err(KeyError::Duplicate),
            _ => Ok(KeySet(keys)),
        }
    }

    /// Parses the text of a key file or of `PP_SECRET`: keys separated by
    /// whitespace or commas; lines starting with `#` are comments.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let keys = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|w| !w.is_empty())
            .map(Key::parse)
            .collect::<Result<Vec<_>, _>>()?;
        KeySet::new(keys)
    }

    /// Reads and parses a key file.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let parsed = std::str::from_utf8(&text)
            .map_err(|_| KeyError::NotAKey {
                why: "the file is not text",
            })
            .and_then(KeySet::parse);
        let mut text = text;
        text.zeroize();
        parsed
    }

    /// The keys, the preferred first.
    pub fn keys(&self) -> &[Key] {
        &self.0
    }

    /// The key a client offers first.
    pub fn primary(&self) -> &Key {
        // `new` refuses an empty set.
        &self.0[0]
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// Writes a new key to `path` with mode 0600 (owner only), refusing to
/// overwrite a file that exists. Returns the key's fingerprint.
pub fn write_new_key_file(path: &Path) -> Result<String, KeyError> {
    let key = Key::generate()?;
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    // The key alone on one line: the file's bytes, less the newline, are
    // the same text as `PP_SECRET` would hold.
    let mut text = format!("{}\n", key.to_text());
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    text.zeroize();
    written.map_err(io)?;
    Ok(key.fingerprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_has_the_prefix() {
        let key = Key::generate().unwrap();
        let text = key.to_text();
        assert!(text.starts_with("ppk1-") && text.len() == 5 + 44, "{text}");
        assert_eq!(Key::parse(&text).unwrap(), key);
        assert_eq!(Key::parse(&format!("  {text}\n")).unwrap(), key);
        assert_ne!(Key::generate().unwrap(), key, "two keys alike");
    }

    #[test]
    fn non_keys_are_refused_with_how_to_make_one_and_without_echo() {
        let key = Key::generate().unwrap().to_text();
        for bad in [
            "hunter2",
            "pp-demo-secret",
            "",
            "ppk1-",
            "ppk1-!!!notbase64",
            &key[..key.len() - 4],
            &format!("ppk2-{}", &key[5..]),
            &format!("{key}AAAA"),
        ] {
            let err = Key::parse(bad).unwrap_err().to_string();
            assert!(err.contains("ppserver --gen-secret FILE"), "{err}");
            assert!(err.contains("ppclient secret new FILE"), "{err}");
            assert!(
                bad.len() <= KEY_PREFIX.len() || !err.contains(bad),
                "echoed: {err}"
            );
        }
    }

    #[test]
    fn keys_of_one_repeated_byte_are_refused() {
        for byte in [0u8, 0xff, b'a'] {
            let text = Key::from_bytes([byte; KEY_LEN]).to_text();
            let err = Key::parse(&text).unwrap_err().to_string();
            assert!(err.contains("all the same"), "{err}");
            assert!(KeySet::parse(&text).is_err());
        }
        let mut almost = [0u8; KEY_LEN];
        almost[31] = 1;
        assert!(Key::parse(&Key::from_bytes(almost).to_text()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::generate().unwrap();
        let text = key.to_text();
        let set = KeySet::one(key.clone());
        for shown in [format!("{key:?}"), format!("{set:?}")] {
            assert!(!shown.contains(&text[5..15]), "{shown}");
            assert!(shown.contains(&key.fingerprint()), "{shown}");
        }
    }

    #[test]
    fn key_sets_hold_one_or_two_distinct_keys() {
        let (a, b, c) = (
            Key::generate().unwrap(),
            Key::generate().unwrap(),
            Key::generate().unwrap(),
        );
        let two = format!("# new, then old\n{}\n{}\n", a.to_text(), b.to_text());
        assert_eq!(KeySet::parse(&two).unwrap().keys(), &[a.clone(), b.clone()]);
        let env = format!("{},{}", b.to_text(), a.to_text());
        assert_eq!(KeySet::parse(&env).unwrap().primary(), &b);
        assert!(matches!(KeySet::parse(""), Err(KeyError::Missing)));
        assert!(matches!(
            KeySet::parse("# only a comment"),
            Err(KeyError::Missing)
        ));
        let three = format!("{} {} {}", a.to_text(), b.to_text(), c.to_text());
        assert!(matches!(KeySet::parse(&three), Err(KeyError::TooMany(3))));
        let twice = format!("{} {}", a.to_text(), a.to_text());
        assert!(matches!(KeySet::parse(&twice), Err(KeyError::Duplicate)));
        let mixed = format!("{} password", a.to_text());
        assert!(matches!(
            KeySet::parse(&mixed),
            Err(KeyError::NotAKey { .. })
        ));
    }

    #[test]
    fn key_files_are_private_new_and_readable() {
        let dir = std::env::temp_dir().join(format!("ppk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let fingerprint = write_new_key_file(&path).unwrap();
        let set = KeySet::read_file(&path).unwrap();
        assert_eq!(set.primary().fingerprint(), fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_new_key_file(&path).unwrap_err();
        assert!(matches!(again, KeyError::Io { .. }), "{again}");
        assert_eq!(KeySet::read_file(&path).unwrap(), set, "overwritten");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
