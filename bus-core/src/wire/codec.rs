//! Primitive encoders and a bounds-checked reader over untrusted bytes.
//!
//! Integers of fixed width are little-endian. Variable-length integers are unsigned LEB128 (7 bits
//! a byte, low group first, high bit set on every byte but the last), at most 10 bytes, and must be
//! minimal: a trailing zero group is rejected, so every value has exactly one encoding and decoding
//! followed by encoding reproduces the input.

use super::DecodeError;

/// The longest LEB128 encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// How many bytes [`Sink::put_varint`] writes for `value`.
pub const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Where encoders write: a growing buffer, or a counter that only measures.
///
/// Each encoder is written once against this trait; its length function runs the same code over
/// [`LenCounter`], so the two cannot disagree.
pub trait Sink {
    /// Appends raw bytes.
    fn put_slice(&mut self, bytes: &[u8]);

    /// Appends one byte.
    fn put_u8(&mut self, byte: u8) {
        self.put_slice(&[byte]);
    }

    /// Appends `value` as a minimal LEB128 integer.
    fn put_varint(&mut self, mut value: u64) {
        let mut buf = [0u8; MAX_VARINT_LEN];
        let mut len = 0;
        while value >= 0x80 {
            buf[len] = (value as u8) | 0x80;
            value >>= 7;
            len += 1;
        }
        buf[len] = value as u8;
        self.put_slice(&buf[..=len]);
    }

    /// Appends a varint length followed by the bytes.
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.put_varint(bytes.len() as u64);
        self.put_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] that counts the bytes it is given and keeps none.
#[derive(Clone, Copy, Debug, Default)]
pub struct LenCounter(pub usize);

impl Sink for LenCounter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn put_varint(&mut self, value: u64) {
        self.0 += varint_len(value);
    }
}

/// A cursor over bytes that came from the network.
///
/// Every read checks the remaining length first and names the field it was reading when it fails.
/// Reads borrow from the input; nothing is copied or allocated here.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    consumed: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            rest: bytes,
            consumed: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// How many bytes have been read so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > self.rest.len() {
            return Err(DecodeError::Truncated {
                field,
                needed: len,
                have: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        self.consumed += len;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A minimal LEB128 integer.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.u8(field)?;
            let group = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && group > 1 {
                return Err(DecodeError::VarintOverflow { field });
            }
            value |= group << (7 * i);
            if byte & 0x80 == 0 {
                if group == 0 && i > 0 {
                    return Err(DecodeError::VarintNotMinimal { field });
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow { field })
    }

    /// A varint that must fit in `usize` and be at most `max`.
    pub fn varint_at_most(&mut self, max: u64, field: &'static str) -> Result<u64, DecodeError> {
        let value = self.varint(field)?;
        if value > max {
            return Err(DecodeError::OutOfRange { field, value, max });
        }
        Ok(value)
    }

    /// A count of items that each take at least `min_item_len` bytes: it cannot exceed what the
    /// remaining input could hold, so a hostile count cannot make the caller allocate.
    pub fn count(
        &mut self,
        min_item_len: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let max = (self.remaining() / min_item_len.max(1)) as u64;
        let count = self.varint_at_most(max, field)?;
        // Fits: count <= remaining bytes, which is a usize.
        Ok(count as usize)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len, field)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes(field)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.rest;
        self.consumed += rest.len();
        self.rest = &[];
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_varint(value);
        out
    }

    #[test]
    fn varint_fixtures() {
        assert_eq!(encode(0), [0x00]);
        assert_eq!(encode(1), [0x01]);
        assert_eq!(encode(127), [0x7f]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(300), [0xac, 0x02]);
        assert_eq!(
            encode(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn varint_rejects_non_minimal_overlong_and_truncated() {
        let field = "test";
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(field),
            Err(DecodeError::VarintNotMinimal { field })
        );
        let eleven = [0x80; 11];
        assert_eq!(
            Reader::new(&eleven).varint(field),
            Err(DecodeError::VarintOverflow { field })
        );
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Reader::new(&too_big).varint(field),
            Err(DecodeError::VarintOverflow { field })
        );
        assert_eq!(
            Reader::new(&[0x80]).varint(field),
            Err(DecodeError::Truncated {
                field,
                needed: 1,
                have: 0
            })
        );
    }

    #[test]
    fn count_cannot_exceed_remaining_input() {
        // A count of 2^40 items followed by 4 bytes cannot be honest.
        let mut bytes = encode(1 << 40);
        bytes.extend_from_slice(&[0; 4]);
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.count(2, "items"),
            Err(DecodeError::OutOfRange { field: "items", .. })
        ));
    }

    #[test]
    fn huge_length_prefix_is_truncation_not_allocation() {
        let bytes = encode(u64::MAX);
        assert!(matches!(
            Reader::new(&bytes).bytes("payload"),
            Err(DecodeError::Truncated {
                field: "payload",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: u64) {
            let bytes = encode(value);
            prop_assert_eq!(bytes.len(), varint_len(value));
            let mut counter = LenCounter::default();
            counter.put_varint(value);
            prop_assert_eq!(counter.0, bytes.len());
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.varint("v"), Ok(value));
            prop_assert!(r.is_empty());
        }
    }
}
