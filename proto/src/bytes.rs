//! BYTES tensors on the wire (Triton's layout): each element is a 4-byte little-endian
//! length followed by that many bytes, elements in row-major order. One definition for
//! the node (its tensors keep this layout), the clients and the load generator.

use ::bytes::Bytes;

/// Why a buffer is not `numel` length-prefixed elements, or `Ok`.
pub fn check_bytes_layout(buf: &[u8], numel: usize) -> Result<(), String> {
    let mut at = 0usize;
    let mut count = 0usize;
    while at < buf.len() {
        let Some(prefix) = buf.get(at..at + 4) else {
            return Err(format!(
                "element {count} starts at byte {at} but only {} bytes remain for its 4-byte length",
                buf.len() - at
            ));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let end = (at + 4).saturating_add(len);
        if end > buf.len() {
            return Err(format!(
                "element {count} claims {len} bytes at byte {} but the buffer ends at {}",
                at + 4,
                buf.len()
            ));
        }
        at = end;
        count += 1;
        if count > numel {
            break;
        }
    }
    if count != numel {
        return Err(format!(
            "{} elements where the shape holds {numel}",
            if count > numel {
                format!("more than {numel}")
            } else {
                count.to_string()
            }
        ));
    }
    Ok(())
}

/// The elements of a length-prefixed BYTES buffer.
pub fn bytes_elements(buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let prefix = buf
            .get(at..at + 4)
            .ok_or_else(|| format!("a truncated length prefix at byte {at}"))?;
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let elem = buf
            .get(at + 4..(at + 4).saturating_add(len))
            .ok_or_else(|| format!("element {} overruns the buffer", out.len()))?;
        out.push(elem);
        at += 4 + len;
    }
    Ok(out)
}

/// Writes elements in the length-prefixed BYTES layout.
pub fn encode_bytes<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_layouts() {
        let b = encode_bytes([&b"ab"[..], &b""[..], "é".as_bytes()]);
        assert_eq!(
            bytes_elements(&b).unwrap(),
            vec![&b"ab"[..], &b""[..], "é".as_bytes()]
        );
        assert!(check_bytes_layout(&b, 3).is_ok());
        assert!(check_bytes_layout(&b, 2).is_err());
        assert!(bytes_elements(&b[..b.len() - 1]).is_err());
        assert!(bytes_elements(&[1, 0]).is_err());
    }
}
