//! Parsing network blocks on the command line: `10.0.0.0/8`, `2001:db8::/32`, or one address.

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR block, or a single address (a /32 or /128).
pub fn parse(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a CIDR block (e.g. 10.0.0.0/8, 192.0.2.1, 2001:db8::/32)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_single_addresses_parse() {
        assert_eq!(parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse(" 192.0.2.1 ").unwrap().to_string(), "192.0.2.1/32");
        assert_eq!(parse("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert!(parse("10.0.0.0/33").is_err());
        assert!(parse("example.com").unwrap_err().contains("CIDR"));
    }

    #[test]
    fn trusted_proxy_is_repeatable() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "cache-reserve",
            "serve",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy=192.0.2.1",
        ])
        .unwrap();
        let crate::cli::Command::Serve(args) = cli.command else { panic!("not serve") };
        let nets: Vec<String> = args.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32"]);
    }
}
