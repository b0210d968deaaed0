//! Parses a short reading such as `2.10`, ` -9.13` or `5` eight bytes at a time (SWAR: one `u64`
//! holds the field), with no per-byte loop.
//!
//! Why: the payload is about a thousand bytes of readings. A byte loop pays a loop back-edge per
//! byte, and in Wasm every back-edge carries the deadline (epoch) check, whose out-of-line call
//! made the register allocator keep the loop state on the stack. One field per step instead of
//! one byte per step is what keeps the parse as fast in the guest as natively.
//!
//! Accepts exactly: spaces, an optional sign, one to eight digits with at most one `.` among
//! them, spaces, all within eight bytes and ended by `#` or the end of the input. Anything else
//! (longer fields, tabs, exponents, junk) is declined with `None`, and the caller takes the general
//! path. An accepted field has at most eight digits, so `digits / 10^fraction` is one correctly
//! rounded division of exact values: bit-identical to `str::parse::<f64>`.

/// `ONES * b` puts byte `b` in every lane.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// `LOW_BYTES[n]` keeps the first (least significant) `n` bytes.
const LOW_BYTES: [u64; 9] = {
    let mut masks = [0u64; 9];
    let mut n = 1;
    while n < 8 {
        masks[n] = (1u64 << (8 * n)) - 1;
        n += 1;
    }
    masks[8] = u64::MAX;
    masks
};
/// Exact powers of ten up to the most fraction digits an accepted field can have.
const POW10: [f64; 8] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];

/// The reading at the start of `rest`, when it is a short plain decimal: its value and the length
/// of the field (up to, not including, the `#` or the end of `rest`).
#[inline(always)]
pub fn parse_field(rest: &[u8]) -> Option<(f64, usize)> {
    let word = load(rest);
    let hashes = bytes_equal(word, b'#');
    let len = if hashes != 0 {
        (hashes.trailing_zeros() / 8) as usize
    } else if rest.len() <= 8 {
        rest.len()
    } else {
        return None; // eight bytes or more: the general path
    };
    parse_first(word, len)
}

/// [`parse_field`] for a field known to be followed by a `#` within `eight`, the next eight
/// bytes of the input: its value and length, or `None` (no `#` in them, or not a short decimal).
#[inline(always)]
pub fn parse_hashed(eight: &[u8; 8]) -> Option<(f64, usize)> {
    let word = u64::from_le_bytes(*eight);
    let hashes = bytes_equal(word, b'#');
    if hashes == 0 {
        return None;
    }
    let len = (hashes.trailing_zeros() / 8) as usize;
    parse_first(word, len)
}

/// The value of the field in the first `len` bytes of `word` (`len <= 8`).
#[inline(always)]
fn parse_first(word: u64, len: usize) -> Option<(f64, usize)> {
    let field = word & LOW_BYTES[len];

    // Trim spaces: the run of space bytes from the start, and the run that ends the field.
    let spaces = bytes_equal(field, b' ') & LOW_BYTES[len];
    let lead = ((!spaces & HIGH).trailing_zeros() / 8) as usize;
    if lead >= len {
        return None; // empty or all spaces: the general path reports it
    }
    let trail = (((!spaces & HIGH) << (8 * (8 - len))).leading_zeros() / 8) as usize;
    let mut core = field >> (8 * lead);
    let mut n = len - lead - trail;

    let negative = core & 0xff == u64::from(b'-');
    if negative || core & 0xff == u64::from(b'+') {
        core >>= 8;
        n -= 1;
    }
    core &= LOW_BYTES[n];

    // At most one dot: cut it out, counting the digits after it.
    let dots = bytes_equal(core, b'.') & LOW_BYTES[n];
    let (digits, count, fraction) = if dots == 0 {
        (core, n, 0)
    } else if dots & (dots - 1) != 0 {
        return None;
    } else {
        let at = (dots.trailing_zeros() / 8) as usize;
        let before = core & LOW_BYTES[at];
        // `at + 1` may be 8 (a trailing dot in eight bytes): shifting a u64 by 64 yields nothing.
        let after = core.checked_shr(8 * (at as u32 + 1)).unwrap_or(0) << (8 * at);
        (before | after, n - 1, n - 1 - at)
    };
    if count == 0 {
        return None;
    }
    // Right-align the digits in eight bytes, padding the front with '0'.
    let pad = 8 - count;
    let eight = (digits << (8 * pad)) | ((u64::from(b'0') * ONES) & LOW_BYTES[pad]);
    if !all_digits(eight) {
        return None;
    }
    let value = f64::from(eight_digits(eight)) / POW10[fraction];
    Some((if negative { -value } else { value }, len))
}

/// The first eight bytes of `bytes` as a little-endian `u64`, zero-padded past the end.
#[inline(always)]
fn load(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(eight) => u64::from_le_bytes(*eight),
        None => load_short(bytes),
    }
}

/// [`load`] for the last few bytes of the input: out of line, as it copies with a call.
#[cold]
#[inline(never)]
fn load_short(bytes: &[u8]) -> u64 {
    let mut eight = [0u8; 8];
    let n = bytes.len().min(8);
    eight[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(eight)
}

/// The high bit set in every byte of `word` equal to `byte`, and nowhere else (no carries
/// between bytes, so no false positives).
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    !(((x & !HIGH) + !HIGH) | x) & HIGH
}

/// Every byte is an ASCII digit.
#[inline(always)]
fn all_digits(word: u64) -> bool {
    let low = 0x0f0f_0f0f_0f0f_0f0fu64;
    ((word & !low) | (((word.wrapping_add(0x0606_0606_0606_0606)) & !low) >> 4))
        == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits, the first byte most significant. At most 99 999 999, so an
/// `i32`: Cranelift converts a signed integer to f64 in one instruction, an unsigned one with a
/// compare and branch.
#[inline(always)]
fn eight_digits(word: u64) -> i32 {
    let mask = 0x0000_00ff_0000_00ffu64;
    let mul1 = 0x000f_4240_0000_0064u64; // 100 + (1_000_000 << 32)
    let mul2 = 0x0000_2710_0000_0001u64; // 1 + (10_000 << 32)
    let v = word - u64::from(b'0') * ONES;
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v =
        ((v & mask).wrapping_mul(mul1)).wrapping_add(((v >> 16) & mask).wrapping_mul(mul2)) >> 32;
    v as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse_field` must agree with: the field up to `#`, trimmed of spaces, `str::parse`d.
    fn reference(rest: &str) -> Option<f64> {
        let field = rest.split('#').next().unwrap_or("");
        field.trim_matches(' ').parse::<f64>().ok()
    }

    fn check(rest: &str) {
        // With a `#` in its first eight bytes, `parse_hashed` answers as `parse_field` does.
        if let Some(eight) = rest.as_bytes().first_chunk::<8>() {
            if eight.contains(&b'#') {
                assert_eq!(
                    parse_hashed(eight).map(|(v, len)| (v.to_bits(), len)),
                    parse_field(rest.as_bytes()).map(|(v, len)| (v.to_bits(), len)),
                    "{rest:?}"
                );
            } else {
                assert_eq!(parse_hashed(eight), None, "{rest:?}");
            }
        }
        match parse_field(rest.as_bytes()) {
            Some((value, len)) => {
                assert_eq!(
                    Some(value.to_bits()),
                    reference(rest).map(f64::to_bits),
                    "{rest:?}"
                );
                assert_eq!(len, rest.find('#').unwrap_or(rest.len()), "{rest:?}");
            }
            None => {
                // Declining is always allowed; it must not happen for the common shapes.
                let field = rest.split('#').next().unwrap_or("");
                let core = field.trim_matches(' ');
                let unsigned = core.strip_prefix(['-', '+']).unwrap_or(core);
                let plain = field.len() < 8
                    && unsigned.bytes().filter(|&b| b == b'.').count() <= 1
                    && unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    && unsigned.bytes().any(|b| b.is_ascii_digit());
                assert!(!plain, "declined a plain field {rest:?}");
            }
        }
    }

    #[test]
    fn agrees_with_str_parse_on_typical_and_edge_fields() {
        for rest in [
            "2.10#2.13",
            " 9.88# 9.13",
            "-0.97",
            "5",
            "5.",
            ".5",
            "-.5",
            "+1.5 #",
            "12345678",
            "1234567.#",
            "0.0000001",
            "  1.25  #",
            "-",
            "+",
            ".",
            "-.",
            "",
            "#",
            "   ",
            "1.2.3",
            "1e3",
            "--1",
            "+-1",
            "1-",
            "1 2",
            "\t1.5",
            "1.5\r",
            "nan",
            "inf",
            "123456789",
            "1234.5678",
            "1,5",
            "١",
        ] {
            check(rest);
        }
    }

    #[test]
    fn agrees_with_str_parse_on_random_fields() {
        let alphabet = b"0123456789.-+ #e\t";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let len = (next() % 12) as usize;
            let rest: String = (0..len)
                .map(|_| {
                    let r = next();
                    // Mostly digits and dots, so that many fields are accepted.
                    let pick = if r % 3 == 0 { r / 3 % 17 } else { r / 3 % 11 };
                    alphabet[pick as usize] as char
                })
                .collect();
            check(&rest);
        }
    }

    #[test]
    fn eight_digit_helpers() {
        assert_eq!(eight_digits(u64::from_le_bytes(*b"12345678")), 12_345_678);
        assert_eq!(eight_digits(u64::from_le_bytes(*b"00000042")), 42);
        assert!(all_digits(u64::from_le_bytes(*b"09876543")));
        assert!(!all_digits(u64::from_le_bytes(*b"0987654:")));
        assert!(!all_digits(u64::from_le_bytes(*b"/9876543")));
        assert_eq!(
            bytes_equal(u64::from_le_bytes(*b"a#b##c!#"), b'#'),
            0x8000_0080_8000_8000
        );
    }
}
