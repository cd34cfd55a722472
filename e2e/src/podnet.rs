//! Loopback pod addresses.
//!
//! Every pod gets its own address `127.<block>.<node>.<n>`; Linux routes all of 127.0.0.0/8 to the
//! loopback interface, so pods can all listen on the same port and no pod traffic leaves the machine.
//! Each node agent claims a whole `127.<block>.0.0/16` block with a lock file under the system temp
//! directory (named after the block, holding the claimer's PID), so agents of clusters running side by
//! side never hand out the same address. A block whose claimer is no longer alive is reclaimed.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Errors claiming an address block.
#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    /// Every block from 127.10 to 127.250 is claimed by a live process.
    #[error("no free 127.x.0.0/16 pod address block in {0} (every lock is held by a live process)")]
    Exhausted(PathBuf),
    /// The lock directory could not be used.
    #[error("pod address lock directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A claimed `127.<block>.0.0/16` and the addresses handed out from it.
#[derive(Debug)]
pub struct PodNet {
    block: u8,
    lock: PathBuf,
    in_use: BTreeSet<Ipv4Addr>,
}

impl PodNet {
    /// Claims a free block.
    pub fn claim() -> Result<Self, PodNetError> {
        Self::claim_preferring(None)
    }

    /// Claims `preferred` if it is free (an agent restarting on the same directory takes its old block
    /// back, so its running pods keep their addresses), else any free block.
    pub fn claim_preferring(preferred: Option<u8>) -> Result<Self, PodNetError> {
        let dir = std::env::temp_dir().join("anshin-podnet");
        std::fs::create_dir_all(&dir).map_err(|source| PodNetError::Io {
            path: dir.clone(),
            source,
        })?;
        sweep_stale(&dir);
        let start = preferred
            .filter(|b| (10..=250).contains(b))
            .unwrap_or(10 + (std::process::id() % 240) as u8);
        for i in 0..241u16 {
            let block = 10 + ((u16::from(start - 10) + i) % 241) as u8;
            let lock = dir.join(format!("127.{block}.lock"));
            if try_lock(&lock) {
                return Ok(Self {
                    block,
                    lock,
                    in_use: BTreeSet::new(),
                });
            }
        }
        Err(PodNetError::Exhausted(dir))
    }

    /// The claimed block's second octet.
    pub fn block(&self) -> u8 {
        self.block
    }

    /// A free address for a pod on node number `node` (0-based) of this agent.
    pub fn allocate(&mut self, node: u8) -> Option<Ipv4Addr> {
        let ip = (2..=254u8)
            .map(|n| Ipv4Addr::new(127, self.block, node, n))
            .find(|ip| !self.in_use.contains(ip))?;
        self.in_use.insert(ip);
        Some(ip)
    }

    /// Marks `ip` as used (a pod adopted after an agent restart keeps its address), if it is ours.
    pub fn adopt(&mut self, ip: Ipv4Addr) -> bool {
        let ours = ip.octets()[0] == 127 && ip.octets()[1] == self.block;
        ours && self.in_use.insert(ip)
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

fn try_lock(lock: &PathBuf) -> bool {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
        {
            Ok(mut f) => return writeln!(f, "{}", std::process::id()).is_ok(),
            Err(_) if holder_is_dead(lock) => {
                let _ = std::fs::remove_file(lock);
            }
            Err(_) => return false,
        }
    }
    false
}

/// Removes lock files of processes that are gone (a test binary exits without dropping its PodNet).
fn sweep_stale(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock") && holder_is_dead(&path) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn holder_is_dead(lock: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return true;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Gone, or a zombie: either way it no longer uses the block.
    stat.is_empty()
        || stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_get_different_blocks_and_distinct_addresses() {
        let mut a = PodNet::claim().unwrap();
        let b = PodNet::claim().unwrap();
        assert_ne!(a.block(), b.block());
        let (x, y) = (a.allocate(0).unwrap(), a.allocate(0).unwrap());
        assert_ne!(x, y);
        a.release(x);
        assert_eq!(a.allocate(0), Some(x));
        assert!(!a.adopt(Ipv4Addr::new(127, b.block(), 0, 9)));
    }

    #[test]
    fn a_released_block_is_claimed_again_when_preferred() {
        // Far from where plain claims of this process start, so concurrent tests do not take it.
        let far = 10 + ((std::process::id() + 120) % 240) as u8;
        let first = PodNet::claim_preferring(Some(far)).unwrap();
        let block = first.block();
        drop(first);
        let again = PodNet::claim_preferring(Some(block)).unwrap();
        assert_eq!(again.block(), block);
    }
}
