//! A program a client ships to nodes: what identifies it (SHA-256, size,
//! target, linking), and whether a node can run it. Pure: the only I/O is
//! reading the file being described.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// The largest chunk of an upload, in bytes.
pub const CHUNK: usize = 1 << 20;

/// A program's identity: the SHA-256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProgramId(pub [u8; 32]);

impl ProgramId {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ProgramId(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, 64 characters: the program's file name in a cache.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The id written by [`hex`](Self::hex); `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 32];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ProgramId(id))
    }
}

impl fmt::Display for ProgramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve hex digits name a program in logs; the full hash is in `hex`.
        f.write_str(&self.hex()[..12])
    }
}

impl fmt::Debug for ProgramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProgramId({self})")
    }
}

/// How a program is linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Linking {
    /// Needs nothing from the machine that runs it.
    Static,
    /// Needs this program interpreter (dynamic loader) and the libraries it loads.
    Dynamic {
        /// The `PT_INTERP` path, e.g. `/lib64/ld-linux-x86-64.so.2`.
        interpreter: String,
    },
}

/// What a client says about the program it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramInfo {
    /// SHA-256 of the file.
    pub id: ProgramId,
    /// Its size in bytes.
    pub size: u64,
    /// `arch-os`, e.g. `x86_64-linux`, read from the file itself.
    pub target: String,
    /// Static or dynamic.
    pub linking: Linking,
}

/// Why a program cannot be described.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// Reading the file failed.
    #[error("cannot read the program: {0}")]
    Io(#[from] io::Error),
    /// The file is not a 64-bit little-endian ELF executable.
    #[error("not a program this cluster can ship: {0}")]
    NotElf(&'static str),
}

crate::debug_as_display!(ProgramError);

/// Bytes of the file's start read to find its headers and interpreter.
const HEAD: usize = 64 << 10;

impl ProgramInfo {
    /// Describes the program at `path`, hashing it in one streaming pass.
    pub fn of_file(path: &Path) -> Result<Self, ProgramError> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(HEAD);
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let part = &buf[..n];
            hasher.update(part);
            let room = HEAD.saturating_sub(head.len());
            head.extend_from_slice(&part[..n.min(room)]);
            size += n as u64;
        }
        let (target, linking) = elf_facts(&head)?;
        Ok(ProgramInfo {
            id: ProgramId(hasher.finalize().into()),
            size,
            target,
            linking,
        })
    }

    /// Describes the program this process runs.
    pub fn current() -> Result<Self, ProgramError> {
        Self::of_file(&std::env::current_exe()?)
    }
}

/// The target (`arch-os`) and linking of an ELF file, from its first bytes.
pub fn elf_facts(head: &[u8]) -> Result<(String, Linking), ProgramError> {
    if head.get(..4) != Some(b"\x7fELF") {
        return Err(ProgramError::NotElf("no ELF magic"));
    }
    if head.get(4) != Some(&2) || head.get(5) != Some(&1) {
        return Err(ProgramError::NotElf("not 64-bit little-endian"));
    }
    let arch = match u16_at(head, 0x12) {
        Some(62) => "x86_64",
        Some(183) => "aarch64",
        Some(243) => "riscv64",
        _ => return Err(ProgramError::NotElf("unknown machine")),
    };
    let phoff = u64_at(head, 0x20).ok_or(ProgramError::NotElf("short header"))?;
    let phentsize = u16_at(head, 0x36).ok_or(ProgramError::NotElf("short header"))?;
    let phnum = u16_at(head, 0x38).ok_or(ProgramError::NotElf("short header"))?;
    let mut linking = Linking::Static;
    for i in 0..u64::from(phnum) {
        let at = usize::try_from(phoff + i * u64::from(phentsize))
            .map_err(|_| ProgramError::NotElf("program headers out of range"))?;
        let kind = u32_at(head, at).ok_or(ProgramError::NotElf("program headers cut short"))?;
        if kind == PT_INTERP {
            linking = Linking::Dynamic {
                interpreter: interpreter(head, at)?,
            };
        }
    }
    Ok((format!("{arch}-linux"), linking))
}

const PT_INTERP: u32 = 3;

fn interpreter(head: &[u8], phdr: usize) -> Result<String, ProgramError> {
    let bad = ProgramError::NotElf("interpreter out of range");
    let offset = u64_at(head, phdr + 8).and_then(|o| usize::try_from(o).ok());
    let len = u64_at(head, phdr + 32).and_then(|l| usize::try_from(l).ok());
    let (Some(offset), Some(len)) = (offset, len) else {
        return Err(bad);
    };
    let bytes = head.get(offset..offset.saturating_add(len)).ok_or(bad)?;
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What a node can run and store: the facts [`answer_offer`] decides on.
#[derive(Debug, Clone)]
pub struct NodeCaps {
    /// False when the node was started with `--no-upload`.
    pub uploads: bool,
    /// The node's own `arch-os`.
    pub target: String,
    /// The cache's size cap in bytes (`--cache-max`).
    pub cache_max: u64,
}

/// A node's answer to an offered program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OfferAnswer {
    /// The node has it already: no upload.
    Have,
    /// Send it.
    Need,
    /// The node will not run it, and why.
    Refuse(String),
}

/// The node's answer to `offer`: `cached` says whether its cache holds the
/// program, `has_file` whether a path exists on the node (for the interpreter
/// a dynamic program needs).
pub fn answer_offer(
    offer: &ProgramInfo,
    caps: &NodeCaps,
    cached: bool,
    has_file: impl Fn(&str) -> bool,
) -> OfferAnswer {
    if !caps.uploads {
        return OfferAnswer::Refuse("this node was started with --no-upload".into());
    }
    if offer.target != caps.target {
        return OfferAnswer::Refuse(format!(
            "the program is built for {}, this node is {}",
            offer.target, caps.target
        ));
    }
    if let Linking::Dynamic { interpreter } = &offer.linking {
        if !has_file(interpreter) {
            return OfferAnswer::Refuse(format!(
                "the program is linked dynamically and needs {interpreter}, which this node \
                 does not have; link it statically (RUSTFLAGS=\"-C target-feature=+crt-static\")"
            ));
        }
    }
    if cached {
        return OfferAnswer::Have;
    }
    if offer.size > caps.cache_max {
        return OfferAnswer::Refuse(format!(
            "the program has {} bytes, more than this node's cache holds ({} bytes, --cache-max)",
            offer.size, caps.cache_max
        ));
    }
    OfferAnswer::Need
}

#[cfg(test)]
mod tests;
