//! The eBPF assembler: device rules compiled into a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program.

use super::{Kind, RWM, Rule};

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

/// The opcodes the device program uses: class | operation | source.
pub(super) mod op {
    /// `BPF_LDX | BPF_MEM | BPF_W`: dst = *(u32 *)(src + off)
    pub const LDX_W: u8 = 0x61;
    /// `BPF_ALU | BPF_AND | BPF_K`: dst = (u32)dst & imm
    pub const AND32_K: u8 = 0x54;
    /// `BPF_ALU | BPF_RSH | BPF_K`: dst = (u32)dst >> imm
    pub const RSH32_K: u8 = 0x74;
    /// `BPF_ALU | BPF_MOV | BPF_X`: dst = (u32)src
    pub const MOV32_X: u8 = 0xbc;
    /// `BPF_ALU | BPF_MOV | BPF_K`: dst = (u32)imm
    pub const MOV32_K: u8 = 0xb4;
    /// `BPF_JMP32 | BPF_JNE | BPF_K`: if (u32)dst != imm goto +off
    pub const JNE32_K: u8 = 0x56;
    /// `BPF_JMP32 | BPF_JEQ | BPF_K`: if (u32)dst == imm goto +off
    pub const JEQ32_K: u8 = 0x16;
    /// `BPF_JMP | BPF_EXIT`: return r0
    pub const EXIT: u8 = 0x95;
}

impl Insn {
    pub(super) const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8 bytes of `struct bpf_insn` (the register nibbles are a C
    /// bit-field, so their order follows the byte order).
    pub(super) fn encode(&self) -> u64 {
        let regs = if cfg!(target_endian = "little") {
            (self.dst & 0xf) | (self.src << 4)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let o = self.off.to_ne_bytes();
        let i = self.imm.to_ne_bytes();
        u64::from_ne_bytes([self.code, regs, o[0], o[1], i[0], i[1], i[2], i[3]])
    }
}

/// Compiles device rules into a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
///
/// The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
/// major; u32 minor; }` in r1, the device type in the low 16 bits of
/// `access_type` and the requested access in the high 16, and returns 1 to
/// allow. Semantics: the last matching rule wins, default deny. Type `a`
/// and a `None` major or minor match anything. A request matches an allow
/// rule when all its access bits are in the rule's, and a deny rule when any
/// of them is (so `deny c 1:3 w` also stops an open for reading and
/// writing, as the v1 kernel does; runc's own program checks a subset here
/// too, which lets O_RDWR through such a deny in allow-all mode).
///
/// Rules are tested from the last to the first; a rule that matches
/// everything ends the program there, since the verifier refuses
/// unreachable instructions.
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    const R4: u8 = 4;
    const R5: u8 = 5;
    let mut p = vec![
        // r2 = device type, r3 = access, r4 = major, r5 = minor
        Insn::new(op::LDX_W, R2, R1, 0, 0),
        Insn::new(op::AND32_K, R2, 0, 0, 0xffff),
        Insn::new(op::LDX_W, R3, R1, 0, 0),
        Insn::new(op::RSH32_K, R3, 0, 0, 16),
        Insn::new(op::LDX_W, R4, R1, 4, 0),
        Insn::new(op::LDX_W, R5, R1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each test jumps past the end of the block when it fails; the
        // offsets are filled in once the block's length is known.
        let mut b = Vec::new();
        let mut skips = Vec::new();
        let mut skip_unless = |b: &mut Vec<Insn>, code, reg, imm: i32| {
            skips.push(b.len());
            b.push(Insn::new(code, reg, 0, 0, imm));
        };
        match r.kind {
            Kind::All => {}
            Kind::Block => skip_unless(&mut b, op::JNE32_K, R2, DEV_BLOCK),
            Kind::Char => skip_unless(&mut b, op::JNE32_K, R2, DEV_CHAR),
        }
        if r.access & RWM != RWM {
            b.push(Insn::new(op::MOV32_X, R1, R3, 0, 0));
            if r.allow {
                // Every requested bit must be in the rule.
                b.push(Insn::new(op::AND32_K, R1, 0, 0, !(r.access as i32)));
                skip_unless(&mut b, op::JNE32_K, R1, 0);
            } else {
                // Any requested bit in the rule.
                b.push(Insn::new(op::AND32_K, R1, 0, 0, r.access as i32));
                skip_unless(&mut b, op::JEQ32_K, R1, 0);
            }
        }
        if let Some(m) = r.major {
            skip_unless(&mut b, op::JNE32_K, R4, m as i32);
        }
        if let Some(m) = r.minor {
            skip_unless(&mut b, op::JNE32_K, R5, m as i32);
        }
        b.push(Insn::new(op::MOV32_K, R0, 0, 0, r.allow as i32));
        b.push(Insn::new(op::EXIT, 0, 0, 0, 0));
        let end = b.len();
        for i in &skips {
            b[*i].off = (end - i - 1) as i16;
        }
        p.extend(b);
        if skips.is_empty() {
            return p;
        }
    }
    p.push(Insn::new(op::MOV32_K, R0, 0, 0, 0));
    p.push(Insn::new(op::EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::super::emulator::emulate;
    use super::super::tests::{rule, spec, sr};
    use super::super::{MKNOD, READ, WRITE, effective_rules};
    use super::*;

    // --- a tiny interpreter for the opcodes program() emits, plus the
    // structural checks of the kernel verifier that matter here.

    fn check_shape(p: &[Insn]) {
        let mut reach = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "falls off the end at {pc}");
            if reach[pc] {
                continue;
            }
            reach[pc] = true;
            match p[pc].code {
                op::EXIT => {}
                op::JNE32_K | op::JEQ32_K => {
                    assert!(p[pc].off >= 0, "backward jump at {pc}");
                    todo.push(pc + 1);
                    todo.push(pc + 1 + p[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        assert!(reach.iter().all(|r| *r), "unreachable insns in {p:?}");
    }

    fn run(p: &[Insn], kind: i32, major: u32, minor: u32, access: u8) -> bool {
        check_shape(p);
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                op::LDX_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    reg[d] = ctx[i.off as usize / 4] as u64;
                }
                op::AND32_K => reg[d] = (reg[d] as u32 & i.imm as u32) as u64,
                op::RSH32_K => reg[d] = ((reg[d] as u32) >> i.imm) as u64,
                op::MOV32_X => reg[d] = reg[s] as u32 as u64,
                op::MOV32_K => reg[d] = i.imm as u32 as u64,
                op::JNE32_K if reg[d] as u32 != i.imm as u32 => pc += i.off as usize,
                op::JEQ32_K if reg[d] as u32 == i.imm as u32 => pc += i.off as usize,
                op::JNE32_K | op::JEQ32_K => {}
                op::EXIT => return reg[0] == 1,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;

    #[test]
    fn program_allow_list() {
        let p = program(&[
            rule("allow c 1:3 rwm"),
            rule("allow c 1:5 r"),
            rule("allow c 136:* rw"),
            rule("allow b *:* m"),
        ]);
        assert!(run(&p, C, 1, 3, READ | WRITE));
        assert!(run(&p, C, 1, 3, MKNOD));
        assert!(run(&p, C, 1, 5, READ));
        assert!(!run(&p, C, 1, 5, WRITE));
        assert!(!run(&p, C, 1, 5, READ | WRITE));
        assert!(run(&p, C, 136, 7, READ | WRITE));
        assert!(!run(&p, C, 136, 7, MKNOD));
        assert!(run(&p, B, 8, 0, MKNOD));
        assert!(!run(&p, B, 8, 0, READ));
        assert!(!run(&p, C, 1, 1, READ), "default deny");
        assert!(!run(&p, B, 1, 3, READ), "type matters");
    }

    #[test]
    fn program_last_match_wins_and_deny_matches_any_bit() {
        let p = program(&[rule("allow c *:* rwm"), rule("deny c 1:3 w")]);
        assert!(run(&p, C, 1, 3, READ));
        assert!(!run(&p, C, 1, 3, WRITE));
        assert!(!run(&p, C, 1, 3, READ | WRITE));
        assert!(run(&p, C, 1, 4, WRITE));
        let p = program(&[rule("deny c 1:3 w"), rule("allow c *:* rwm")]);
        assert!(run(&p, C, 1, 3, WRITE));
        // Type a matches every device; a final unconditional rule ends the program.
        let p = program(&[rule("deny c 1:1 rwm"), rule("allow a *:* rwm")]);
        assert!(run(&p, C, 1, 1, READ) && run(&p, B, 7, 7, WRITE));
        assert_eq!(p.len(), 8);
        let p = program(&[
            rule("allow a *:* rwm"),
            rule("deny c 1:1 m"),
            rule("deny b 8:* rw"),
        ]);
        assert!(!run(&p, C, 1, 1, MKNOD));
        assert!(run(&p, C, 1, 1, READ));
        assert!(!run(&p, B, 8, 16, READ));
        assert!(run(&p, B, 8, 16, MKNOD));
        assert!(run(&p, B, 9, 0, READ));
        // Empty: deny everything.
        let p = program(&[]);
        assert!(!run(&p, C, 1, 3, READ));
        // Large numbers compare as u32.
        let p = program(&[rule("allow c 4294967295:2147483648 r")]);
        assert!(run(&p, C, u32::MAX, 1 << 31, READ));
        assert!(!run(&p, C, u32::MAX, 0, READ));
    }

    #[test]
    fn program_from_effective_rules() {
        // A container's usual rules: containerd's deny-all, runc's defaults.
        let mut rules = vec![
            spec(r#"{"allow":false,"access":"rwm"}"#),
            sr("allow c 1:1 r"),
        ];
        rules = effective_rules(&rules, &[]);
        let p = program(&emulate(&rules).unwrap().clean_rules());
        assert!(run(&p, C, 1, 3, READ | WRITE)); // /dev/null
        assert!(run(&p, C, 136, 0, READ | WRITE)); // a pty
        assert!(run(&p, C, 1, 1, READ));
        assert!(!run(&p, C, 1, 1, WRITE));
        assert!(run(&p, B, 8, 0, MKNOD)); // mknod of anything
        assert!(!run(&p, B, 8, 0, READ));
        assert!(!run(&p, C, 10, 229, READ)); // /dev/fuse
    }

    #[test]
    fn encoding() {
        let i = Insn::new(op::LDX_W, 3, 1, 8, -2);
        let b = i.encode().to_ne_bytes();
        if cfg!(target_endian = "little") {
            assert_eq!(b, [0x61, 0x13, 8, 0, 0xfe, 0xff, 0xff, 0xff]);
        }
    }
}
