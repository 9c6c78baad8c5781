//! The owner an unprivileged unpack cannot give a file, kept in the
//! `user.rootlesscontainers` xattr as umoci writes it: a protobuf
//! `Resource { uint32 uid = 1; uint32 gid = 2; }` (rootless-containers/proto,
//! rootlesscontainers.proto). 0:0 is no xattr at all; otherwise an id of 0
//! is written as the proto's NoopID (u32::MAX, "leave as is", which is
//! root for a file the caller owns). Two varint fields are encoded by
//! hand: a protobuf crate would bring a code generator for 10 bytes.

/// The xattr's name.
pub const XATTR: &str = "user.rootlesscontainers";
/// The same, for the xattr calls.
pub const XATTR_C: &std::ffi::CStr = c"user.rootlesscontainers";

/// `Resource.NoopID`: the id is not changed (umoci's encoding of 0).
const NOOP_ID: u32 = u32::MAX;

/// The xattr's value for an entry owned by `uid`:`gid` in the image, or
/// `None` for root's (0:0), which needs none. The bytes are umoci's.
pub fn encode(uid: u32, gid: u32) -> Option<Vec<u8>> {
    if uid == 0 && gid == 0 {
        return None;
    }
    let noop = |id: u32| if id == 0 { NOOP_ID } else { id };
    let mut out = Vec::with_capacity(12);
    // Field 1 (uid) and field 2 (gid), wire type 0 (varint). proto3 leaves
    // out fields equal to 0, and neither is 0 here.
    for (tag, id) in [(0x08u8, noop(uid)), (0x10, noop(gid))] {
        out.push(tag);
        let mut v = id;
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a Resource back as a protobuf decoder would (any field order,
    /// absent fields 0, unknown varint fields skipped), NoopID made 0.
    fn decode(mut b: &[u8]) -> Option<(u32, u32)> {
        let varint = |b: &mut &[u8]| -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&x, rest) = b.split_first()?;
                *b = rest;
                v |= u64::from(x & 0x7f) << shift;
                if x & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        };
        let (mut uid, mut gid) = (0u32, 0u32);
        while !b.is_empty() {
            let key = varint(&mut b)?;
            if key & 7 != 0 {
                return None;
            }
            let v = u32::try_from(varint(&mut b)?).ok()?;
            match key >> 3 {
                1 => uid = v,
                2 => gid = v,
                _ => {}
            }
        }
        let real = |id: u32| if id == NOOP_ID { 0 } else { id };
        Some((real(uid), real(gid)))
    }

    /// The bytes `umoci unpack --rootless` (0.4.7) wrote for these owners.
    #[test]
    fn same_bytes_as_umoci() {
        assert_eq!(encode(0, 0), None);
        for (uid, gid, want) in [
            (1000, 1000, "08e80710e807"),
            (0, 5, "08ffffffff0f1005"),
            (33, 0, "082110ffffffff0f"),
            (0, 6, "08ffffffff0f1006"),
            (100_000, 200_000, "08a08d0610c09a0c"),
        ] {
            assert_eq!(
                crate::hex::encode(&encode(uid, gid).unwrap()),
                want,
                "{uid}:{gid}"
            );
        }
    }

    #[test]
    fn round_trips() {
        for uid in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            65_534,
            1 << 28,
            u32::MAX - 1,
        ] {
            for gid in [0, 5, 128, 300_000, u32::MAX - 1] {
                let got = encode(uid, gid).map_or(Some((0, 0)), |b| decode(&b));
                assert_eq!(got, Some((uid, gid)), "{uid}:{gid}");
            }
        }
        // What other writers may put there: fields absent or reordered.
        assert_eq!(decode(&[]), Some((0, 0)));
        assert_eq!(decode(&[0x10, 0x05, 0x08, 0x21]), Some((33, 5)));
    }
}
