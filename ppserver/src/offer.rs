//! What a node offers its jobs: `--resources gpu=2,licence=4` (with
//! `gpu=auto` counted from the machine), `--tags ssd`, `--memory 64G`
//! (default: the machine's memory, or its cgroup's limit if lower), and
//! its workers as cpus.

use ppcore::resources::{Offer, ResourceError};
use std::path::{Path, PathBuf};

/// The environment variable naming the directory `gpu=auto` counts GPUs
/// in (one entry per GPU), instead of `/proc/driver/nvidia/gpus`: for
/// tests, and machines that list them elsewhere.
pub const GPU_DIR_ENV: &str = "PP_GPU_DIR";

/// Where the NVIDIA driver lists its GPUs, one directory each.
const NVIDIA_GPUS: &str = "/proc/driver/nvidia/gpus";

/// Checks a `--resources` list (a name=count list; `gpu=auto` allowed).
pub(crate) fn parse_resources(text: &str) -> Result<String, String> {
    let mut probe = Offer::new(0);
    probe
        .add_list(&text.replace("=auto", "=0"))
        .map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// Checks a `--tags` list (`ssd,eu-west`).
pub(crate) fn parse_tags(text: &str) -> Result<String, String> {
    let mut probe = Offer::new(0);
    for tag in tags(text) {
        probe.add_tag(tag).map_err(|e| e.to_string())?;
    }
    Ok(text.to_owned())
}

fn tags(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// The offer of `--resources`, `--tags` and `--memory` (`None`: the
/// machine's), `auto` counts resolved: GPUs from `gpu_dir` (default
/// [`GPU_DIR_ENV`], else `/proc/driver/nvidia/gpus`, else `nvidia-smi -L`).
/// Its cpus are set by the node (its workers).
pub(crate) fn build(
    resources: Option<&str>,
    tag_list: Option<&str>,
    memory: Option<u64>,
    gpu_dir: Option<&Path>,
) -> Result<Offer, ResourceError> {
    let mut offer = Offer::new(0);
    if let Some(list) = resources {
        let mut resolved = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((name, "auto")) => {
                    resolved.push(format!("{name}={}", auto_count(name, gpu_dir)))
                }
                _ => resolved.push(item.to_owned()),
            }
        }
        offer.add_list(&resolved.join(","))?;
    }
    for tag in tag_list.map(tags).into_iter().flatten() {
        offer.add_tag(tag)?;
    }
    offer.set_memory(Some(memory.unwrap_or_else(machine_memory)));
    Ok(offer)
}

/// What a Slurm allocation gives this node, from Slurm's environment
/// (`get` reads a variable): its cpus (`SLURM_CPUS_ON_NODE`), memory
/// (`SLURM_MEM_PER_NODE`, MiB) and GPUs (`SLURM_JOB_GPUS`, else
/// `CUDA_VISIBLE_DEVICES`: a list of ids).
pub(crate) fn slurm_offer(
    get: impl Fn(&str) -> Option<String>,
) -> (Option<usize>, Option<u64>, Option<u32>) {
    let cpus = get("SLURM_CPUS_ON_NODE").and_then(|v| v.trim().parse().ok());
    let memory = get("SLURM_MEM_PER_NODE")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|mib| mib.checked_mul(1 << 20));
    let gpus = get("SLURM_JOB_GPUS")
        .or_else(|| get("CUDA_VISIBLE_DEVICES"))
        .map(|list| list.split(',').filter(|g| !g.trim().is_empty()).count())
        .and_then(|n| u32::try_from(n).ok());
    (cpus, memory, gpus)
}

/// How many of `name` this machine has: GPUs are counted; anything else
/// `auto` is 0.
fn auto_count(name: &str, gpu_dir: Option<&Path>) -> u32 {
    if name != "gpu" {
        return 0;
    }
    let dir = gpu_dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(GPU_DIR_ENV).map(PathBuf::from));
    match dir {
        Some(dir) => count_entries(&dir),
        None => match count_entries(Path::new(NVIDIA_GPUS)) {
            0 => nvidia_smi_count(),
            n => n,
        },
    }
}

/// Entries in `dir` (0 if it cannot be read).
fn count_entries(dir: &Path) -> u32 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        u32::try_from(entries.filter_map(Result::ok).count()).unwrap_or(u32::MAX)
    })
}

/// Lines `GPU n: ...` of `nvidia-smi -L` (0 without it).
fn nvidia_smi_count() -> u32 {
    let out = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => gpu_lines(&String::from_utf8_lossy(&out.stdout)),
        _ => 0,
    }
}

/// GPUs listed in `nvidia-smi -L` output.
fn gpu_lines(text: &str) -> u32 {
    let n = text
        .lines()
        .filter(|l| l.trim_start().starts_with("GPU "))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The machine's memory (`MemTotal`), or the cgroup's limit if lower
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`); 1 GiB if neither reads.
pub(crate) fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t));
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| cgroup_limit(&t))
    });
    match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (Some(t), None) => t,
        (None, Some(l)) => l,
        (None, None) => 1 << 30,
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit file's value: `max` (or v1's huge number) is none.
fn cgroup_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < 1 << 60).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_auto_counts_the_entries_of_the_named_directory() {
        let dir = std::env::temp_dir().join(format!("pp-gpus-{}", std::process::id()));
        for i in 0..3 {
            std::fs::create_dir_all(dir.join(format!("0000:0{i}:00.0"))).unwrap();
        }
        let offer = build(
            Some("gpu=auto,licence=4"),
            Some("ssd"),
            Some(1 << 30),
            Some(&dir),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let offer = offer.unwrap();
        assert_eq!(
            offer.named(),
            [("gpu".to_owned(), 3), ("licence".to_owned(), 4)]
        );
        assert_eq!(offer.tags(), ["ssd".to_owned()]);
        assert_eq!(offer.memory(), Some(1 << 30));
    }

    #[test]
    fn no_gpus_where_the_directory_is_missing() {
        let offer = build(
            Some("gpu=auto"),
            None,
            None,
            Some(Path::new("/nonexistent/pp")),
        )
        .unwrap();
        assert!(offer.named().is_empty());
        assert!(offer.memory().is_some_and(|m| m > 0));
    }

    #[test]
    fn nvidia_smi_lines_and_cgroup_limits_are_read() {
        let smi = "GPU 0: NVIDIA A100 (UUID: GPU-1)\nGPU 1: NVIDIA A100 (UUID: GPU-2)\n";
        assert_eq!(gpu_lines(smi), 2);
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(cgroup_limit("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn a_slurm_allocation_gives_its_cpus_memory_and_gpus() {
        let env = |k: &str| match k {
            "SLURM_CPUS_ON_NODE" => Some("8".to_owned()),
            "SLURM_MEM_PER_NODE" => Some("4096".to_owned()),
            "SLURM_JOB_GPUS" => Some("2,3".to_owned()),
            _ => None,
        };
        assert_eq!(slurm_offer(env), (Some(8), Some(4 << 30), Some(2)));
        let cuda = |k: &str| (k == "CUDA_VISIBLE_DEVICES").then(|| "0".to_owned());
        assert_eq!(slurm_offer(cuda), (None, None, Some(1)));
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(parse_resources("gpu=auto,licence=4").is_ok());
        assert!(parse_resources("gpu").is_err());
        assert!(parse_resources("gpu=1.5").is_err());
        assert!(parse_tags("ssd,eu-west").is_ok());
        assert!(parse_tags("a b").is_err());
    }
}
