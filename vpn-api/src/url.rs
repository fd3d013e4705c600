//! The group server's URL, as a blob carries it: `https://HOST[:PORT][/PATH]`.

/// `https://HOST[:PORT][/PATH]`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP address (without IPv6 brackets).
    pub host: String,
    /// TCP port (443 if not given).
    pub port: u16,
    /// Path prefix without a trailing slash (usually empty).
    pub base_path: String,
}

impl ServerUrl {
    /// Parses and checks a server URL. Only `https` is accepted.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?} is not an https:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("{url:?}: user names in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unterminated [IPv6] address"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{url:?}: {h:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{url:?}: junk after the IPv6 address"))?,
                ),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(format!("{url:?}: bad host name {host:?}"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        };
        if path.contains(['?', '#']) {
            return Err(format!("{url:?}: the server URL may not have a query"));
        }
        Ok(Self {
            host,
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// `HOST:PORT` for the `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ServerUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("127.0.0.1", 8443, "")
        );
        let u = ServerUrl::parse("https://vpn.example.org/groupvpn/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("vpn.example.org", 443, "/groupvpn")
        );
        let u = ServerUrl::parse("https://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority(), "[::1]:9000");
        for bad in [
            "http://127.0.0.1:8443",
            "https://",
            "https://host:0",
            "https://host:99999",
            "https://user@host",
            "https://[::1",
            "https://ho st",
            "https://host/?x=1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
