//! Pure: the allocation this process runs in, from the variables Slurm sets
//! in it (`SLURM_JOB_ID`, host lists, CPUs per node).

/// One allocated node: its name and its CPUs in the allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocNode {
    pub(crate) host: String,
    pub(crate) cpus: usize,
}

/// An allocation, from the variables Slurm sets in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub(crate) job_id: String,
    pub(crate) nodes: Vec<AllocNode>,
}

impl Allocation {
    /// Reads `SLURM_JOB_ID` (or `SLURM_JOBID`), `SLURM_JOB_NODELIST` (or
    /// `SLURM_NODELIST`) and `SLURM_JOB_CPUS_PER_NODE`.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let first = |names: &[&str]| names.iter().find_map(|n| var(n)).filter(|v| !v.is_empty());
        let job_id = first(&["SLURM_JOB_ID", "SLURM_JOBID"])
            .ok_or("SLURM_JOB_ID is not set (run inside salloc or an sbatch script)")?;
        if !job_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("SLURM_JOB_ID={job_id:?} is not a job id"));
        }
        let list = first(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"])
            .ok_or("SLURM_JOB_NODELIST is not set")?;
        let hosts = expand_hostlist(&list)?;
        let cpus = match first(&["SLURM_JOB_CPUS_PER_NODE"]) {
            Some(v) => expand_counts(&v)?,
            None => vec![1; hosts.len()],
        };
        if cpus.len() != hosts.len() {
            return Err(format!(
                "SLURM_JOB_CPUS_PER_NODE names {} nodes, SLURM_JOB_NODELIST {}",
                cpus.len(),
                hosts.len()
            ));
        }
        let nodes = hosts
            .into_iter()
            .zip(cpus)
            .map(|(host, cpus)| AllocNode { host, cpus })
            .collect();
        Ok(Allocation { job_id, nodes })
    }
}

/// Expands a Slurm host list (`node[01-03,7],gpu1`, `r[1-2]n[1-2]`) into
/// host names, in order.
pub(crate) fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top(list)? {
        let mut names = vec![String::new()];
        let mut rest = item;
        while !rest.is_empty() {
            let (prefix, after) = match rest.find('[') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            for n in &mut names {
                n.push_str(prefix);
            }
            if after.is_empty() {
                break;
            }
            let close = after
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in host list {list:?}"))?;
            let parts = expand_ranges(&after[1..close], list)?;
            names = names
                .iter()
                .flat_map(|n| parts.iter().map(move |p| format!("{n}{p}")))
                .collect();
            if names.len() > 100_000 {
                return Err(format!("host list {list:?} is too long"));
            }
            rest = &after[close + 1..];
        }
        hosts.extend(names.into_iter().filter(|n| !n.is_empty()));
    }
    if hosts.is_empty() {
        return Err(format!("empty host list {list:?}"));
    }
    Ok(hosts)
}

/// Splits on commas outside brackets.
fn split_top(list: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced brackets in host list {list:?}"));
        }
    }
    parts.push(&list[start..]);
    Ok(parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect())
}

/// `01-03,7` to `["01", "02", "03", "7"]`, keeping zero padding.
fn expand_ranges(ranges: &str, list: &str) -> Result<Vec<String>, String> {
    let bad = || format!("bad range [{ranges}] in host list {list:?}");
    let mut out = Vec::new();
    for r in ranges.split(',') {
        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
        let (a, b) = (
            lo.parse::<u64>().map_err(|_| bad())?,
            hi.parse::<u64>().map_err(|_| bad())?,
        );
        if b < a || b - a > 100_000 {
            return Err(bad());
        }
        let width = lo.len();
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// `SLURM_JOB_CPUS_PER_NODE` (`4(x2),2`) to one count per node (`[4, 4, 2]`).
pub(crate) fn expand_counts(v: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("bad SLURM_JOB_CPUS_PER_NODE {v:?}");
    let mut out = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        let (n, times) = match part.split_once("(x") {
            Some((n, t)) => (n, t.strip_suffix(')').ok_or_else(bad)?),
            None => (part, "1"),
        };
        let n: usize = n.parse().map_err(|_| bad())?;
        let times: usize = times.parse().map_err(|_| bad())?;
        if times > 100_000 || out.len() + times > 100_000 {
            return Err(bad());
        }
        out.extend(std::iter::repeat_n(n, times));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_expand_like_slurm() {
        assert_eq!(expand_hostlist("vm").unwrap(), ["vm"]);
        assert_eq!(
            expand_hostlist("node[01-03,7],gpu1").unwrap(),
            ["node01", "node02", "node03", "node7", "gpu1"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]n[8-9]").unwrap(),
            ["r1n8", "r1n9", "r2n8", "r2n9"]
        );
        assert_eq!(expand_hostlist("a,b").unwrap(), ["a", "b"]);
        for bad in ["", "n[1-", "n[3-1]", "n[a-b]", "n]1[", "n[1-999999999]"] {
            assert!(expand_hostlist(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_counts_expand_like_slurm() {
        assert_eq!(expand_counts("4(x2),2").unwrap(), [4, 4, 2]);
        assert_eq!(expand_counts("8").unwrap(), [8]);
        for bad in ["", "4(x", "x(x2)", "4(x999999999)"] {
            assert!(expand_counts(bad).is_err(), "{bad:?}");
        }
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_allocation_comes_from_slurms_variables() {
        let a = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "42"),
            ("SLURM_JOB_NODELIST", "n[1-3]"),
            ("SLURM_JOB_CPUS_PER_NODE", "4(x2),2"),
        ]))
        .unwrap();
        assert_eq!(a.job_id, "42");
        let got: Vec<_> = a.nodes.iter().map(|n| (n.host.as_str(), n.cpus)).collect();
        assert_eq!(got, [("n1", 4), ("n2", 4), ("n3", 2)]);
        // The old names work too.
        let a = Allocation::from_vars(vars(&[("SLURM_JOBID", "7"), ("SLURM_NODELIST", "x")]));
        assert_eq!(
            a.unwrap().nodes,
            [AllocNode {
                host: "x".into(),
                cpus: 1
            }]
        );
    }

    #[test]
    fn a_missing_or_odd_allocation_is_a_clear_error() {
        let e = Allocation::from_vars(vars(&[])).unwrap_err();
        assert!(e.contains("SLURM_JOB_ID is not set"), "{e}");
        let e = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "1;rm -rf"),
            ("SLURM_JOB_NODELIST", "a"),
        ]))
        .unwrap_err();
        assert!(e.contains("not a job id"), "{e}");
        let e = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "1"),
            ("SLURM_JOB_NODELIST", "a,b"),
            ("SLURM_JOB_CPUS_PER_NODE", "2"),
        ]))
        .unwrap_err();
        assert!(e.contains("names 1 nodes"), "{e}");
    }
}
