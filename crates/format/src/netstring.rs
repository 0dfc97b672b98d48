//! Netstrings (`allmydata/util/netstring.py`): `<decimal length>:<bytes>,`.
//! Writing is [`steward_cap::hash::netstring`]; this module reads them.

/// Why bytes are not the netstrings expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetstringError {
    /// No `:` after the length, or the length is not a decimal number.
    #[error("bad netstring length at byte {at}")]
    BadLength {
        /// Offset of the length.
        at: usize,
    },
    /// The data is shorter than the length says, or the `,` is missing.
    #[error("netstring at byte {at} runs past the end or lacks its ','")]
    Truncated {
        /// Offset of the netstring.
        at: usize,
    },
    /// Fewer netstrings than wanted.
    #[error("expected {wanted} netstrings, found {found}")]
    TooFew {
        /// How many were wanted.
        wanted: usize,
        /// How many there were.
        found: usize,
    },
}

/// A decimal number as Tahoe writes it (`b"%d"`): ASCII digits only, at
/// most 19 of them so it fits a `u64`.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Reads one netstring starting at `position`: its contents and the position
/// after its `,`.
pub fn read_netstring(data: &[u8], position: usize) -> Result<(&[u8], usize), NetstringError> {
    let bad = NetstringError::BadLength { at: position };
    let rest = data.get(position..).ok_or(bad.clone())?;
    let colon = rest.iter().position(|&b| b == b':').ok_or(bad.clone())?;
    let len = parse_decimal(&rest[..colon]).ok_or(bad)?;
    let start = position + colon + 1;
    let truncated = NetstringError::Truncated { at: position };
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|&e| e < data.len())
        .ok_or(truncated.clone())?;
    if data[end] != b',' {
        return Err(truncated);
    }
    Ok((&data[start..end], end + 1))
}

/// Tahoe's `split_netstring(data, count, position)`: reads `count`
/// netstrings from `position` and returns them with the position after the
/// last one. Bytes after them are left for the caller (Tahoe ignores
/// what follows the four netstrings of a directory entry).
pub fn split_netstrings(
    data: &[u8],
    count: usize,
    mut position: usize,
) -> Result<(Vec<&[u8]>, usize), NetstringError> {
    let mut out = Vec::with_capacity(count);
    while position < data.len() && out.len() < count {
        let (s, next) = read_netstring(data, position)?;
        out.push(s);
        position = next;
    }
    if out.len() < count {
        return Err(NetstringError::TooFew {
            wanted: count,
            found: out.len(),
        });
    }
    Ok((out, position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_cap::hash::netstring;

    #[test]
    fn reads_what_netstring_writes() {
        let mut data = netstring(b"abc");
        data.extend(netstring(b""));
        data.extend(b"trailing");
        let (v, pos) = split_netstrings(&data, 2, 0).unwrap();
        assert_eq!(v, vec![&b"abc"[..], &b""[..]]);
        assert_eq!(&data[pos..], b"trailing");
        assert!(matches!(
            split_netstrings(&data[..pos], 3, 0),
            Err(NetstringError::TooFew {
                wanted: 3,
                found: 2
            })
        ));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(read_netstring(b"3:ab", 0).is_err());
        assert!(read_netstring(b"3:abc", 0).is_err());
        assert!(read_netstring(b"3:abc;", 0).is_err());
        assert!(read_netstring(b"x:abc,", 0).is_err());
        assert!(read_netstring(b"99999999999999999999:abc,", 0).is_err());
        assert!(read_netstring(b"18446744073709551615:abc,", 0).is_err());
        assert!(read_netstring(b"3abc,", 0).is_err());
        assert!(read_netstring(b"", 5).is_err());
        assert_eq!(read_netstring(b"x3:abc,", 1).unwrap(), (&b"abc"[..], 7));
    }
}
