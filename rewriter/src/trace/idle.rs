//! Cost control for what no longer teaches anything: once `--idle-unwatch` allocator
//! hits in a row brought no news (no new candidate, no verdict changed, nothing
//! settled, in the images the process maps), its address space is disarmed — the
//! allocators' breakpoints and the watched functions' entries are removed (a watched
//! call learns nothing without the allocator events it is judged by) — until the loader
//! maps new code.
//!
//! The count is kept per program (the executable's image), not per process: a shell
//! script runs the same program many times, and each new process would otherwise pay
//! the whole quiet spell again. A new process of a program already quiet gets a short
//! grace (an eighth of the limit): news in it starts the count over, silence disarms it.

use super::images::Mapped;
use super::learn::ALLOCATORS;
use super::sys::Pid;
use super::Tracer;

/// What one program's processes have learned lately.
#[derive(Default)]
pub struct Quiet {
    /// The news total of the images the last counted process mapped.
    news_seen: u64,
    /// Allocator hits since it changed.
    hits: u64,
}

/// Whose quiet spell a space counts in: its program's, else (executable unknown) its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuietKey {
    Exe(usize),
    Space(u64),
}

impl Tracer {
    fn quiet_key(&self, tid: Pid) -> Option<QuietKey> {
        let sid = self.st.space_of(tid)?;
        Some(self.st.spaces.get(&sid)?.exe.map_or(QuietKey::Space(sid), QuietKey::Exe))
    }

    /// Watch (or stop watching) the allocators of every system image mapped in `tid`'s
    /// space and the entries of the watched functions of every other image.
    pub fn arm(&mut self, tid: Pid, maps: &[Mapped], on: bool) {
        let Some(sid) = self.st.space_of(tid) else { return };
        match self.st.spaces.get_mut(&sid) {
            Some(s) => s.disarmed = !on,
            None => return,
        }
        if on {
            if let Some(k) = self.quiet_key(tid) {
                self.quiet.remove(&k);
            }
        }
        let learns = self.st.spaces.get(&sid).is_some_and(|s| s.learns);
        for m in maps {
            let in_map = |a: u64| a >= m.lo && a < m.hi;
            if m.file.system {
                if learns || !on {
                    self.watch_allocators(tid, std::slice::from_ref(m), on);
                }
                continue;
            }
            let ids = self.learn.by_file.get(&m.file.id).cloned().unwrap_or_default();
            for id in ids {
                let at = self.learn.fns[id].addr.wrapping_add(m.bias);
                if !in_map(at) {
                    continue;
                }
                if on && self.learn.fns[id].watched() {
                    self.bp_add(tid, at, |b| b.func = Some(id));
                } else if !on {
                    self.bp_drop(tid, at, |b| b.func = None);
                }
            }
        }
    }

    /// Watch (or stop watching) the allocators of the system images `maps`.
    pub fn watch_allocators(&mut self, tid: Pid, maps: &[Mapped], on: bool) {
        for m in maps {
            let in_map = |a: u64| a >= m.lo && a < m.hi;
            for (i, al) in ALLOCATORS.iter().enumerate() {
                let Some(a) = m.file.symbol(al).map(|a| a.wrapping_add(m.bias)).filter(|&a| in_map(a)) else { continue };
                if on {
                    self.bp_add(tid, a, |b| b.alloc = Some(i as u8));
                } else {
                    self.bp_drop(tid, a, |b| b.alloc = None);
                }
            }
        }
    }

    /// A process just exec'd: if its program has been quiet for the whole limit, leave
    /// it only the grace before it is disarmed too.
    pub fn quiet_exec(&mut self, tid: Pid) {
        let limit = self.opts.idle_unwatch;
        let Some(k) = self.quiet_key(tid) else { return };
        if let Some(q) = self.quiet.get_mut(&k) {
            if q.hits >= limit {
                q.hits = limit - (limit / 8).max(1);
            }
        }
    }

    /// Count an allocator hit towards "taught nothing new": since the last news in the
    /// images `tid`'s process maps. Past `--idle-unwatch` such hits in its program, its
    /// space is disarmed; past `--detach-after` (per process) it is let go.
    pub fn count_hit(&mut self, tid: Pid, learning: bool) {
        if !learning {
            self.stats.idle_allocator_hits += 1;
        }
        let Some(sid) = self.st.space_of(tid) else { return };
        let Some(s) = self.st.spaces.get(&sid) else { return };
        let news: u64 = s.maps.iter().filter(|m| !m.file.system).map(|m| m.file.news.get()).sum();
        let disarmed = s.disarmed;
        let Some(k) = self.quiet_key(tid) else { return };
        let q = self.quiet.entry(k).or_default();
        if q.news_seen != news {
            q.news_seen = news;
            q.hits = 0;
        } else {
            q.hits += 1;
        }
        if q.hits >= self.opts.idle_unwatch && !disarmed {
            let maps = self.st.spaces.get(&sid).map(|s| s.maps.clone()).unwrap_or_default();
            self.arm(tid, &maps, false);
        }
        let Some(limit) = self.opts.detach_after else { return };
        let Some(tgid) = self.st.threads.get(&tid).map(|t| t.tgid) else { return };
        let Some(p) = self.st.procs.get_mut(&tgid) else { return };
        if p.news_seen != news {
            p.news_seen = news;
            p.idle_hits = 0;
        } else {
            p.idle_hits += 1;
            if p.idle_hits == limit {
                self.detach_soon.push(tgid);
            }
        }
    }
}
