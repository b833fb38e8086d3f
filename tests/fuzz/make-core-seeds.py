#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed cores of fuzz_core (tests/fuzz/corpus/core/): small x86_64 ELF cores for the
harness's manifest (pid 1, threads 1 and 2) with every note type osmosis and the kernel write,
each of its kernel size, in osmosis's order and in the kernel's, and the regression inputs of
the readers. Each seed is under the fuzzer's 64 KiB -max_len. Run it again after a change:
    python3 tests/fuzz/make-core-seeds.py tests/fuzz/corpus/core
"""

import os
import struct
import sys

PAGE = 4096
NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV, NT_SIGINFO = 1, 2, 3, 6, 0x53494749
NT_FILE, NT_X86_XSTATE, NT_GNU_BUILD_ID = 0x46494C45, 0x202, 3
PT_LOAD, PT_NOTE, PT_DYNAMIC = 1, 4, 2
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
AT_NULL, AT_PAGESZ, AT_SYSINFO_EHDR = 0, 6, 33
# kernel sizes on x86_64
PRSTATUS_SIZE, PRPSINFO_SIZE, SIGINFO_SIZE, FPREGSET_SIZE, XSTATE_SIZE = 336, 136, 128, 512, 2688
PR_REG_OFF, PR_PID_OFF = 112, 32
RIP, RSP, FS_BASE = 16, 19, 21

EXE, LIB, VDSO, STACK = 0x400000, 0x7F0000000000, 0x7FFF00000000, 0x7FFD00000000


def note(name, ntype, desc):
    n = name.encode() + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus(tid, rip, rsp):
    d = bytearray(PRSTATUS_SIZE)
    struct.pack_into("<i", d, PR_PID_OFF, tid)
    regs = [0] * 27
    regs[RIP], regs[RSP], regs[FS_BASE] = rip, rsp, STACK + 0x800
    struct.pack_into("<27Q", d, PR_REG_OFF, *regs)
    return bytes(d)


def prpsinfo():
    d = bytearray(PRPSINFO_SIZE)
    struct.pack_into("<i", d, 24, 1)  # pr_pid
    d[40:44] = b"fuzz"
    return bytes(d)


def auxv():
    return struct.pack("<6Q", AT_PAGESZ, PAGE, AT_SYSINFO_EHDR, VDSO, AT_NULL, 0)


def file_note(entries):
    head = struct.pack("<QQ", len(entries), PAGE)
    table = b"".join(struct.pack("<QQQ", s, e, o) for s, e, o, _ in entries)
    names = b"".join(n.encode() + b"\0" for _, _, _, n in entries)
    return head + table + names


def module_image(e_type, vaddr, build_id, size=PAGE):
    """An ELF file's first page: header, PT_LOAD of the whole image, PT_NOTE with a build-id."""
    phnum = 2
    notes = note("GNU", NT_GNU_BUILD_ID, build_id)
    phoff, notes_off = 64, 64 + 56 * phnum
    eh = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    eh += struct.pack("<HHIQQQIHHHHHH", e_type, 62, 1, vaddr + 0x100, phoff, 0, 0, 64, 56, phnum,
                      64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", PT_LOAD, 5, 0, vaddr, vaddr, size, size, PAGE)
    ph += struct.pack("<IIQQQQQQ", PT_NOTE, 4, notes_off, vaddr + notes_off, vaddr + notes_off,
                      len(notes), len(notes), 4)
    img = eh + ph + notes
    return img + bytes(size - len(img))


def core(notes, loads):
    """notes: bytes of the note segment; loads: [(vaddr, bytes, memsz)]."""
    phnum = 1 + len(loads)
    off = 64 + 56 * phnum
    ph = struct.pack("<IIQQQQQQ", PT_NOTE, 0, off, 0, 0, len(notes), 0, 0)
    data_off = off + len(notes)
    data_off += -data_off % PAGE
    body, cur = b"", data_off
    for vaddr, data, memsz in loads:
        ph += struct.pack("<IIQQQQQQ", PT_LOAD, 6, cur, vaddr, 0, len(data), memsz, PAGE)
        body += data
        cur += len(data)
    eh = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    eh += struct.pack("<HHIQQQIHHHHHH", ET_CORE, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    out = eh + ph + notes
    return out + bytes(data_off - len(out)) + body


def stack_page():
    # a frame-pointer chain and return addresses into the executable
    words = [0] * (PAGE // 8)
    words[0x100] = STACK + 0x900
    words[0x101] = EXE + 0x200
    words[0x120] = 0
    words[0x121] = EXE + 0x300
    return struct.pack("<%dQ" % len(words), *words)


def thread_notes(tid, rip):
    return (note("CORE", NT_PRSTATUS, prstatus(tid, rip, STACK + 0x800)) +
            note("CORE", NT_FPREGSET, bytes(FPREGSET_SIZE)) +
            note("LINUX", NT_X86_XSTATE, bytes(XSTATE_SIZE)) +
            note("CORE", NT_SIGINFO, bytes(SIGINFO_SIZE)))


def main(out):
    os.makedirs(out, exist_ok=True)
    files = [(EXE, EXE + PAGE, 0, "/nonexistent/fuzz"), (EXE + PAGE, EXE + 2 * PAGE, 1,
             "/nonexistent/fuzz"), (LIB, LIB + PAGE, 0, "/dev/null"),
             (LIB + PAGE, LIB + 2 * PAGE, 0, "/nonexistent/lib (deleted)")]
    loads = [(EXE, module_image(ET_EXEC, EXE, b"\x11" * 20), 2 * PAGE),
             (LIB, module_image(ET_DYN, 0, b"\x22" * 20), 2 * PAGE),
             (LIB + PAGE, module_image(ET_DYN, 0, b"\x33" * 20), PAGE),
             (STACK, stack_page(), PAGE),
             (VDSO, module_image(ET_DYN, 0, b"\x44" * 20), PAGE)]
    proc = note("CORE", NT_AUXV, auxv()) + note("CORE", NT_FILE, file_note(files))
    seeds = {
        # osmosis's order: PRPSINFO, per thread PRSTATUS FPREGSET XSTATE SIGINFO, AUXV, FILE
        "every-note-osmosis-order": note("CORE", NT_PRPSINFO, prpsinfo()) +
        thread_notes(1, EXE + 0x180) + thread_notes(2, LIB + 0x10) + proc,
        # the kernel's: the first thread's PRSTATUS, the process's notes, then its other notes
        "every-note-kernel-order": note("CORE", NT_PRSTATUS, prstatus(1, EXE + 0x180, STACK + 0x800)) +
        note("CORE", NT_PRPSINFO, prpsinfo()) + note("CORE", NT_SIGINFO, bytes(SIGINFO_SIZE)) +
        proc + note("CORE", NT_FPREGSET, bytes(FPREGSET_SIZE)) +
        note("LINUX", NT_X86_XSTATE, bytes(XSTATE_SIZE)) + thread_notes(2, VDSO + 0x100),
        # regression: a kernel-sized NT_PRSTATUS ends the notes (it was read 32 bytes past)
        "prstatus-ends-the-notes": note("CORE", NT_PRPSINFO, prpsinfo()) + proc +
        note("CORE", NT_PRSTATUS, prstatus(1, EXE + 0x180, STACK + 0x800)),
        # NT_FILE ends the notes, its count larger than it holds, its last name unterminated
        "file-note-overlong": note("CORE", NT_PRSTATUS, prstatus(1, EXE + 0x180, STACK + 0x800)) +
        note("CORE", NT_FILE, struct.pack("<QQ", 1000, PAGE) + file_note(files)[16:-3]),
        # every note one byte shorter than the kernel's
        "short-notes": note("CORE", NT_PRPSINFO, prpsinfo()[:-1]) +
        note("CORE", NT_PRSTATUS, prstatus(1, EXE, STACK)[:-1]) +
        note("CORE", NT_PRSTATUS, prstatus(2, EXE, STACK)[:PR_REG_OFF + 27 * 8 - 1]) +
        note("CORE", NT_AUXV, auxv()[:-1]) + note("CORE", NT_FILE, file_note(files)[:-1]),
    }
    for name, notes in seeds.items():
        data = core(notes, loads)
        assert len(data) <= 65536, (name, len(data))
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "core"))
