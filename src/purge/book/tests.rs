//! Unit tests of the rule book: each selector, revisions, retirement and variants.

use std::time::SystemTime;

use http::{Method, StatusCode, request};

use super::*;
use crate::{domain::Timestamp, http_cache::CacheRules};

fn zone() -> ZoneId {
    ZoneId::parse("0123456789abcdef0123456789abcdef").unwrap()
}

fn rule(revision: i64, action: PurgeAction, target: PurgeTarget) -> PurgeRule {
    PurgeRule { revision, zone_id: zone(), action, target, created_on: Timestamp::from_micros(5_000_000) }
}

fn stored(tags: &str, vary: Option<&str>, request_headers: &[(&str, &str)]) -> StoredResponse {
    let mut req = request::Request::builder().method(Method::GET).uri("/");
    for (n, v) in request_headers {
        req = req.header(*n, *v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    let mut h = HeaderMap::new();
    h.insert("cache-control", HeaderValue::from_static("max-age=600"));
    h.insert("cache-tag", HeaderValue::from_str(tags).unwrap());
    if let Some(v) = vary {
        h.insert("vary", HeaderValue::from_str(v).unwrap());
    }
    let now = SystemTime::now();
    StoredResponse::admit(&parts, StatusCode::OK, &h, now, now, &CacheRules::default()).unwrap()
}

fn judge(book: &PurgeBook, fill: i64, key: &str, s: &StoredResponse) -> Verdict {
    book.judge(&zone(), &Subject { fill_revision: fill, key, stored: s })
}

#[test]
fn each_selector_targets_what_it_names_and_only_older_copies() {
    let book = PurgeBook::default();
    let s = stored("Shoes, sale", None, &[]);
    let key = "static.example.com/img/a.png?v=1";
    assert_eq!(judge(&book, 0, key, &s), Verdict::Keep);
    for (rev, target) in [
        (2, PurgeTarget::Tag("sale".into())),
        (3, PurgeTarget::Host("static.example.com".into())),
        (4, PurgeTarget::Prefix("static.example.com/img/a".into())),
        (5, PurgeTarget::File { url: "static.example.com/img/a.png?v=1".into(), headers: vec![] }),
    ] {
        let fresh = PurgeBook::default();
        fresh.apply(&[rule(rev, PurgeAction::Purge, target.clone())]);
        assert_eq!(judge(&fresh, rev - 1, key, &s), Verdict::Purged, "{target:?}");
        assert_eq!(judge(&fresh, rev, key, &s), Verdict::Keep, "filled after {target:?}");
    }
    for miss in [
        PurgeTarget::Tag("shoe".into()),
        PurgeTarget::Host("example.com".into()),
        PurgeTarget::Prefix("static.example.com/img/a.png?".into()),
        PurgeTarget::Prefix("static.example.com/img/b".into()),
        PurgeTarget::File { url: "static.example.com/img/a.png".into(), headers: vec![] },
    ] {
        let fresh = PurgeBook::default();
        fresh.apply(&[rule(9, PurgeAction::Purge, miss.clone())]);
        assert_eq!(judge(&fresh, 1, key, &s), Verdict::Keep, "{miss:?}");
    }
}

#[test]
fn a_prefix_is_a_string_prefix_of_host_and_path_without_the_query() {
    let book = PurgeBook::default();
    book.apply(&[rule(2, PurgeAction::Purge, PurgeTarget::Prefix("example.com/foo".into()))]);
    let s = stored("", None, &[]);
    for key in ["example.com/foo", "example.com/foobar", "example.com/foo/x?q=1", "example.com/foo?x"] {
        assert_eq!(judge(&book, 1, key, &s), Verdict::Purged, "{key}");
    }
    assert_eq!(judge(&book, 1, "example.com/fo?o", &s), Verdict::Keep);
}

#[test]
fn purge_wins_over_invalidate_and_invalidation_carries_its_time() {
    let book = PurgeBook::default();
    let s = stored("t", None, &[]);
    book.apply(&[rule(3, PurgeAction::Invalidate, PurgeTarget::Tag("t".into()))]);
    let inv = Invalidation { revision: 3, at: Timestamp::from_micros(5_000_000) };
    assert_eq!(judge(&book, 1, "example.com/", &s), Verdict::Invalidated(inv));
    book.apply(&[rule(4, PurgeAction::Purge, PurgeTarget::Everything)]);
    assert_eq!(judge(&book, 1, "example.com/", &s), Verdict::Purged);
    assert_eq!(judge(&book, 3, "example.com/", &s), Verdict::Purged);
    assert_eq!(judge(&book, 4, "example.com/", &s), Verdict::Keep);
}

#[test]
fn a_url_with_headers_targets_the_variant_they_select() {
    let book = PurgeBook::default();
    let url = "example.com/page".to_string();
    book.apply(&[rule(
        2,
        PurgeAction::Purge,
        PurgeTarget::File { url: url.clone(), headers: vec![("accept-language".into(), "fr".into())] },
    )]);
    let fr = stored("", Some("accept-language"), &[("accept-language", "fr")]);
    let en = stored("", Some("accept-language"), &[("accept-language", "en")]);
    assert_eq!(judge(&book, 1, "example.com/page", &fr), Verdict::Purged);
    assert_eq!(judge(&book, 1, "example.com/page", &en), Verdict::Keep);
    // A copy keyed by `Origin` is another variant: the headers did not name that Origin.
    assert_eq!(judge(&book, 1, "example.com/page origin=https://a", &fr), Verdict::Keep);
}

#[test]
fn past_the_variant_bound_a_url_rule_targets_every_variant() {
    let book = PurgeBook::default();
    let en = stored("", Some("accept-language"), &[("accept-language", "en")]);
    let headers = |i: usize| vec![("accept-language".to_string(), format!("x{i}"))];
    let url = "example.com/v".to_string();
    for i in 0..MAX_VARIANTS {
        let target = PurgeTarget::File { url: url.clone(), headers: headers(i) };
        book.apply(&[rule(2, PurgeAction::Purge, target)]);
    }
    assert_eq!(judge(&book, 1, "example.com/v", &en), Verdict::Keep, "within the bound: only those variants");
    book.apply(&[rule(3, PurgeAction::Purge, PurgeTarget::File { url, headers: headers(MAX_VARIANTS) })]);
    assert_eq!(judge(&book, 1, "example.com/v", &en), Verdict::Purged, "beyond it: every variant");
}

#[test]
fn retiring_forgets_rules_up_to_a_revision_but_not_the_latest() {
    let book = PurgeBook::default();
    let s = stored("t", None, &[]);
    let key = "example.com/img/a";
    book.apply(&[
        rule(2, PurgeAction::Purge, PurgeTarget::Prefix("example.com/img".into())),
        rule(3, PurgeAction::Invalidate, PurgeTarget::Tag("t".into())),
        rule(4, PurgeAction::Purge, PurgeTarget::File { url: key.into(), headers: vec![] }),
        rule(5, PurgeAction::Purge, PurgeTarget::Host("other.example.com".into())),
    ]);
    assert_eq!(book.len(), 4);
    book.retire(3);
    assert_eq!(book.len(), 2, "the prefix and the tag are gone");
    assert_eq!(judge(&book, 1, key, &s), Verdict::Purged, "the file rule stays");
    assert_eq!(judge(&book, 1, "example.com/img/b", &s), Verdict::Keep);
    book.retire(5);
    assert!(book.is_empty());
    assert!(!book.land(&zone(), 4, || true), "a fill from before a retired rule still does not land");
    book.raise_latest(&zone(), 9);
    assert!(!book.land(&zone(), 8, || true));
}

#[test]
fn a_carried_invalidation_applies_to_older_fills_and_never_undoes_a_purge() {
    let inv = Invalidation { revision: 4, at: Timestamp::from_micros(1) };
    assert_eq!(Verdict::Keep.carried(Some(inv), 3), Verdict::Invalidated(inv));
    assert_eq!(Verdict::Keep.carried(Some(inv), 4), Verdict::Keep);
    assert_eq!(Verdict::Purged.carried(Some(inv), 3), Verdict::Purged);
    let later = Invalidation { revision: 6, at: Timestamp::from_micros(9) };
    assert_eq!(Verdict::Invalidated(later).carried(Some(inv), 3), Verdict::Invalidated(later));
}

#[test]
fn fills_from_before_the_latest_rule_do_not_land() {
    let book = PurgeBook::default();
    assert!(book.land(&zone(), 0, || true));
    book.apply(&[rule(7, PurgeAction::Invalidate, PurgeTarget::Host("example.com".into()))]);
    assert!(!book.land(&zone(), 6, || panic!("landed")));
    assert!(book.land(&zone(), 7, || true));
}

#[test]
fn a_purge_by_url_reaches_the_copies_of_both_schemes() {
    let book = PurgeBook::default();
    let plain = stored("", None, &[]);
    let origin_a = vec![("origin".to_string(), "https://a".to_string())];
    book.apply(&[
        rule(2, PurgeAction::Purge, PurgeTarget::File { url: "example.com/all".into(), headers: vec![] }),
        rule(3, PurgeAction::Purge, PurgeTarget::File { url: "example.com/one".into(), headers: origin_a }),
        rule(4, PurgeAction::Purge, PurgeTarget::Prefix("example.com/pre".into())),
    ]);
    for key in ["example.com/all", "example.com/all https", "example.com/all https origin=https://a"] {
        assert_eq!(judge(&book, 1, key, &plain), Verdict::Purged, "{key}");
    }
    assert_eq!(judge(&book, 1, "example.com/one https origin=https://a", &plain), Verdict::Purged);
    assert_eq!(judge(&book, 1, "example.com/one origin=https://a", &plain), Verdict::Purged);
    assert_eq!(judge(&book, 1, "example.com/one https", &plain), Verdict::Keep);
    assert_eq!(judge(&book, 1, "example.com/prefix https", &plain), Verdict::Purged);
}
