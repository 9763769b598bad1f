//! Who is calling and what they may do: Cloudflare permission groups, token scope, and the check.

use std::{fmt, str::FromStr};

use super::{TokenId, UserId, ZoneId};

/// The permission groups this server understands, named as Cloudflare names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    ZoneRead,
    ZoneWrite,
    ZoneSettingsRead,
    ZoneSettingsWrite,
    CachePurge,
}

impl Permission {
    /// Every permission group, in display order.
    pub const ALL: [Permission; 5] = [
        Permission::ZoneSettingsRead,
        Permission::ZoneSettingsWrite,
        Permission::ZoneRead,
        Permission::ZoneWrite,
        Permission::CachePurge,
    ];

    /// Cloudflare's name, e.g. `Zone Settings Write`.
    pub fn cloudflare_name(self) -> &'static str {
        match self {
            Permission::ZoneRead => "Zone Read",
            Permission::ZoneWrite => "Zone Write",
            Permission::ZoneSettingsRead => "Zone Settings Read",
            Permission::ZoneSettingsWrite => "Zone Settings Write",
            Permission::CachePurge => "Cache Purge",
        }
    }

    /// The snake_case form, e.g. `zone_settings_write` (also the stored form).
    pub fn snake_name(self) -> &'static str {
        match self {
            Permission::ZoneRead => "zone_read",
            Permission::ZoneWrite => "zone_write",
            Permission::ZoneSettingsRead => "zone_settings_read",
            Permission::ZoneSettingsWrite => "zone_settings_write",
            Permission::CachePurge => "cache_purge",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cloudflare_name())
    }
}

/// A permission name that is not one of [`Permission::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission {0:?}; valid: \"Zone Settings Read\", \"Zone Settings Write\", \"Zone Read\", \"Zone Write\", \"Cache Purge\" (or zone_settings_read, ...)"
)]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// Accepts Cloudflare's names case-insensitively, or their snake_case form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Permission::ALL.into_iter().find(|p| p.snake_name() == wanted).ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a zone setting: Zone Settings Read/Write or Zone Read/Write.
    SettingsRead,
    /// Change a zone setting or start a Clear: Zone Settings Write or Zone Write.
    SettingsWrite,
    /// See that a zone exists: any zone permission.
    ZoneRead,
    /// Purge or invalidate cached content: Cache Purge alone (SPEC §10).
    Purge,
    /// Create or delete a zone: Zone Write (Cloudflare's "Zone: Edit"). Creating also needs a scope of all
    /// zones ([`Principal::reaches_all`]).
    ZoneAdmin,
}

impl Access {
    /// Whether holding `p` grants this access.
    pub fn granted_by(self, p: Permission) -> bool {
        match self {
            Access::ZoneRead => true,
            Access::SettingsRead => p != Permission::CachePurge,
            Access::SettingsWrite => {
                matches!(p, Permission::ZoneSettingsWrite | Permission::ZoneWrite)
            }
            Access::Purge => p == Permission::CachePurge,
            Access::ZoneAdmin => p == Permission::ZoneWrite,
        }
    }
}

/// Which zones a token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    AllZones,
    Zones(Vec<ZoneId>),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user's global API key: every permission on every zone of the installation's one account.
    User(UserId),
    /// An API token.
    Token { id: TokenId, permissions: Vec<Permission>, scope: TokenScope },
}

impl Principal {
    /// Whether the caller can see the zone at all (zones outside scope look nonexistent).
    pub fn reaches(&self, zone: &ZoneId) -> bool {
        match self {
            Principal::User(_) => true,
            Principal::Token { scope: TokenScope::AllZones, .. } => true,
            Principal::Token { scope: TokenScope::Zones(zones), .. } => zones.contains(zone),
        }
    }

    /// Whether the caller reaches every zone, including any created later (a global key, or a token scoped
    /// to all zones): the scope that may create zones, as Cloudflare's account-level permissions.
    pub fn reaches_all(&self) -> bool {
        matches!(self, Principal::User(_) | Principal::Token { scope: TokenScope::AllZones, .. })
    }

    /// Whether the caller holds a permission that grants `access`.
    pub fn allows(&self, access: Access) -> bool {
        match self {
            Principal::User(_) => true,
            Principal::Token { permissions, .. } => permissions.iter().any(|p| access.granted_by(*p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudflare_and_snake_names() {
        assert_eq!("Zone Settings Write".parse(), Ok(Permission::ZoneSettingsWrite));
        assert_eq!("zone settings write".parse(), Ok(Permission::ZoneSettingsWrite));
        assert_eq!("zone_settings_read".parse(), Ok(Permission::ZoneSettingsRead));
        assert_eq!("ZONE WRITE".parse(), Ok(Permission::ZoneWrite));
        assert!("Zone Admin".parse::<Permission>().is_err());
    }

    #[test]
    fn write_needs_a_write_permission() {
        let read_only = Principal::Token {
            id: TokenId::generate(),
            permissions: vec![Permission::ZoneSettingsRead, Permission::ZoneRead],
            scope: TokenScope::AllZones,
        };
        assert!(read_only.allows(Access::SettingsRead));
        assert!(!read_only.allows(Access::SettingsWrite));
        assert!(!read_only.allows(Access::Purge));
    }

    #[test]
    fn purge_needs_cache_purge_and_grants_nothing_else() {
        let purger = Principal::Token {
            id: TokenId::generate(),
            permissions: vec![Permission::CachePurge],
            scope: TokenScope::AllZones,
        };
        assert!(purger.allows(Access::Purge));
        assert!(purger.allows(Access::ZoneRead));
        assert!(!purger.allows(Access::SettingsRead));
        assert!(!purger.allows(Access::SettingsWrite));
        assert!(!purger.allows(Access::ZoneAdmin));
        assert_eq!("cache_purge".parse(), Ok(Permission::CachePurge));
    }

    #[test]
    fn scope_limits_zones() {
        let a = ZoneId::generate();
        let t = Principal::Token {
            id: TokenId::generate(),
            permissions: vec![Permission::ZoneWrite],
            scope: TokenScope::Zones(vec![a.clone()]),
        };
        assert!(t.reaches(&a));
        assert!(!t.reaches(&ZoneId::generate()));
        assert!(t.allows(Access::ZoneAdmin) && !t.reaches_all());
    }
}
