//! A task run as N ranks: one sandboxed executor child per rank, started with the environment
//! contract of PyTorch's `torchrun` (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
//! `GROUP_RANK`, `ROLE_RANK`, `ROLE_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), so
//! `torch.distributed` (and the Hugging Face `Trainer` over it) runs data-parallel unchanged: NCCL on
//! GPUs, gloo on CPU, the rendezvous on a loopback port of the CVM.
//!
//! The rules, each in one place:
//! * every rank is a child of [`super::spawn_ranks`] in the same [`super::sandbox::Jail`] (the same
//!   task uid, seccomp filter and environment allowlist), with `1/N` of the memory limit and, on
//!   CPU, `1/N` of the threads ([`Rank::env`]);
//! * rank 0 prepares the dataset and marks it ready ([`mark_prepared`]); the other ranks wait for the
//!   mark ([`wait_prepared`]) and read what rank 0 prepared;
//! * only rank 0 receives the model key and seals; the `sealtune` module's `seal_model` saves nothing
//!   on another rank, and the parent refuses a sealed chunk from any other rank ([`RankRole`]);
//! * every rank's events reach the task: rank 0's as the task's own, the others' as log lines naming
//!   their rank;
//! * the first rank to fail or die stops all the others, and the task fails with that rank's reason;
//!   the run ends when every rank has ended, and then every process of the task uid is killed.
//!
//! Embedded Python: `sys.executable` inside a rank is the worker binary, so nothing may spawn Python
//! through it; the executor points it at the venv's interpreter (`child.py`), and the stock scripts use
//! no DataLoader worker processes (`dataloader_num_workers=0`).
use std::path::Path;
use std::time::Duration;

/// The most ranks a model may declare (`ranks` in its config).
pub const MAX_RANKS: u32 = 64;

/// torchrun's variable naming the process's global rank.
pub const RANK_ENV: &str = "RANK";
/// torchrun's variable naming the number of ranks.
pub const WORLD_SIZE_ENV: &str = "WORLD_SIZE";
/// The task-directory file rank 0 writes once the dataset is prepared.
pub const PREPARED_MARK: &str = "exec-prepared";
/// How often a waiting rank looks for [`PREPARED_MARK`].
const PREPARED_POLL: Duration = Duration::from_millis(100);

/// One rank of a task's world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    /// This process's rank, `0..world`.
    pub rank: u32,
    /// The number of ranks.
    pub world: u32,
    /// The loopback port of the rendezvous (rank 0's `torch.distributed` store).
    pub master_port: u16,
}

/// What the parent accepts from a rank's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankRole {
    /// The task's own stream: a single process, or rank 0 of a world.
    Main,
    /// Another rank: its events become log lines naming it; it may not seal.
    Other(u32),
}

impl Rank {
    /// The ranks of a world of `world` processes meeting on `master_port`.
    pub fn world(world: u32, master_port: u16) -> impl Iterator<Item = Rank> {
        (0..world).map(move |rank| Rank {
            rank,
            world,
            master_port,
        })
    }

    /// Whether this is rank 0, the one that prepares, seals and reports the deliverable.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// How the parent reads this rank's events.
    pub fn role(&self) -> RankRole {
        if self.is_main() {
            RankRole::Main
        } else {
            RankRole::Other(self.rank)
        }
    }

    /// The variables the parent sets on this rank's child (all ranks on one machine: local rank =
    /// rank). `threads` caps OpenMP's and torch's CPU threads per rank so N ranks share the CPUs
    /// instead of each taking all of them.
    pub fn env(&self, threads: u32) -> Vec<(&'static str, String)> {
        vec![
            (RANK_ENV, self.rank.to_string()),
            ("LOCAL_RANK", self.rank.to_string()),
            (WORLD_SIZE_ENV, self.world.to_string()),
            ("LOCAL_WORLD_SIZE", self.world.to_string()),
            ("GROUP_RANK", "0".into()),
            ("ROLE_RANK", self.rank.to_string()),
            ("ROLE_WORLD_SIZE", self.world.to_string()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("OMP_NUM_THREADS", threads.to_string()),
        ]
    }
}

/// CPU threads per rank for a world of `world` ranks on this machine (at least 1).
pub fn threads_per_rank(world: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = u32::try_from(cpus).unwrap_or(u32::MAX);
    (cpus / world.max(1)).max(1)
}

/// A free TCP port on the loopback interface for the rendezvous: bound, then released for rank 0's
/// store to bind a moment later (as torchrun picks its port). Never an address outside the machine.
pub fn rendezvous_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Child side: this process's rank and world size from the variables its parent set; `(0, 1)` for a
/// process started alone.
pub fn rank_of_env() -> Result<(u32, u32), String> {
    parse_rank(
        std::env::var(RANK_ENV).ok().as_deref(),
        std::env::var(WORLD_SIZE_ENV).ok().as_deref(),
    )
}

/// The rank and world size given as `RANK` and `WORLD_SIZE` (absent: a process alone).
fn parse_rank(rank: Option<&str>, world: Option<&str>) -> Result<(u32, u32), String> {
    let read = |name: &str, value: Option<&str>, default: u32| -> Result<u32, String> {
        value.map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{name}={v} is not a rank number"))
        })
    };
    let (rank, world) = (read(RANK_ENV, rank, 0)?, read(WORLD_SIZE_ENV, world, 1)?);
    if world == 0 || world > MAX_RANKS || rank >= world {
        return Err(format!(
            "{RANK_ENV}={rank} {WORLD_SIZE_ENV}={world} is not a rank of a world of 1 to {MAX_RANKS}"
        ));
    }
    Ok((rank, world))
}

/// Rank 0, once `data_path` is ready: tells the other ranks.
pub fn mark_prepared(task_dir: &Path) -> Result<(), String> {
    std::fs::write(task_dir.join(PREPARED_MARK), b"ok\n")
        .map_err(|e| format!("marking the dataset prepared: {e}"))
}

/// Another rank: waits until rank 0 prepared the dataset (the parent's timeout, or the failure of
/// rank 0, ends a wait that never finishes).
pub fn wait_prepared(task_dir: &Path) {
    while !task_dir.join(PREPARED_MARK).exists() {
        std::thread::sleep(PREPARED_POLL);
    }
}

/// Parent side, before a run: no mark of an earlier attempt may let a rank start early.
pub fn clear_prepared(task_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(task_dir.join(PREPARED_MARK)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_gets_torchruns_contract_and_a_share_of_the_threads() {
        let ranks: Vec<Rank> = Rank::world(2, 29500).collect();
        assert_eq!(ranks.len(), 2);
        let env = ranks[1].env(3);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RANK"), Some("1"));
        assert_eq!(get("LOCAL_RANK"), Some("1"));
        assert_eq!(get("WORLD_SIZE"), Some("2"));
        assert_eq!(get("LOCAL_WORLD_SIZE"), Some("2"));
        assert_eq!(get("MASTER_ADDR"), Some("127.0.0.1"));
        assert_eq!(get("MASTER_PORT"), Some("29500"));
        assert_eq!(get("OMP_NUM_THREADS"), Some("3"));
        assert!(ranks[0].is_main() && !ranks[1].is_main());
        assert_eq!(ranks[1].role(), RankRole::Other(1));
        assert!(threads_per_rank(1) >= threads_per_rank(MAX_RANKS));
        assert!(threads_per_rank(MAX_RANKS) >= 1);
    }

    #[test]
    fn a_rank_outside_its_world_is_refused() {
        assert_eq!(parse_rank(None, None), Ok((0, 1)));
        assert_eq!(parse_rank(Some("1"), Some("2")), Ok((1, 2)));
        for (rank, world) in [("2", "2"), ("0", "0"), ("0", "65"), ("x", "2"), ("-1", "2")] {
            let e = parse_rank(Some(rank), Some(world)).unwrap_err();
            assert!(e.contains("RANK="), "{rank}/{world}: {e}");
        }
    }

    #[test]
    fn the_rendezvous_port_is_a_real_free_loopback_port() {
        let port = rendezvous_port().unwrap();
        assert!(port > 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
