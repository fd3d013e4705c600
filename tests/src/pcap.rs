//! A minimal reader for the classic pcap files `tcpdump -w` writes.

use crate::error::{Error, Result};

/// Returns the captured bytes of every packet in a pcap file (link-layer
/// header included).
pub fn read_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = |detail: &str| Error::Parse {
        what: "pcap file".into(),
        detail: detail.into(),
    };
    if data.len() < 24 {
        return Err(bad("shorter than the global header"));
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("not a pcap file (pcapng is not supported)")),
    };
    let u32_at = |off: usize| -> u32 {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut packets = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = usize::try_from(u32_at(off + 8)).map_err(|_| bad("huge record"))?;
        let start = off + 16;
        let Some(end) = start.checked_add(incl).filter(|&e| e <= data.len()) else {
            // A record cut short by the capture being stopped: ignore it.
            break;
        };
        packets.push(data[start..end].to_vec());
        off = end;
    }
    Ok(packets)
}

/// Whether `needle` occurs anywhere in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_ignores_a_cut_tail() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.extend_from_slice(&[0; 20]);
        for payload in [&b"hello"[..], &b"world!"[..]] {
            f.extend_from_slice(&[0; 8]);
            let len = u32::try_from(payload.len()).unwrap();
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(payload);
        }
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&100u32.to_le_bytes());
        f.extend_from_slice(&100u32.to_le_bytes());
        f.extend_from_slice(b"cut");
        let p = read_pcap(&f).unwrap();
        assert_eq!(p, vec![b"hello".to_vec(), b"world!".to_vec()]);
        assert!(contains(&p[1], b"rld"));
        assert!(!contains(&p[0], b"rld"));
        assert!(read_pcap(b"garbage garbage garbage garbage").is_err());
    }
}
