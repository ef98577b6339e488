#!/usr/bin/env python3
"""Writes the seeds of the restore_chain fuzz target (seeds/restore_chain/).

Each seed is the byte string from which `arbitrary` builds one `Spec` of
fuzz_targets/restore_chain.rs: integers little-endian, an enum variant as a
u32 x with (x * variants) >> 32 = its index, a bool or an Option's tag as a
byte (bit 0), a Vec as "one more?" bytes before each element and a 0 after
the last. The types below follow the Rust ones field by field; change both
together. Check a seed with
RESTORE_CHAIN_SHOW=1 cargo +nightly fuzz run restore_chain seeds/restore_chain/NAME

Run from fuzz/: python3 restore_chain_seeds.py
"""

import os
import struct


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def i8(v):
    return struct.pack("<b", v)


def i64(v):
    return struct.pack("<q", v)


def boolean(v):
    return u8(1 if v else 0)


def variant(index, count, *fields):
    return u32(-(-(index << 32) // count)) + b"".join(fields)


def option(value):
    return b"\x00" if value is None else b"\x01" + value


# enum Range { Next(u8), Snapshot(u8), Same, Zero, Backwards, Any(u64, u64) }
def next_(n=0):
    return variant(0, 6, u8(n))


def snapshot(n=0):
    return variant(1, 6, u8(n))


SAME = variant(2, 6)
ZERO = variant(3, 6)
BACKWARDS = variant(4, 6)


def range_any(a, b):
    return variant(5, 6, u64(a), u64(b))


# enum Commit { Version, Small(u8), Huge, Max, Any(u32) }
VERSION = variant(0, 5)
HUGE = variant(2, 5)
MAX = variant(3, 5)


def small(n):
    return variant(1, 5, u8(n))


# enum Stamp { Forward(u16), Backwards(u16), Any(i64) }
def forward(ms=1000):
    return variant(0, 3, u16(ms))


def backwards(ms):
    return variant(1, 3, u16(ms))


# enum Sum { Right, Zero, Any(u64) }
RIGHT = variant(0, 3)


def sum_any(v):
    return variant(2, 3, u64(v))


# enum Checksums { Standard, Reserved, None }
STANDARD = variant(0, 3)
RESERVED = variant(1, 3)
NO_CHECKSUMS = variant(2, 3)

# enum Name { Header, Zero, ZeroMin, Backwards, Shifted(i8) }
HEADER = variant(0, 5)
NAME_ZERO = variant(1, 5)
NAME_ZERO_MIN = variant(2, 5)
NAME_BACKWARDS = variant(3, 5)


def shifted(d):
    return variant(4, 5, i8(d))


# enum Damage { None, Truncate(u16), Flip(u16, u8) }
INTACT = variant(0, 3)


def truncate(n):
    return variant(1, 3, u16(n))


def flip(at, x):
    return variant(2, 3, u16(at), u8(x))


def file(
    version,
    level=0,
    range_=None,
    commit=VERSION,
    stamp=None,
    pre=RIGHT,
    post=RIGHT,
    checksums=STANDARD,
    drop_page=None,
    junk=None,
    other_page_size=False,
    raw=False,
    name=HEADER,
    damage=INTACT,
):
    return b"".join(
        [
            u8(level),
            range_ if range_ is not None else next_(0),
            u8(version),
            commit,
            stamp if stamp is not None else forward(),
            pre,
            post,
            checksums,
            option(None if drop_page is None else u8(drop_page)),
            option(None if junk is None else u16(junk[0]) + u8(junk[1])),
            boolean(other_page_size),
            boolean(raw),
            name,
            damage,
        ]
    )


# enum Target { Latest, Txid(u64), Listed(u8), Time(i64), StampOf(u8, i8) }
LATEST = variant(0, 5)


def txid(t):
    return variant(1, 5, u64(t))


def time(ms):
    return variant(3, 5, i64(ms))


def stamp_of(n, d=0):
    return variant(4, 5, u8(n), i8(d))


def spec(files, target=LATEST, large_pages=False, tail=None):
    return b"".join(
        [boolean(large_pages)]
        + [b"\x01" + f for f in files]
        + [b"\x00", option(None if tail is None else u8(tail)), target]
    )


# The file timestamps start at this (milliseconds), each file adding its
# Forward step.
T0 = 1_800_000_000_000

# A sound history: a snapshot of version 0, then a file per version (one of
# them two TXIDs long); versions 4 to 6 delete rows, VACUUM (the database
# shrinks) and add rows.
HISTORY = [file(0)] + [file(v, range_=next_(1 if v == 2 else 0)) for v in range(1, 7)]

SEEDS = {
    # Sound replicas: these must restore.
    "sound-latest": spec(HISTORY),
    "sound-large-pages": spec(HISTORY, large_pages=True),
    "sound-txid": spec(HISTORY, target=txid(5)),
    "sound-time": spec(HISTORY, target=time(T0 + 3500)),
    # A level-9 snapshot and a level-1 file beside the level-0 history: the
    # planner takes the shorter route.
    "sound-snapshot-route": spec(
        HISTORY[:4] + [file(3, level=9, range_=snapshot(0))] + HISTORY[4:]
    ),
    # No checksums (as Litestream writes), and checksums in the reserved
    # header bytes (--litestream-compat).
    "sound-no-checksums": spec([file(v, checksums=NO_CHECKSUMS) for v in range(0, 4)]),
    "sound-reserved-checksums": spec([file(v, checksums=RESERVED) for v in range(0, 4)]),
    # More files than the merge opens at once: merged by groups into runs.
    "sound-long-chain": spec(HISTORY, tail=30),
    # Forged: a commit claiming 0x7fffffff or 0xffffffff pages no file
    # writes, in the last file and mid-chain.
    "commit-huge-last": spec(HISTORY[:3] + [file(3, commit=HUGE)]),
    "commit-max-last": spec(HISTORY[:3] + [file(3, commit=MAX)]),
    "commit-huge-snapshot": spec([file(2, commit=HUGE)]),
    "commit-max-mid-chain": spec(HISTORY[:2] + [file(2, commit=MAX)] + HISTORY[3:5]),
    "commit-too-small": spec(HISTORY[:3] + [file(3, commit=small(1))]),
    # Forged: file names with TXID 0 (whole, or the first), running
    # backwards, or naming another range than the header says.
    "name-txid-zero": spec(HISTORY[:3] + [file(3, name=NAME_ZERO)]),
    "name-min-txid-zero": spec([file(0, name=NAME_ZERO_MIN)] + HISTORY[1:4]),
    "name-backwards": spec(HISTORY[:3] + [file(3, name=NAME_BACKWARDS)]),
    "name-shifted": spec(HISTORY[:3] + [file(3, name=shifted(1))]),
    "header-txid-zero": spec(HISTORY[:2] + [file(2, range_=ZERO, name=shifted(3))]),
    # Forged: the chain's commit claims a page no file writes.
    "missing-page": spec(HISTORY[:2] + [file(2, drop_page=3)]),
    "missing-page-long-chain": spec(HISTORY[:2] + [file(2, drop_page=3)], tail=10),
    "junk-page-above-commit": spec(HISTORY[:3] + [file(3, junk=(900, 7))]),
    # Timestamps going backwards, restored by time: every state up to the
    # answer was committed by then (TXID 4 here), or there is no answer.
    "stamps-backwards": spec(
        [file(0), file(1, stamp=backwards(5000)), file(2), file(3, stamp=backwards(9000))],
        target=time(T0 + 1500),
    ),
    "stamps-backwards-before-all": spec(
        [file(0), file(1, stamp=backwards(5000)), file(2)], target=stamp_of(1)
    ),
    # Forged checksums: a broken link, a wrong result.
    "wrong-pre-apply": spec(HISTORY[:3] + [file(3, pre=sum_any(0x8000_0000_0000_0001))]),
    "wrong-post-apply": spec(HISTORY[:3] + [file(3, post=sum_any(0x8000_0000_0000_0002))]),
    # Another page size mid-chain; a file cut short; a byte flipped.
    "other-page-size": spec(HISTORY[:3] + [file(3, other_page_size=True)]),
    "truncated": spec(HISTORY[:3] + [file(3, damage=truncate(150))]),
    "flipped": spec(HISTORY[:3] + [file(3, damage=flip(300, 0x40))]),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "restore_chain")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
