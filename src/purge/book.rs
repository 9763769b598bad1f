//! The rules of every zone, as look-up tables per selector (see the module docs of [`super`]).

use std::{
    collections::{BTreeSet, HashMap},
    sync::RwLock,
};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{
    domain::{Invalidation, PurgeAction, PurgeRule, PurgeTarget, Timestamp, ZoneId},
    http_cache::StoredResponse,
    proxy::client_headers::{HTTPS_KEY_PART, keyed},
};

/// The latest revision of each action for one selector value; 0 for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    purge: i64,
    invalidate: i64,
    /// When the latest invalidation committed, unix microseconds.
    invalidated_at: i64,
}

impl Mark {
    fn add(&mut self, rule: &PurgeRule) {
        match rule.action {
            PurgeAction::Purge => self.purge = self.purge.max(rule.revision),
            PurgeAction::Invalidate => {
                self.invalidate = self.invalidate.max(rule.revision);
                self.invalidated_at = self.invalidated_at.max(rule.created_on.as_micros());
            }
        }
    }

    /// Folds this mark's judgement of a copy filled under `fill_revision` into `v`.
    fn judge(&self, fill_revision: i64, v: &mut Verdict) {
        if self.purge > fill_revision {
            *v = Verdict::Purged;
        } else if self.invalidate > fill_revision {
            let at = Timestamp::from_micros(self.invalidated_at);
            *v = v.invalidated(Invalidation { revision: self.invalidate, at });
        }
    }

    /// Forgets the rules of revisions up to `through`; returns whether nothing is left.
    fn retire(&mut self, through: i64) -> bool {
        if self.purge <= through {
            self.purge = 0;
        }
        if self.invalidate <= through {
            self.invalidate = 0;
            self.invalidated_at = 0;
        }
        self.purge == 0 && self.invalidate == 0
    }
}

/// Rules naming request headers kept per URL; more target every variant of the URL (see
/// [`ZoneRules::add`]).
const MAX_VARIANTS: usize = 16;

/// A URL's rule that names request headers: it targets the one variant they select.
#[derive(Debug)]
struct VariantMark {
    headers: HeaderMap,
    /// What the headers add to the cache key (`Origin`).
    keyed: String,
    mark: Mark,
}

/// One zone's rules.
#[derive(Debug, Default)]
struct ZoneRules {
    /// The highest revision of any rule: a fill that began under an older one does not land.
    latest: i64,
    everything: Mark,
    hosts: HashMap<String, Mark>,
    tags: HashMap<String, Mark>,
    prefixes: HashMap<String, Mark>,
    /// The lengths at which `prefixes` has rules, so a look-up tries only those.
    prefix_lengths: BTreeSet<usize>,
    /// URL (`host/path?query`) → a rule for every variant, and rules for single variants (at most
    /// [`MAX_VARIANTS`] per URL).
    files: HashMap<String, (Mark, Vec<VariantMark>)>,
}

impl ZoneRules {
    fn add(&mut self, rule: &PurgeRule) {
        self.latest = self.latest.max(rule.revision);
        match &rule.target {
            PurgeTarget::Everything => self.everything.add(rule),
            PurgeTarget::Host(h) => self.hosts.entry(h.clone()).or_default().add(rule),
            PurgeTarget::Tag(t) => self.tags.entry(t.clone()).or_default().add(rule),
            PurgeTarget::Prefix(p) => {
                self.prefix_lengths.insert(p.len());
                self.prefixes.entry(p.clone()).or_default().add(rule);
            }
            PurgeTarget::File { url, headers } => {
                let (all, variants) = self.files.entry(url.clone()).or_default();
                if headers.is_empty() {
                    all.add(rule);
                    return;
                }
                let headers = header_map(headers);
                if let Some(v) = variants.iter_mut().find(|v| v.headers == headers) {
                    v.mark.add(rule);
                } else if variants.len() < MAX_VARIANTS {
                    let keyed = keyed(&headers);
                    let mut mark = Mark::default();
                    mark.add(rule);
                    variants.push(VariantMark { headers, keyed, mark });
                } else {
                    // Beyond the bound the rule targets every variant of the URL: more than asked (they
                    // are fetched again), never less, and look-ups stay bounded.
                    all.add(rule);
                }
            }
        }
    }

    /// Forgets the rules of revisions up to `through` (`latest` stays: fills that began before a retired
    /// rule still do not land).
    fn retire(&mut self, through: i64) {
        self.everything.retire(through);
        self.hosts.retain(|_, m| !m.retire(through));
        self.tags.retain(|_, m| !m.retire(through));
        self.prefixes.retain(|_, m| !m.retire(through));
        self.prefix_lengths = self.prefixes.keys().map(String::len).collect();
        self.files.retain(|_, (all, variants)| {
            let all_gone = all.retire(through);
            variants.retain_mut(|v| !v.mark.retire(through));
            !(all_gone && variants.is_empty())
        });
    }

    /// How many selector values hold rules.
    fn len(&self) -> usize {
        let files: usize = self.files.values().map(|(_, v)| 1 + v.len()).sum();
        usize::from(self.everything != Mark::default())
            + self.hosts.len()
            + self.tags.len()
            + self.prefixes.len()
            + files
    }

    fn judge(&self, s: &Subject<'_>) -> Verdict {
        let mut v = Verdict::Keep;
        let f = s.fill_revision;
        if f >= self.latest {
            return v;
        }
        self.everything.judge(f, &mut v);
        // The key is `host` + `path?query` + " https" for a request over TLS + keyed fields (each added as
        // " name=value"). A purge by URL purges both schemes.
        let (url, keyed_part) = s.key.split_once(' ').map_or((s.key, ""), |(u, k)| (u, k));
        let keyed_part = if keyed_part.is_empty() { String::new() } else { format!(" {keyed_part}") };
        let keyed_part = keyed_part.strip_prefix(HTTPS_KEY_PART).unwrap_or(&keyed_part);
        let host = url.split_once('/').map_or(url, |(h, _)| h);
        if let Some(m) = self.hosts.get(host) {
            m.judge(f, &mut v);
        }
        if let Some((all, variants)) = self.files.get(url) {
            all.judge(f, &mut v);
            for variant in variants {
                if variant.keyed == keyed_part && s.stored.selected_by(&variant.headers) {
                    variant.mark.judge(f, &mut v);
                }
            }
        }
        if !self.prefixes.is_empty() {
            let host_path = url.split_once('?').map_or(url, |(hp, _)| hp);
            for &len in self.prefix_lengths.range(..=host_path.len()) {
                if let Some(m) = host_path.get(..len).and_then(|p| self.prefixes.get(p)) {
                    m.judge(f, &mut v);
                }
            }
        }
        if !self.tags.is_empty() {
            for tag in s.stored.cache_tags() {
                if let Some(m) = self.tags.get(tag) {
                    m.judge(f, &mut v);
                }
            }
        }
        v
    }
}

/// Request headers named by a purge of one variant. Names and values were checked when the call was
/// parsed; anything that no longer parses is skipped.
fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.append(n, v);
        }
    }
    map
}

/// A stored copy to judge.
pub struct Subject<'a> {
    /// The revision it was filled (or last revalidated) under.
    pub fill_revision: i64,
    /// Its cache key.
    pub key: &'a str,
    pub stored: &'a StoredResponse,
}

/// What the rules say of a stored copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No rule applies.
    Keep,
    /// Purged: treat it as absent, in every tier.
    Purged,
    /// Invalidated: stale from the invalidation's time on, to be revalidated before it is served.
    Invalidated(Invalidation),
}

impl Verdict {
    /// This verdict with an invalidation added (a purge stays a purge).
    #[must_use]
    pub fn invalidated(self, inv: Invalidation) -> Self {
        match self {
            Self::Purged => Self::Purged,
            Self::Invalidated(earlier) => Self::Invalidated(earlier.max(inv)),
            Self::Keep => Self::Invalidated(inv),
        }
    }

    /// This verdict with the invalidation a copy filled under `fill_revision` carries, if it applies.
    #[must_use]
    pub fn carried(self, carried: Option<Invalidation>, fill_revision: i64) -> Self {
        match carried {
            Some(inv) if inv.applies_to(fill_revision) => self.invalidated(inv),
            _ => self,
        }
    }
}

/// Every zone's rules on this node.
#[derive(Debug, Default)]
pub struct PurgeBook {
    zones: RwLock<HashMap<ZoneId, ZoneRules>>,
}

impl PurgeBook {
    /// Adds rules (again is harmless).
    pub fn apply(&self, rules: &[PurgeRule]) {
        if rules.is_empty() {
            return;
        }
        let mut zones = self.zones.write().expect("purge book lock");
        for rule in rules {
            zones.entry(rule.zone_id.clone()).or_default().add(rule);
        }
    }

    /// Forgets, in every zone, the rules of revisions up to `through`: their background work is done and
    /// every live node has swept its memory for them (SPEC §10). Fills that began before them still do not
    /// land.
    pub fn retire(&self, through: i64) {
        let mut zones = self.zones.write().expect("purge book lock");
        for rules in zones.values_mut() {
            rules.retire(through);
        }
    }

    /// Raises the zone's latest rule revision to `purge_revision` (the zone's, from the store): a fill that
    /// began before a rule this node never held, because it was retired meanwhile, still does not land.
    pub fn raise_latest(&self, zone: &ZoneId, purge_revision: i64) {
        if purge_revision == 0 {
            return;
        }
        let mut zones = self.zones.write().expect("purge book lock");
        let rules = zones.entry(zone.clone()).or_default();
        rules.latest = rules.latest.max(purge_revision);
    }

    /// How many selector values hold rules, over every zone.
    pub fn len(&self) -> usize {
        self.zones.read().expect("purge book lock").values().map(ZoneRules::len).sum()
    }

    /// Whether no zone holds a rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Judges a copy of the zone.
    pub fn judge(&self, zone: &ZoneId, subject: &Subject<'_>) -> Verdict {
        let zones = self.zones.read().expect("purge book lock");
        zones.get(zone).map_or(Verdict::Keep, |z| z.judge(subject))
    }

    /// Runs `land` (a synchronous insert into a tier) unless a rule of the zone is newer than
    /// `fill_revision`; rules cannot be added while it runs. Returns whether it ran.
    pub fn land(&self, zone: &ZoneId, fill_revision: i64, land: impl FnOnce() -> bool) -> bool {
        let zones = self.zones.read().expect("purge book lock");
        if zones.get(zone).is_some_and(|z| fill_revision < z.latest) {
            return false;
        }
        land()
    }
}

#[cfg(test)]
mod tests;
