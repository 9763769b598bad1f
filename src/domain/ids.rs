//! Identifiers: 32 lowercase hex characters, as Cloudflare's.

use std::fmt;

/// Random 128-bit identifier rendered as 32 lowercase hex characters.
fn random_hex32() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex::encode(bytes)
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The input is not a 32-character lowercase hex identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-character lowercase hex identifier")]
pub struct InvalidId;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A fresh random identifier.
            pub fn generate() -> Self {
                Self(random_hex32())
            }

            /// Parses 32 lowercase hex characters; anything else is rejected.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_hex32(s) { Ok(Self(s.to_owned())) } else { Err(InvalidId) }
            }

            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// A zone's identifier.
    ZoneId
);
hex_id!(
    /// An API token's identifier (not its secret).
    TokenId
);
hex_id!(
    /// A user's identifier.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_parse() {
        let id = ZoneId::generate();
        assert_eq!(ZoneId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn rejects_uppercase_short_long_and_non_hex() {
        for bad in [
            "023E105F4ECEF8AD9CA31A8372D0C353",
            "023e105f4ecef8ad9ca31a8372d0c35",
            "023e105f4ecef8ad9ca31a8372d0c3533",
            "023e105f4ecef8ad9ca31a8372d0c35g",
            "",
        ] {
            assert!(ZoneId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn accepts_exactly_32_lower_hex(s in "\\PC{0,40}") {
            let ok = s.len() == 32 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
            prop_assert_eq!(ZoneId::parse(&s).is_ok(), ok);
        }
    }
}
