//! Row ↔ domain conversions for the SQL backends.

use sqlx::{Row, any::AnyRow};

use crate::{
    domain::{
        ClearOperation, ClearProgress, Invalidation, Permission, PurgeAction, PurgeRule, PurgeTarget, Timestamp,
        TokenId, TokenScope, UserId, Zone, ZoneId, ZoneName, secret::SecretHash,
    },
    storage::{IndexEntry, PendingClear, StoreError, StoreResult, StoredToken, StoredUser},
};

/// A stored value that no longer parses: the database was edited or corrupted.
fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored {what} does not parse").into())
}

fn ts(v: i64) -> Timestamp {
    Timestamp::from_micros(v)
}

fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_micros)
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A zone id as stored.
pub(super) fn zone_id(id: &str) -> StoreResult<ZoneId> {
    ZoneId::parse(id).map_err(|_| corrupt("zone id"))
}

pub(super) fn zone(r: &AnyRow) -> StoreResult<Zone> {
    Ok(Zone {
        id: zone_id(r.get("id"))?,
        name: ZoneName::parse(r.get("name")).map_err(|_| corrupt("zone name"))?,
        origin: r.get("origin"),
        reserve_on: r.get::<i64, _>("reserve_on") != 0,
        reserve_modified_on: opt_ts(r.get("reserve_modified_on")),
        generation: r.get("generation"),
        revision: r.get("revision"),
        purge_revision: r.get("purge_revision"),
        created_on: ts(r.get("created_on")),
        modified_on: ts(r.get("modified_on")),
        deleted_on: opt_ts(r.get("deleted_on")),
    })
}

/// A `clears` row joined with `remaining_objects` / `remaining_bytes`.
pub(super) fn clear(r: &AnyRow) -> StoreResult<ClearOperation> {
    Ok(ClearOperation {
        id: r.get("id"),
        zone_id: zone_id(r.get("zone_id"))?,
        target_generation: r.get("target_generation"),
        start_ts: ts(r.get("start_ts")),
        end_ts: opt_ts(r.get("end_ts")),
        modified_on: ts(r.get("modified_on")),
        progress: ClearProgress {
            objects_total: count(r.get("objects_total")),
            bytes_total: count(r.get("bytes_total")),
            objects_remaining: count(r.get("remaining_objects")),
            bytes_remaining: count(r.get("remaining_bytes")),
        },
    })
}

pub(super) fn token(r: &AnyRow) -> StoreResult<StoredToken> {
    let permissions = r
        .get::<String, _>("permissions")
        .split(',')
        .map(|p| p.parse::<Permission>().map_err(|_| corrupt("permission")))
        .collect::<StoreResult<Vec<_>>>()?;
    let scope = match r.get::<Option<String>, _>("zones") {
        None => TokenScope::AllZones,
        Some(list) => TokenScope::Zones(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|z| ZoneId::parse(z).map_err(|_| corrupt("token zone")))
                .collect::<StoreResult<Vec<_>>>()?,
        ),
    };
    Ok(StoredToken {
        id: TokenId::parse(r.get("id")).map_err(|_| corrupt("token id"))?,
        name: r.get("name"),
        hash: SecretHash(r.get("secret_hash")),
        permissions,
        scope,
        created_on: ts(r.get("created_on")),
        expires_on: opt_ts(r.get("expires_on")),
        revoked_on: opt_ts(r.get("revoked_on")),
    })
}

pub(super) fn user(r: &AnyRow) -> StoreResult<StoredUser> {
    Ok(StoredUser {
        id: UserId::parse(r.get("id")).map_err(|_| corrupt("user id"))?,
        email: r.get("email"),
        key_hash: SecretHash(r.get("key_hash")),
        created_on: ts(r.get("created_on")),
    })
}

pub(super) fn pending_clear(r: &AnyRow) -> StoreResult<PendingClear> {
    Ok(PendingClear {
        clear_id: r.get("id"),
        zone_id: zone_id(r.get("zone_id"))?,
        target_generation: r.get("target_generation"),
    })
}

/// A row of the partition of `zone`'s `generation` (see `partitions`).
pub(super) fn entry(zone: &ZoneId, generation: i64, r: &AnyRow) -> StoreResult<IndexEntry> {
    Ok(IndexEntry {
        zone_id: zone.clone(),
        generation,
        key_hash: r.get("key_hash"),
        key: r.get("cache_key"),
        blob: r.get("blob"),
        size: count(r.get("size")),
        meta: r.get("meta"),
        stored_on: ts(r.get("stored_on")),
        fill_revision: r.get("fill_revision"),
        invalidation: match (r.get::<Option<i64>, _>("invalidated_revision"), r.get::<Option<i64>, _>("invalidated_at"))
        {
            (Some(revision), Some(at)) => Some(Invalidation { revision, at: ts(at) }),
            _ => None,
        },
    })
}

/// A `purge_rules` row.
pub(super) fn purge_rule(r: &AnyRow) -> StoreResult<PurgeRule> {
    let headers: Option<String> = r.get("headers");
    let headers = match headers {
        Some(h) => serde_json::from_str(&h).map_err(|_| corrupt("purge rule headers"))?,
        None => Vec::new(),
    };
    let kind: String = r.get("kind");
    let action: String = r.get("action");
    Ok(PurgeRule {
        revision: r.get("revision"),
        zone_id: zone_id(r.get("zone_id"))?,
        action: PurgeAction::parse(&action).ok_or_else(|| corrupt("purge rule action"))?,
        target: PurgeTarget::from_stored(&kind, r.get("value"), headers).ok_or_else(|| corrupt("purge rule kind"))?,
        created_on: ts(r.get("created_on")),
    })
}

/// Stored form of a token's permissions.
pub(super) fn permissions_text(ps: &[Permission]) -> String {
    ps.iter().map(|p| p.snake_name()).collect::<Vec<_>>().join(",")
}

/// Stored form of a token's scope.
pub(super) fn scope_text(scope: &TokenScope) -> Option<String> {
    match scope {
        TokenScope::AllZones => None,
        TokenScope::Zones(z) => Some(z.iter().map(|z| z.as_str()).collect::<Vec<_>>().join(",")),
    }
}

/// Stored form of a size or count.
pub(super) fn sql_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
