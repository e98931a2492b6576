//! Which allocation function a call site reaches: an import by its name (seed
//! table, `--alloc-fns`, a dependency's summary), a local function by its
//! classification, or a call through a pointer whose candidates all agree.
//! Kept apart from the rules because the rules and `calls.rs` both ask it.

use super::{arg, arg_name, caller_key, Callee, Classifier};
use crate::flow::interp::{gpr, ARG_REGS};
use crate::flow::{CallSite, Target};
use crate::seeds::{self, Spec};

impl Classifier<'_> {
    /// Bit k: some function call site `cs` of function `f` may reach reads its
    /// integer argument k (all six when the callee is unknown).
    pub(crate) fn args_used(&self, f: usize, cs: &CallSite) -> u8 {
        let funcs: Vec<usize> = match &cs.target {
            Target::Local(a) => self.bin.by_addr.get(a).copied().into_iter().collect(),
            Target::Import(_) | Target::PtrUnknown => Vec::new(),
            t => {
                let key = (t.clone(), caller_key(t, self.bin.funcs[f].addr));
                let cands = self.cands.get(&key).map(|c| c.0.as_slice()).unwrap_or(&[]);
                cands.iter().filter_map(|a| self.bin.by_addr.get(a).copied()).collect()
            }
        };
        if funcs.is_empty() {
            return 0x3f;
        }
        funcs.iter().fold(0, |m, &g| m | self.args_read(g))
    }

    pub(crate) fn resolve(&self, cs: &CallSite, caller: usize) -> Option<Callee> {
        match &cs.target {
            Target::Import(n) => {
                let base = n.split('@').next().unwrap_or(n);
                if let Some(spec) = self.user.get(base).copied().or_else(|| seeds::import(base)) {
                    return Some(Callee { spec, name: base.to_string(), names: base.to_string() });
                }
                // A shared object calls its own exported functions through the PLT.
                if let Some(&f) = self.bin.by_name.get(base) {
                    let spec = self.found.get(&f)?.spec;
                    return Some(Callee { spec, name: base.to_string(), names: base.to_string() });
                }
                // A dependency's exported allocation function (`--with`).
                let spec = *self.deps.get(base)?;
                Some(Callee { spec, name: base.to_string(), names: base.to_string() })
            }
            Target::Local(a) => {
                let f = *self.bin.by_addr.get(a)?;
                if f == caller {
                    return None;
                }
                let spec = self.found.get(&f)?.spec;
                let name = self.bin.funcs[f].name.clone();
                Some(Callee { spec, names: name.clone(), name })
            }
            t => {
                let caller_addr = caller_key(t, self.bin.funcs[caller].addr);
                let (spec, names) = self.agreed_for(t, caller_addr, self.bin.funcs[caller].addr)?;
                // Through an untyped member offset, demand that the arguments line
                // up with the candidates' roles; typed and parameter targets are precise.
                let precise = self.cands.get(&(t.clone(), caller_addr)).is_some_and(|c| c.1);
                let lined_up = [spec.size, spec.ptr, spec.count].iter().flatten().all(|&k| arg(cs, k).params != 0);
                if !precise && (!lined_up || (spec.size.is_none() && spec.ptr.is_none())) {
                    return None;
                }
                let how = match t {
                    Target::PtrGlobal(g) => format!("pointer at {g:#x}"),
                    Target::PtrMember(o, _) => format!("pointer member +{o:#x}"),
                    Target::PtrParam(k) => format!("pointer {}", arg_name(*k)),
                    _ => "function pointer".to_string(),
                };
                Some(Callee { spec, name: format!("{names} via {how}"), names })
            }
        }
    }

    /// The allocator every candidate of pointer target `t` agrees on; none when
    /// any candidate is not a classified allocator with the same roles.
    /// The function making the call is left out: a wrapper installed in the same
    /// slot type as what it wraps (SQLite's memtrace) must not block itself.
    fn agreed_for(&self, t: &Target, caller: u64, caller_entry: u64) -> Option<(Spec, String)> {
        let key = (t.clone(), caller);
        let cands = self.cands.get(&key).map(|c| c.0.as_slice()).unwrap_or(&[]);
        let cacheable = !cands.contains(&caller_entry);
        if cacheable {
            if let Some(a) = self.agreed.borrow().get(&key) {
                return a.clone();
            }
        }
        // A candidate that is no allocator blocks the agreement, unless the offset
        // is all that links it to this call (no type, not precise) and it reads
        // none of the arguments from the allocators' highest role position on:
        // then it belongs to another pointer type sharing the offset (stripped
        // fnptr: one-argument `xRoundup` functions at +32, like the three-argument
        // `strm->zalloc`). `reach`: one past the highest argument any such
        // candidate reads.
        let precise = self.cands.get(&key).is_some_and(|c| c.1);
        let mut reach: Option<u8> = None;
        let mut agreed: Option<(Spec, Vec<String>)> = None;
        let mut conflict = false;
        for &fa in cands.iter().filter(|&&a| a != caller_entry) {
            let Some(&f) = self.bin.by_addr.get(&fa) else { continue };
            let Some(found) = self.found.get(&f) else {
                let r = 8 - self.args_read(f).leading_zeros() as u8;
                // No allocator role lies beyond argument 5: such a reader always
                // blocks; so does any in a long list (an offset shared that widely
                // is settled by its first blocker, as the scan is per call site).
                if precise || r >= 6 || cands.len() > 64 {
                    conflict = true;
                    break;
                }
                reach = Some(reach.unwrap_or(0).max(r));
                continue;
            };
            let name = self.bin.funcs[f].name.clone();
            match &mut agreed {
                None => agreed = Some((found.spec, vec![name])),
                Some((s, names)) if same_roles(s, &found.spec) => names.push(name),
                Some(_) => {
                    conflict = true;
                    break;
                }
            }
        }
        if let (Some(r), Some((spec, _)), false) = (reach, &agreed, conflict) {
            let top = [spec.size, spec.count, spec.ptr].iter().flatten().copied().max().unwrap_or(0);
            conflict |= top == 0 || r > top;
        }
        let result = if conflict { None } else { agreed.map(|(s, n)| (s, n.join("|"))) };
        if self.debug_ptrs {
            let names: Vec<String> = self
                .cands
                .get(&key)
                .map(|c| c.0.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|a| {
                    let f = self.bin.by_addr.get(a).map(|&i| self.bin.funcs[i].name.as_str()).unwrap_or("?");
                    let c = self.bin.by_addr.get(a).and_then(|i| self.found.get(i)).map(|x| format!("{:?}", x.spec.kind)).unwrap_or("-".into());
                    format!("{f}:{c}")
                })
                .collect();
            eprintln!("pointer target {t:?} (caller {caller:#x}): candidates [{}] → {:?}", names.join(", "), result.as_ref().map(|r| &r.1));
        }
        if cacheable {
            self.agreed.borrow_mut().insert(key, result.clone());
        }
        result
    }

    /// Bit k: function `f` reads integer argument k before writing it, scanning
    /// its instructions in address order (a cheap stand-in for its data flow,
    /// used only for candidates of untyped pointer calls; it errs towards "read").
    pub(crate) fn args_read(&self, f: usize) -> u8 {
        use iced_x86::OpAccess as A;
        if let Some(&m) = self.args_read.borrow().get(&f) {
            return m;
        }
        let func = &self.bin.funcs[f];
        let mut info = iced_x86::InstructionInfoFactory::new();
        let (mut read, mut killed) = (0u8, 0u8);
        let arg = |u: &iced_x86::UsedRegister| ARG_REGS.iter().position(|&r| Some(r) == gpr(u.register()));
        for ins in crate::flow::interp::decode(self.bin, func.addr, func.size) {
            let used = info.info(&ins).used_registers();
            // Reads first: `mov edi, [rdi+8]` reads the argument it then overwrites.
            for (k, u) in used.iter().filter_map(|u| Some((arg(u)?, u))) {
                if killed & (1 << k) == 0 && matches!(u.access(), A::Read | A::ReadWrite | A::CondRead | A::ReadCondWrite) {
                    read |= 1 << k;
                }
            }
            for (k, u) in used.iter().filter_map(|u| Some((arg(u)?, u))) {
                if u.access() == A::Write && u.register().size() >= 4 {
                    killed |= 1 << k;
                }
            }
        }
        self.args_read.borrow_mut().insert(f, read);
        read
    }

}

fn same_roles(a: &Spec, b: &Spec) -> bool {
    a.kind == b.kind && a.size == b.size && a.count == b.count && a.ptr == b.ptr && a.out == b.out
}
