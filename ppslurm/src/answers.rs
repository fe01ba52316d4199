//! Pure: what Slurm's commands answer (`sbatch --parsable`, `squeue`,
//! `scontrol show config`).

use std::time::Duration;

/// The job id in `sbatch --parsable`'s answer (`1234` or `1234;cluster`).
pub(crate) fn parse_sbatch(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_owned())
}

/// The ids of the steps named `name` in `squeue -h -s -o "%i %j"`'s answer.
pub(crate) fn parse_steps(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(id, n)| n.trim() == name && id.contains('.'))
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Whether `squeue -h -j J -o %T`'s answer says the job has ended: it is
/// no longer listed, or listed in a final state.
pub(crate) fn job_ended(states: &str) -> Option<String> {
    const FINAL: [&str; 9] = [
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "PREEMPTED",
    ];
    let state = states.lines().next().unwrap_or("").trim();
    if state.is_empty() {
        Some("it left the queue".to_owned())
    } else {
        FINAL.contains(&state).then(|| state.to_owned())
    }
}

/// `KillWait` from `scontrol show config` (`KillWait = 30 sec`).
pub(crate) fn parse_kill_wait(config: &str) -> Option<Duration> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "KillWait" {
            return None;
        }
        let secs = value.split_whitespace().next()?.parse::<u64>().ok()?;
        Some(Duration::from_secs(secs))
    })
}
/// Whether a failed command's error output says Slurm does not know the
/// job id (`slurm_load_jobs error: Invalid job id specified`): a job that
/// ended long enough ago has left Slurm's memory.
pub(crate) fn unknown_job(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_and_scontrol_answers_parse() {
        assert_eq!(parse_sbatch("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_sbatch("77;cluster\n").as_deref(), Some("77"));
        assert_eq!(parse_sbatch("Submitted batch job 5"), None);
        assert_eq!(parse_sbatch(""), None);
        let conf = "JobCompType = none\nKillWait                = 30 sec\nKillOnBadExit = 0\n";
        assert_eq!(parse_kill_wait(conf), Some(Duration::from_secs(30)));
        assert_eq!(parse_kill_wait("nothing here"), None);
    }

    #[test]
    fn a_job_has_ended_when_it_left_the_queue_or_is_final() {
        assert_eq!(job_ended("").as_deref(), Some("it left the queue"));
        assert_eq!(job_ended("TIMEOUT\n").as_deref(), Some("TIMEOUT"));
        assert_eq!(job_ended("RUNNING\n"), None);
        assert_eq!(job_ended("PENDING"), None);
        // Preempted and requeued: it comes back.
        assert_eq!(job_ended("REQUEUED"), None);
    }

    #[test]
    fn a_forgotten_job_id_is_told_apart_from_other_failures() {
        assert!(unknown_job(
            "slurm_load_jobs error: Invalid job id specified\n"
        ));
        assert!(!unknown_job(
            "slurm_load_jobs error: Unable to contact slurm controller"
        ));
        assert!(!unknown_job(""));
    }

    #[test]
    fn our_steps_are_found_by_name() {
        let out = "42.0 ppserver-ab12\n42.1 ppserver-ab12\n42.2 ppserver-ffff\n42.batch batch\n42 ppserver-ab12\n";
        assert_eq!(parse_steps(out, "ppserver-ab12"), ["42.0", "42.1"]);
        assert!(parse_steps("", "ppserver-ab12").is_empty());
    }
}
