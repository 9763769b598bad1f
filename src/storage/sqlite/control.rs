//! [`ControlStore`] on SQLite: zones, the reserve setting, Clear operations, tokens and users.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, backend, rows, unique_or_backend};
use crate::{
    domain::{ClearOperation, Timestamp, TokenId, Zone, ZoneId, ZoneName, secret::SecretHash},
    storage::{
        ControlStore, NewZone, Page, SetReserveOutcome, StartClearOutcome, StoreError, StoreResult, StoredToken,
        StoredUser, ZoneFilter,
    },
};

/// The latest Clear of a zone with what is left of the generations it clears.
const LATEST_CLEAR: &str = "
    SELECT c.id, c.zone_id, c.target_generation, c.start_ts, c.end_ts, c.modified_on,
           c.objects_total, c.bytes_total,
           CAST(COALESCE((SELECT SUM(g.objects) FROM generations g
                          WHERE g.zone_id = c.zone_id AND g.generation < c.target_generation), 0) AS BIGINT)
               AS remaining_objects,
           CAST(COALESCE((SELECT SUM(g.bytes) FROM generations g
                          WHERE g.zone_id = c.zone_id AND g.generation < c.target_generation), 0) AS BIGINT)
               AS remaining_bytes
    FROM clears c WHERE c.zone_id = $1 ORDER BY c.id DESC LIMIT 1";

async fn latest_clear_in(tx: &mut Transaction<'static, Sqlite>, id: &ZoneId) -> StoreResult<Option<ClearOperation>> {
    let row = sqlx::query(LATEST_CLEAR).bind(id.as_str()).fetch_optional(&mut **tx).await.map_err(backend)?;
    row.as_ref().map(rows::clear).transpose()
}

async fn zone_in(tx: &mut Transaction<'static, Sqlite>, id: &ZoneId) -> StoreResult<Option<Zone>> {
    let row = sqlx::query("SELECT * FROM zones WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::zone).transpose()
}

#[async_trait]
impl ControlStore for SqliteStore {
    async fn account_id(&self) -> StoreResult<String> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'account_id'")
            .fetch_one(&self.read)
            .await
            .map_err(backend)
    }

    async fn create_zone(&self, zone: NewZone) -> StoreResult<Zone> {
        let mut tx = self.begin_write().await?;
        let now = zone.now.as_micros();
        sqlx::query(
            "INSERT INTO zones (id, name, origin, reserve_on, generation, created_on, modified_on)
             VALUES ($1, $2, $3, 0, 1, $4, $4)",
        )
        .bind(zone.id.as_str())
        .bind(zone.name.as_str())
        .bind(&zone.origin)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_or_backend(e, format!("zone {}", zone.name)))?;
        let created = zone_in(&mut tx, &zone.id).await?.ok_or_else(|| StoreError::NotFound("zone".into()))?;
        tx.commit().await.map_err(backend)?;
        Ok(created)
    }

    async fn zone(&self, id: &ZoneId) -> StoreResult<Option<Zone>> {
        let row = sqlx::query("SELECT * FROM zones WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::zone).transpose()
    }

    async fn zone_by_name(&self, name: &ZoneName) -> StoreResult<Option<Zone>> {
        let row = sqlx::query("SELECT * FROM zones WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::zone).transpose()
    }

    async fn list_zones(&self, filter: &ZoneFilter, page: Page) -> StoreResult<(Vec<Zone>, u64)> {
        // Scoped tokens name few zones; filter in memory after a name-ordered scan of the matching rows.
        let rows = sqlx::query("SELECT * FROM zones WHERE ($1 IS NULL OR name = $1) ORDER BY name")
            .bind(filter.name.as_ref().map(|n| n.as_str()))
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        let mut zones = rows.iter().map(rows::zone).collect::<StoreResult<Vec<_>>>()?;
        if let Some(only) = &filter.only {
            zones.retain(|z| only.contains(&z.id));
        }
        let total = zones.len() as u64;
        let skip = (page.page.saturating_sub(1) as usize).saturating_mul(page.per_page as usize);
        let zones = zones.into_iter().skip(skip).take(page.per_page as usize).collect();
        Ok((zones, total))
    }

    async fn set_origin(&self, id: &ZoneId, origin: Option<String>, now: Timestamp) -> StoreResult<Zone> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE zones SET origin = $2, modified_on = $3, revision = revision + 1 WHERE id = $1")
            .bind(id.as_str())
            .bind(origin)
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let zone = zone_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("zone {id}")))?;
        tx.commit().await.map_err(backend)?;
        Ok(zone)
    }

    async fn set_reserve(&self, id: &ZoneId, on: bool, now: Timestamp) -> StoreResult<SetReserveOutcome> {
        let mut tx = self.begin_write().await?;
        if on && latest_clear_in(&mut tx, id).await?.is_some_and(|c| c.end_ts.is_none()) {
            return Ok(SetReserveOutcome::ClearInProgress);
        }
        sqlx::query(
            "UPDATE zones SET reserve_on = $2, reserve_modified_on = $3, revision = revision + 1 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(i64::from(on))
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let zone = zone_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("zone {id}")))?;
        tx.commit().await.map_err(backend)?;
        Ok(SetReserveOutcome::Changed(zone))
    }

    async fn start_clear(&self, id: &ZoneId, now: Timestamp) -> StoreResult<StartClearOutcome> {
        let mut tx = self.begin_write().await?;
        let zone = zone_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("zone {id}")))?;
        if let Some(running) = latest_clear_in(&mut tx, id).await?.filter(|c| c.end_ts.is_none()) {
            return Ok(StartClearOutcome::AlreadyRunning(running));
        }
        if zone.reserve_on {
            return Ok(StartClearOutcome::ReserveOn);
        }
        let target: i64 = sqlx::query_scalar(
            "UPDATE zones SET generation = generation + 1, revision = revision + 1 WHERE id = $1 RETURNING generation",
        )
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO clears (zone_id, target_generation, start_ts, modified_on, objects_total, bytes_total)
             SELECT $1, $2, $3, $3,
                    CAST(COALESCE(SUM(objects), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT)
             FROM generations WHERE zone_id = $1 AND generation < $2",
        )
        .bind(id.as_str())
        .bind(target)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let op = latest_clear_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound("clear".into()))?;
        tx.commit().await.map_err(backend)?;
        Ok(StartClearOutcome::Started(op))
    }

    async fn latest_clear(&self, id: &ZoneId) -> StoreResult<Option<ClearOperation>> {
        let row = sqlx::query(LATEST_CLEAR).bind(id.as_str()).fetch_optional(&self.read).await.map_err(backend)?;
        row.as_ref().map(rows::clear).transpose()
    }

    async fn create_token(&self, t: StoredToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (id, name, secret_hash, permissions, zones, created_on, expires_on, revoked_on)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.hash.0)
        .bind(rows::permissions_text(&t.permissions))
        .bind(rows::scope_text(&t.scope))
        .bind(t.created_on.as_micros())
        .bind(t.expires_on.map(Timestamp::as_micros))
        .execute(&self.write)
        .await
        .map_err(|e| unique_or_backend(e, "token"))?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<StoredToken>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE secret_hash = $1")
            .bind(&hash.0)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::token).transpose()
    }

    async fn list_tokens(&self) -> StoreResult<Vec<StoredToken>> {
        let rows =
            sqlx::query("SELECT * FROM tokens ORDER BY created_on").fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(rows::token).collect()
    }

    async fn revoke_token(&self, id: &TokenId, now: Timestamp) -> StoreResult<()> {
        let done = sqlx::query("UPDATE tokens SET revoked_on = COALESCE(revoked_on, $2) WHERE id = $1")
            .bind(id.as_str())
            .bind(now.as_micros())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    async fn create_user(&self, u: StoredUser) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, email, key_hash, created_on) VALUES ($1, $2, $3, $4)")
            .bind(u.id.as_str())
            .bind(&u.email)
            .bind(&u.key_hash.0)
            .bind(u.created_on.as_micros())
            .execute(&self.write)
            .await
            .map_err(|e| unique_or_backend(e, format!("user {}", u.email)))?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<StoredUser>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::user).transpose()
    }
}
