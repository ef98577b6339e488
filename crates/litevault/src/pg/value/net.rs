//! Network addresses: `inet`, `cidr`, `macaddr` and `macaddr8` from the
//! text apps store in SQLite, in PostgreSQL's binary form.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

/// PostgreSQL's address families in the binary form (`AF_INET` is 2 there,
/// and IPv6 is one more, whatever the platform's own value).
const FAMILY_V4: u8 = 2;
const FAMILY_V6: u8 = 3;

/// Writes `addr[/bits]` as an `inet` (`cidr == false`) or a `cidr`, or says
/// what is wrong with it.
pub fn put_inet(buf: &mut BytesMut, s: &str, cidr: bool) -> Result<(), String> {
    let s = s.trim();
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())?;
    let (family, octets): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (FAMILY_V4, a.octets().to_vec()),
        IpAddr::V6(a) => (FAMILY_V6, a.octets().to_vec()),
    };
    let max = (octets.len() * 8) as u8;
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("netmask length not between 0 and {max}"))?,
    };
    if cidr && !host_bits_clear(&octets, bits) {
        return Err(format!(
            "bits set to the right of /{bits}: a cidr is a network (write it as an inet, or clear them)"
        ));
    }
    buf.put_u8(family);
    buf.put_u8(bits);
    buf.put_u8(cidr as u8);
    buf.put_u8(octets.len() as u8);
    buf.put_slice(&octets);
    Ok(())
}

fn host_bits_clear(octets: &[u8], bits: u8) -> bool {
    octets.iter().enumerate().all(|(i, &o)| {
        let first = (i * 8) as i32;
        let keep = (bits as i32 - first).clamp(0, 8);
        let mask = if keep == 8 { 0 } else { 0xffu8 >> keep };
        o & mask == 0
    })
}

/// Writes a MAC address (`08:00:2b:01:02:03`, `08-00-2b-01-02-03`,
/// `0800.2b01.0203`, `08002b010203`) as a `macaddr` (6 bytes) or a
/// `macaddr8` (8 bytes; a 6-byte address gets `ff:fe` in the middle, as
/// PostgreSQL's own input does).
pub fn put_macaddr(buf: &mut BytesMut, s: &str, eight: bool) -> Result<(), String> {
    let hexs: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let bytes = hex::decode(&hexs).map_err(|_| "not a MAC address (hex digits)".to_string())?;
    match (bytes.len(), eight) {
        (6, false) | (8, true) => buf.put_slice(&bytes),
        (6, true) => {
            buf.put_slice(&bytes[..3]);
            buf.put_slice(&[0xff, 0xfe]);
            buf.put_slice(&bytes[3..]);
        }
        (n, _) => {
            let want = if eight { "6 or 8" } else { "6" };
            return Err(format!(
                "a MAC address of {n} bytes where {want} are expected"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str, cidr: bool) -> Result<Vec<u8>, String> {
        let mut b = BytesMut::new();
        put_inet(&mut b, s, cidr)?;
        Ok(b.to_vec())
    }

    #[test]
    fn addresses_in_postgres_binary_form() {
        assert_eq!(
            inet("192.168.1.5", false).unwrap(),
            [2, 32, 0, 4, 192, 168, 1, 5]
        );
        assert_eq!(inet("10.0.0.0/8", true).unwrap(), [2, 8, 1, 4, 10, 0, 0, 0]);
        let v6 = inet("2001:db8::1/64", false).unwrap();
        assert_eq!(&v6[..4], [3, 64, 0, 16]);
        assert_eq!(&v6[4..8], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(v6[19], 1);
        // A network with host bits set is not a cidr.
        assert!(
            inet("10.0.0.1/8", true)
                .unwrap_err()
                .contains("right of /8")
        );
        assert!(inet("10.0.0.1/8", false).is_ok());
        assert!(inet("10.0.0.0/33", false).is_err());
        assert!(inet("not an address", false).is_err());
        assert!(inet("fe80::1%eth0", false).is_err());
        assert!(inet("2001:db8::/32", true).is_ok());
        assert!(inet("2001:db8:8000::/33", true).is_ok());
        assert!(inet("2001:db8:8000::/32", true).is_err());
    }

    #[test]
    fn mac_addresses() {
        let want = [0x08, 0x00, 0x2b, 0x01, 0x02, 0x03];
        for s in [
            "08:00:2b:01:02:03",
            "08-00-2B-01-02-03",
            "0800.2b01.0203",
            "08002b010203",
        ] {
            let mut b = BytesMut::new();
            put_macaddr(&mut b, s, false).unwrap();
            assert_eq!(&b[..], want, "{s}");
        }
        let mut b = BytesMut::new();
        put_macaddr(&mut b, "08:00:2b:01:02:03", true).unwrap();
        assert_eq!(&b[..], [0x08, 0x00, 0x2b, 0xff, 0xfe, 0x01, 0x02, 0x03]);
        assert!(put_macaddr(&mut b, "08:00:2b:01:02", false).is_err());
        assert!(put_macaddr(&mut b, "08:00:2b:01:02:03:04:05", false).is_err());
        assert!(put_macaddr(&mut b, "zz:00:2b:01:02:03", false).is_err());
    }
}
