//! `serve`'s flags for what the proxy listener speaks: TLS (with HTTP/2 by ALPN) or h2c.

use std::path::PathBuf;

use clap::Args;

use crate::{net::tls::TlsFiles, server::ProxyTransport};

/// TLS and HTTP/2 on the proxy listener.
#[derive(Debug, Clone, Args)]
pub struct ProxyTlsArgs {
    /// PEM file with the proxy's TLS certificate chain (the server's certificate first). With
    /// --proxy-tls-key, the proxy listener speaks TLS, and HTTP/2 or HTTP/1.1 by ALPN. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "CACHE_RESERVE_PROXY_TLS_CERT", requires = "proxy_tls_key")]
    pub proxy_tls_cert: Option<PathBuf>,
    /// PEM file with the private key of --proxy-tls-cert (PKCS#8, PKCS#1 or SEC1). Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "CACHE_RESERVE_PROXY_TLS_KEY", requires = "proxy_tls_cert")]
    pub proxy_tls_key: Option<PathBuf>,
    /// Also accept HTTP/2 without TLS on the proxy listener from clients that start with the HTTP/2 preface
    /// (h2c with prior knowledge), beside HTTP/1.1. For a TLS-terminating load balancer in front.
    #[arg(long, env = "CACHE_RESERVE_PROXY_H2C", conflicts_with = "proxy_tls_cert")]
    pub proxy_h2c: bool,
}

impl ProxyTlsArgs {
    /// What the flags ask of the proxy listener (clap has checked that both files or neither are given).
    pub fn transport(&self) -> ProxyTransport {
        match (&self.proxy_tls_cert, &self.proxy_tls_key) {
            (Some(cert), Some(key)) => ProxyTransport::Tls(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ if self.proxy_h2c => ProxyTransport::H2c,
            _ => ProxyTransport::Http1,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["cache-reserve", "serve"].iter().chain(args))
    }

    #[test]
    fn cert_and_key_come_together_and_exclude_h2c() {
        let Command::Serve(args) = parse(&["--proxy-tls-cert", "c.pem", "--proxy-tls-key", "k.pem"]).unwrap().command
        else {
            panic!("not serve")
        };
        assert!(matches!(args.tls.transport(), super::ProxyTransport::Tls(_)));
        assert!(parse(&["--proxy-tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--proxy-tls-key", "k.pem"]).is_err());
        assert!(parse(&["--proxy-h2c", "--proxy-tls-cert", "c.pem", "--proxy-tls-key", "k.pem"]).is_err());
        let Command::Serve(args) = parse(&["--proxy-h2c"]).unwrap().command else { panic!("not serve") };
        assert_eq!(args.tls.transport(), super::ProxyTransport::H2c);
    }
}
