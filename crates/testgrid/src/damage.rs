//! Damage done on purpose: share files on disk
//! (`NODEDIR/storage/shares/<SI[:2]>/<SI>/<shnum>`) listed, deleted down to
//! a count or to fewer than k, or flipped; storage nodes stopped,
//! restarted and moved behind another advertised location.

use crate::cfg::write_atomically;
use crate::node::stop_nodes;
use crate::start::START_TIMEOUT;
use crate::Grid;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use steward_format::tahoe_cfg;

/// One share file on one storage node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareFile {
    /// Index of the storage node holding it.
    pub node: usize,
    /// Share number.
    pub shnum: u32,
    /// `NODEDIR/storage/shares/<si[:2]>/<si>/<shnum>`.
    pub path: PathBuf,
}

impl Grid {
    /// All share files of storage index `si` on all storage nodes (running or
    /// not), ordered by node then share number.
    pub fn shares(&self, si: &str) -> Vec<ShareFile> {
        let mut out = Vec::new();
        if si.len() < 2 || si.contains('/') {
            return out;
        }
        for (i, n) in self.storage.iter().enumerate() {
            let dir = n.dir.join("storage").join("shares").join(&si[..2]).join(si);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if let Some(shnum) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                    out.push(ShareFile {
                        node: i,
                        shnum,
                        path: e.path(),
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// Deletes `count` share files of `si` (or all there are), returning how
    /// many were deleted. Deterministic: each time the node holding the most
    /// shares of `si` loses its highest-numbered one (ties: higher node
    /// index first), so the shares left stay on distinct nodes where
    /// possible.
    pub fn drop_shares(&self, si: &str, count: usize) -> Result<usize> {
        let mut shares = self.shares(si);
        let mut dropped = 0;
        while dropped < count && !shares.is_empty() {
            let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
            for s in &shares {
                *per_node.entry(s.node).or_default() += 1;
            }
            let (&node, _) = per_node
                .iter()
                .max_by_key(|(&n, &c)| (c, n))
                .expect("non-empty");
            let idx = shares
                .iter()
                .enumerate()
                .filter(|(_, s)| s.node == node)
                .max_by_key(|(_, s)| s.shnum)
                .map(|(i, _)| i)
                .expect("node has a share");
            let s = shares.remove(idx);
            remove_share(&s.path)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Leaves exactly `keep` distinct share numbers of `si`, one file each:
    /// the lowest numbers, each kept on a node not yet keeping one where
    /// possible (numbers with fewer copies choose first); every other share
    /// file is deleted. Returns how many
    /// files were deleted.
    ///
    /// Counting share *numbers*, not files, matters after a repair: Tahoe's
    /// repairer may place copies of one share number on several servers
    /// (seen in 1.20: `sh0` on three servers), so "keep three files" could
    /// keep one number and leave the object unrecoverable. Fails, deleting
    /// nothing, if `si` has fewer than `keep` distinct share numbers.
    pub fn keep_share_numbers(&self, si: &str, keep: usize) -> Result<usize> {
        let mut by_num: BTreeMap<u32, Vec<ShareFile>> = BTreeMap::new();
        for s in self.shares(si) {
            by_num.entry(s.shnum).or_default().push(s);
        }
        if by_num.len() < keep {
            bail!(
                "{si} has {} distinct share numbers, fewer than the {keep} to keep",
                by_num.len()
            );
        }
        // Which copy of each kept number stays: numbers with fewer copies
        // choose first, so a number found on several nodes does not take
        // the only node of another.
        let mut kept_nums: Vec<u32> = by_num.keys().take(keep).copied().collect();
        kept_nums.sort_by_key(|n| by_num[n].len());
        let mut nodes_keeping = BTreeSet::new();
        let mut kept: BTreeMap<u32, usize> = BTreeMap::new();
        for n in kept_nums {
            let copies = &by_num[&n];
            let k = copies
                .iter()
                .position(|c| !nodes_keeping.contains(&c.node))
                .unwrap_or(0);
            nodes_keeping.insert(copies[k].node);
            kept.insert(n, k);
        }
        let mut deleted = 0;
        for (n, copies) in &by_num {
            for (j, c) in copies.iter().enumerate() {
                if kept.get(n) != Some(&j) {
                    remove_share(&c.path)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Leaves fewer than k (`needed`) distinct share numbers of `si`: keeps
    /// the lowest `needed - 1` share numbers, deletes every other share file.
    pub fn make_unrecoverable(&self, si: &str) -> Result<()> {
        let shares = self.shares(si);
        if shares.is_empty() {
            bail!("no shares of {si} on this grid");
        }
        let keep: BTreeSet<u32> = shares
            .iter()
            .map(|s| s.shnum)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(self.needed.saturating_sub(1) as usize)
            .collect();
        for s in shares.iter().filter(|s| !keep.contains(&s.shnum)) {
            remove_share(&s.path)?;
        }
        Ok(())
    }

    /// Flips 16 bytes in the middle of the first share of `si` (lowest
    /// node, then share number). On an immutable file of more than a few
    /// hundred bytes this hits block data: a plain check still counts the
    /// share good, only `verify=true` reports it corrupt.
    pub fn corrupt_share(&self, si: &str) -> Result<ShareFile> {
        let s = self
            .shares(si)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no shares of {si} on this grid"))?;
        let mut f = File::options()
            .read(true)
            .write(true)
            .open(&s.path)
            .with_context(|| format!("opening {}", s.path.display()))?;
        let len = f.metadata()?.len();
        let n = len.min(16);
        let at = (len / 2).saturating_sub(n / 2);
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut buf)?;
        for b in &mut buf {
            *b ^= 0xff;
        }
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        Ok(s)
    }

    /// Stops storage node `i` and waits until every gateway sees it
    /// disconnected. Its shares stay on disk.
    pub fn stop_storage_node(&self, i: usize) -> Result<()> {
        let n = self
            .storage
            .get(i)
            .ok_or_else(|| anyhow!("no storage node {i}"))?;
        stop_nodes(&[n]);
        self.wait_connected(START_TIMEOUT)
    }

    /// (Re)starts storage node `i` on the same ports and waits until every
    /// gateway sees it connected.
    pub fn start_storage_node(&self, i: usize) -> Result<()> {
        let n = self
            .storage
            .get(i)
            .ok_or_else(|| anyhow!("no storage node {i}"))?;
        n.start(&self.tahoe)?;
        self.wait_connected(START_TIMEOUT)
    }

    /// Restarts storage node `i` advertising `location` (its `tub.location`,
    /// e.g. `tcp:127.0.0.1:<proxy port>` to put a proxy in front of it),
    /// and waits until every gateway sees it connected again. Its listening
    /// port stays the same.
    pub fn relocate_storage_node(&self, i: usize, location: &str) -> Result<()> {
        self.stop_storage_node(i)?;
        let path = self.storage_dir(i).join("tahoe.cfg");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let new = tahoe_cfg::set(&text, "node", "tub.location", location)
            .ok_or_else(|| anyhow!("{}: no [node] tub.location", path.display()))?;
        write_atomically(&path, &new)?;
        self.start_storage_node(i)
    }
}

fn remove_share(path: &Path) -> Result<()> {
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    // Tahoe removes empty bucket directories itself; leave none behind.
    if let Some(parent) = path.parent() {
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}
