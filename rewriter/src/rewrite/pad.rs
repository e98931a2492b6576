//! Launch pads: decode the first instructions of a function (≥ 5 bytes, after
//! `endbr64`), use alignment padding for functions shorter than that, and relocate the
//! displaced instructions with iced-x86's `BlockEncoder`.

use super::elf::InputElf;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Formatter, Instruction,
    InstructionBlock, IntelFormatter, Mnemonic,
};

pub const JMP_LEN: u64 = 5;
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// The bytes at a function entry that the `jmp` to the trampoline overwrites.
#[derive(Clone, Debug)]
pub struct Pad {
    /// Function entry (the `endbr64`, when present, stays in place).
    pub entry: u64,
    /// First overwritten byte.
    pub start: u64,
    /// Overwritten bytes (≥ 5): the displaced instructions plus any padding used.
    pub len: u64,
    /// The displaced instructions, with their original addresses.
    pub instrs: Vec<Instruction>,
    /// Where the relocated pad continues in the original function; `None` when the pad
    /// ends in `ret`/`jmp` and never falls through.
    pub resume: Option<u64>,
    /// Alignment padding after a short function that the `jmp` also covers.
    pub padding: u64,
}

impl Pad {
    /// No launch pad (call-site mode).
    pub fn none(entry: u64) -> Self {
        Pad { entry, start: entry, len: 0, instrs: Vec::new(), resume: None, padding: 0 }
    }
}

fn terminates(i: &Instruction) -> bool {
    matches!(
        i.flow_control(),
        FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Exception
    ) || i.mnemonic() == Mnemonic::Int3
}

/// Decode the launch pad of the function at `entry` whose code ends at `fn_end`;
/// `next_start` is the first other symbol or FDE start after the entry (the limit for
/// borrowing alignment padding).
pub fn decode(elf: &InputElf, entry: u64, fn_end: u64, next_start: u64) -> Result<Pad, String> {
    let limit = next_start.max(fn_end);
    let avail = (limit - entry).min(64);
    let code = (1..=avail)
        .rev()
        .find_map(|n| elf.bytes_at(entry, n))
        .ok_or_else(|| "entry is not backed by file bytes".to_string())?;
    let mut start = entry;
    if code.starts_with(&ENDBR64) {
        start += 4;
    }
    let body = &code[(start - entry) as usize..];
    let mut dec = Decoder::with_ip(64, body, start, DecoderOptions::NONE);
    let mut instrs = Vec::new();
    let mut ip = start;
    let mut ended = false;
    while ip - start < JMP_LEN && ip < fn_end && !ended {
        if !dec.can_decode() {
            return Err(format!("cannot decode the instruction at {ip:#x}"));
        }
        let i = dec.decode();
        if i.is_invalid() {
            return Err(format!("cannot decode the instruction at {ip:#x}"));
        }
        if ip + i.len() as u64 > fn_end {
            return Err(format!("instruction at {ip:#x} runs past the function end {fn_end:#x}"));
        }
        if matches!(i.mnemonic(), Mnemonic::Xbegin) {
            return Err(format!("`{}` at {ip:#x} cannot be relocated", fmt(&i)));
        }
        ended = terminates(&i);
        ip += i.len() as u64;
        instrs.push(i);
    }
    let covered = ip - start;
    if covered >= JMP_LEN {
        return Ok(Pad { entry, start, len: covered, instrs, resume: (!ended).then_some(ip), padding: 0 });
    }
    if !ended {
        return Err(format!("function is only {} bytes long and does not end in ret/jmp", fn_end - entry));
    }
    // A short function: the jmp may extend over the alignment padding after it.
    let need_end = start + JMP_LEN;
    if need_end > next_start {
        return Err(format!(
            "function is {} bytes long and the next function starts {} bytes after the pad; no room for a 5-byte jmp",
            fn_end - entry,
            next_start - start
        ));
    }
    let mut p = ip.max(fn_end);
    while p < need_end {
        let rest = &code[(p - entry) as usize..];
        if rest.first() == Some(&0) {
            p += 1;
            continue;
        }
        let mut d = Decoder::with_ip(64, rest, p, DecoderOptions::NONE);
        let i = d.decode();
        if i.is_invalid() || !matches!(i.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
            return Err(format!(
                "function is {} bytes long and the bytes after it at {p:#x} are not alignment padding",
                fn_end - entry
            ));
        }
        p += i.len() as u64;
    }
    Ok(Pad { entry, start, len: JMP_LEN, instrs, resume: None, padding: JMP_LEN - covered })
}

/// The displaced instructions as text, e.g. `push rbp; mov rbp,rsp`.
pub fn text(pad: &Pad) -> String {
    pad.instrs.iter().map(fmt).collect::<Vec<_>>().join("; ")
}

pub fn fmt(i: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    f.options_mut().set_hex_prefix("0x");
    f.options_mut().set_hex_suffix("");
    f.options_mut().set_space_after_operand_separator(false);
    f.options_mut().set_branch_leading_zeros(false);
    let mut s = String::new();
    f.format(i, &mut s);
    s
}

/// The relocated pad encoded at `at`: code bytes and, per displaced instruction (plus
/// the trailing jmp back when present), its offset in the code (`None` if rewritten
/// into several instructions).
pub struct Relocated {
    pub code: Vec<u8>,
    pub offsets: Vec<Option<u32>>,
    /// Original address each offset corresponds to (the jmp back maps to `resume`).
    pub origins: Vec<u64>,
}

/// `redirect`: `(address of a displaced call/jmp, new target)`: the per-site decisions
/// (`callsites`) for calls that move with the pad; a `call/jmp [rip+slot]` among them
/// becomes a `call/jmp rel32`.
pub fn relocate(pad: &Pad, at: u64, redirect: &[(u64, u64)]) -> Result<Relocated, String> {
    let mut instrs = pad.instrs.clone();
    for i in instrs.iter_mut() {
        let Some(&(_, to)) = redirect.iter().find(|r| r.0 == i.ip()) else { continue };
        if i.op0_kind() == iced_x86::OpKind::NearBranch64 {
            i.set_near_branch64(to);
        } else if matches!(i.code(), Code::Call_rm64 | Code::Jmp_rm64) {
            let code = if i.code() == Code::Call_rm64 { Code::Call_rel32_64 } else { Code::Jmp_rel32_64 };
            let mut b = Instruction::with_branch(code, to).map_err(|e| e.to_string())?;
            b.set_ip(i.ip());
            b.set_len(i.len());
            *i = b;
        }
    }
    let mut origins: Vec<u64> = instrs.iter().map(|i| i.ip()).collect();
    if let Some(resume) = pad.resume {
        let mut j = Instruction::with_branch(Code::Jmp_rel32_64, resume).map_err(|e| e.to_string())?;
        // An IP no branch targets: with `resume` the encoder would link the jmp to itself.
        j.set_ip(u64::MAX - 15);
        instrs.push(j);
        origins.push(resume);
    }
    let r = BlockEncoder::encode(64, InstructionBlock::new(&instrs, at), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .map_err(|e| format!("cannot relocate the pad to {at:#x}: {e}"))?;
    let offsets = r.new_instruction_offsets.iter().map(|&o| (o != u32::MAX).then_some(o)).collect();
    Ok(Relocated { code: r.code_buffer, offsets, origins })
}

/// The 5-byte `jmp rel32` written at the pad start, followed by `int3` over the rest.
pub fn patch_bytes(pad: &Pad, target: u64) -> Result<Vec<u8>, String> {
    let rel = target.wrapping_sub(pad.start + JMP_LEN) as i64;
    let rel = i32::try_from(rel).map_err(|_| format!("trampoline {target:#x} is more than 2 GB from {:#x}", pad.start))?;
    let mut b = vec![0xe9];
    b.extend_from_slice(&rel.to_le_bytes());
    b.resize(pad.len as usize, 0xcc);
    Ok(b)
}
