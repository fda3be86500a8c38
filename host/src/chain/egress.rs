//! Where a request may go: the endpoint's origin, or an origin a plugin was granted.
//!
//! Origins are read with the same parser the transport sends with (`http::Uri`), so a URL cannot
//! mean one host to this check and another to the connection (`http://api@evil/` is `evil`).

use std::fmt;

/// Scheme, host and port of a URL: what a request's destination is, as browsers compare origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// A URL that has no origin a request could go to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAnOrigin(String);

impl Origin {
    /// The origin of an absolute http(s) URL, or why it has none.
    pub fn of(url: &str) -> Result<Origin, NotAnOrigin> {
        Self::parse(url).map_err(NotAnOrigin)
    }

    fn parse(url: &str) -> Result<Origin, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("`{url}` is not an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{url}` has no host"))?
            .to_ascii_lowercase();
        Ok(Origin {
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
            host,
        })
    }

    /// Whether a `grants.outbound_hosts` entry covers this origin: `host:port`, or `host` for its
    /// ports 80 and 443.
    pub fn granted_by(&self, grant: &str) -> bool {
        let grant = grant.trim();
        let (host, port) = match grant.strip_prefix('[') {
            // `[v6]` or `[v6]:port`
            Some(rest) => match rest.split_once(']') {
                Some((host, after)) => (host, after.strip_prefix(':')),
                None => return false,
            },
            None => match grant.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (grant, None),
            },
        };
        let ours = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case(ours)
            && match port {
                Some(p) => p.parse::<u16>() == Ok(self.port),
                None => matches!(self.port, 80 | 443),
            }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What a layer may do beyond the endpoint's origin (its `grants`).
#[derive(Clone, Debug, Default)]
pub struct Egress {
    /// `host:port` or `host` entries (`grants.outbound_hosts`).
    pub hosts: Vec<String>,
    /// The pipeline's credentials go with this layer's requests to those hosts too
    /// (`grants.forward_credentials`).
    pub forward_credentials: bool,
}

impl Egress {
    /// Whether the grants list `origin`.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.hosts.iter().any(|g| origin.granted_by(g))
    }
}

/// Where a request leaving the chain goes, for the terminal: the pipeline's credentials are added
/// only for the endpoint's origin, or where a grant forwards them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The endpoint's origin: the pipeline's credentials go along.
    Endpoint,
    /// Another origin, granted to the plugin that chose it.
    Granted {
        /// The grant forwards the pipeline's credentials.
        credentials: bool,
    },
}

impl Destination {
    /// Whether the pipeline's credentials go with a request to this destination.
    pub fn takes_credentials(self) -> bool {
        match self {
            Destination::Endpoint => true,
            Destination::Granted { credentials } => credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_the_transport_reads_them() {
        let o = Origin::of("http://api@evil.example:8080/x").unwrap();
        assert_eq!(o.to_string(), "http://evil.example:8080");
        assert_eq!(
            Origin::of("HTTPS://Api.Example.com/a?b").unwrap(),
            Origin::of("https://api.example.com:443/").unwrap()
        );
        assert!(Origin::of("ftp://x/").is_err());
        assert!(Origin::of("/relative").is_err());
        assert!(Origin::of("http://a/\r\nx").is_err());
    }

    #[test]
    fn grants_name_a_host_and_port_or_a_host_on_the_web_ports() {
        let o = Origin::of("https://mirror.example.com/x").unwrap();
        assert!(o.granted_by("mirror.example.com"));
        assert!(o.granted_by("MIRROR.example.com:443"));
        assert!(!o.granted_by("mirror.example.com:8443"));
        assert!(!o.granted_by("example.com"));
        let local = Origin::of("http://127.0.0.1:9000/").unwrap();
        assert!(local.granted_by("127.0.0.1:9000"));
        assert!(!local.granted_by("127.0.0.1"));
        let v6 = Origin::of("http://[::1]:9000/").unwrap();
        assert!(v6.granted_by("[::1]:9000"));
    }
}
