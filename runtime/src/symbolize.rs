//! Report-time symbolization: `dladdr` finds the object, its ELF `.symtab` (or
//! `.dynsym`) gives `function+0xoff`, its DWARF line table gives `file:line`.
//! Uses ordinary allocation; callers run it with the runtime guard set.
use crate::elf::Elf;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Sym {
    /// Basename of the object.
    pub object: String,
    /// Path of the object file.
    pub path: String,
    /// Address relative to the object's load bias (its ELF virtual address).
    pub vaddr: u64,
    /// `function+0xoff`, or `object+0xvaddr` when no symbol covers it.
    pub symbol: String,
    /// `file:line` of the call instruction, when DWARF has it.
    pub line: Option<String>,
}

struct Obj {
    funcs: Vec<(u64, u64, String)>, // value, size, name (sorted by value)
    lines: Option<crate::dwarf::Lines>,
}

static CACHE: Mutex<Option<HashMap<String, Option<Obj>>>> = Mutex::new(None);

fn load(path: &str) -> Option<Obj> {
    let data = std::fs::read(path).ok()?;
    let elf = Elf::parse(&data)?;
    let mut funcs = Vec::new();
    for want in [2u32 /* SHT_SYMTAB */, 11 /* SHT_DYNSYM */] {
        for (i, sh) in elf.sections.iter().enumerate() {
            if sh.typ != want {
                continue;
            }
            let _ = i;
            let strtab = elf.sections.get(sh.link as usize)?;
            let syms = data.get(sh.off as usize..(sh.off + sh.size) as usize)?;
            let strs = data.get(strtab.off as usize..(strtab.off + strtab.size) as usize)?;
            for s in syms.chunks_exact(24) {
                let name = u32::from_le_bytes(s[0..4].try_into().unwrap()) as usize;
                let info = s[4];
                let shndx = u16::from_le_bytes(s[6..8].try_into().unwrap());
                let value = u64::from_le_bytes(s[8..16].try_into().unwrap());
                let size = u64::from_le_bytes(s[16..24].try_into().unwrap());
                if info & 0xf != 2 || shndx == 0 || value == 0 {
                    continue; // not a defined function
                }
                let end = strs[name.min(strs.len())..].iter().position(|&c| c == 0).unwrap_or(0);
                let n = String::from_utf8_lossy(&strs[name..name + end]).into_owned();
                funcs.push((value, size, n));
            }
        }
        if !funcs.is_empty() {
            break;
        }
    }
    funcs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    funcs.dedup_by_key(|f| f.0);
    let lines = crate::dwarf::Lines::load(&data, &elf);
    Some(Obj { funcs, lines })
}

/// Demangle a C++ name with the C++ runtime's `__cxa_demangle` when the process has one.
pub fn demangle(name: &str) -> String {
    if !name.starts_with("_Z") {
        return name.to_string();
    }
    type Demangle = unsafe extern "C" fn(*const libc::c_char, *mut libc::c_char, *mut usize, *mut i32) -> *mut libc::c_char;
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__cxa_demangle".as_ptr()) };
    if f.is_null() {
        return name.to_string();
    }
    let Ok(c) = std::ffi::CString::new(name) else { return name.to_string() };
    let mut status = -1;
    let out = unsafe { core::mem::transmute::<*mut libc::c_void, Demangle>(f)(c.as_ptr(), core::ptr::null_mut(), core::ptr::null_mut(), &mut status) };
    if out.is_null() || status != 0 {
        return name.to_string();
    }
    let s = unsafe { core::ffi::CStr::from_ptr(out) }.to_string_lossy().into_owned();
    unsafe { libc::free(out.cast()) };
    s
}

fn exe_path() -> String {
    std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Symbolize one code address.
pub fn symbolize(addr: usize) -> Sym {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let mut map: *mut libc::c_void = core::ptr::null_mut();
    let ok = addr != 0
        && unsafe {
            libc::dladdr1(addr as *const _, &mut info, &mut map as *mut _ as *mut *mut libc::c_void, 2 /* RTLD_DL_LINKMAP */)
        } != 0;
    if !ok || map.is_null() {
        return Sym {
            object: "?".into(),
            path: String::new(),
            vaddr: addr as u64,
            symbol: format!("0x{addr:x}"),
            line: None,
        };
    }
    // struct link_map { ElfW(Addr) l_addr; char *l_name; ... }
    let bias = unsafe { *(map as *const usize) };
    let lname = unsafe { *(map as *const *const libc::c_char).add(1) };
    let mut path = if lname.is_null() {
        String::new()
    } else {
        unsafe { core::ffi::CStr::from_ptr(lname) }.to_string_lossy().into_owned()
    };
    if path.is_empty() {
        path = exe_path();
    }
    let object = path.rsplit('/').next().unwrap_or("?").to_string();
    let vaddr = (addr - bias) as u64;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    let obj = cache.entry(path.clone()).or_insert_with(|| load(&path));
    let mut symbol = None;
    let mut line = None;
    if let Some(o) = obj {
        let i = o.funcs.partition_point(|f| f.0 <= vaddr);
        if i > 0 {
            let (v, size, name) = &o.funcs[i - 1];
            if vaddr < v + (*size).max(1) || *size == 0 {
                symbol = Some(format!("{}+0x{:x}", demangle(name), vaddr - v));
            }
        }
        if let Some(l) = &o.lines {
            line = l.find(vaddr.saturating_sub(1));
        }
    }
    if symbol.is_none() && !info.dli_sname.is_null() {
        let n = unsafe { core::ffi::CStr::from_ptr(info.dli_sname) }.to_string_lossy();
        symbol = Some(format!("{}+0x{:x}", demangle(&n), addr - info.dli_saddr as usize));
    }
    let symbol = symbol.unwrap_or_else(|| format!("{object}+0x{vaddr:x}"));
    Sym { object, path, vaddr, symbol, line }
}
