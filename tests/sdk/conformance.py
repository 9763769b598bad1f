"""Drives a cache-reserve server with Cloudflare's official Python SDK (cloudflare==5.9.0).

Usage: conformance.py BASE_URL ZONE_NAME WRITE_TOKEN READ_TOKEN EMAIL GLOBAL_KEY PURGE_TOKEN
Exits non-zero on the first failed check; prints 'N passed, 0 failed' at the end.
"""

import sys
import time

import cloudflare
from cloudflare import BadRequestError, PermissionDeniedError

base_url, zone_name, write_token, read_token, email, global_key, purge_token = sys.argv[1:8]
passed = 0


def check(name, cond, detail=""):
    global passed
    if not cond:
        print(f"FAIL {name}: {detail}", file=sys.stderr)
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")


def expect_error(name, fn, exc, code):
    try:
        fn()
    except exc as e:
        codes = [err.get("code") for err in (e.body or {}).get("errors", [])] if isinstance(e.body, dict) else []
        check(name, code in codes and e.status_code in (400, 403), f"status {e.status_code}, codes {codes}")
        return
    except Exception as e:  # noqa: BLE001
        check(name, False, f"raised {type(e).__name__}: {e}")
    check(name, False, "no error raised")


# max_retries=0: a retried request would hide a 5xx or 409.
client = cloudflare.Cloudflare(api_token=write_token, base_url=base_url, max_retries=0)
reader = cloudflare.Cloudflare(api_token=read_token, base_url=base_url, max_retries=0)
by_key = cloudflare.Cloudflare(api_email=email, api_key=global_key, base_url=base_url, max_retries=0)
purger = cloudflare.Cloudflare(api_token=purge_token, base_url=base_url, max_retries=0)

zones = list(client.zones.list(name=zone_name))
check("zones.list(name=) finds the zone", len(zones) == 1 and zones[0].name == zone_name, zones)
zone_id = zones[0].id

verified = client.user.tokens.verify()
check("user.tokens.verify", verified.status == "active", verified)

setting = client.cache.cache_reserve.get(zone_id=zone_id)
check("cache_reserve.get defaults to off", setting.value == "off" and setting.id == "cache_reserve", setting)

expect_error("status before any clear is 1142", lambda: client.cache.cache_reserve.status(zone_id=zone_id), BadRequestError, 1142)

on = client.cache.cache_reserve.edit(zone_id=zone_id, value="on")
check("cache_reserve.edit on", on.value == "on", on)

expect_error("clear while on is 1152", lambda: client.cache.cache_reserve.clear(zone_id=zone_id), BadRequestError, 1152)
expect_error("reader cannot edit (10000)", lambda: reader.cache.cache_reserve.edit(zone_id=zone_id, value="off"), PermissionDeniedError, 10000)

off = client.cache.cache_reserve.edit(zone_id=zone_id, value="off")
check("cache_reserve.edit off", off.value == "off", off)

started = client.cache.cache_reserve.clear(zone_id=zone_id)
check("clear starts In-progress", started.state in ("In-progress", "Completed") and started.start_ts is not None, started)
check("clear start_ts is a datetime with a timezone", started.start_ts.tzinfo is not None, started.start_ts)

expect_error("edit on during clear is 1153", lambda: client.cache.cache_reserve.edit(zone_id=zone_id, value="on"), BadRequestError, 1153)

deadline = time.time() + 60
status = reader.cache.cache_reserve.status(zone_id=zone_id)
while status.state != "Completed" and time.time() < deadline:
    time.sleep(0.1)
    status = reader.cache.cache_reserve.status(zone_id=zone_id)
check("status reaches Completed with end_ts", status.state == "Completed" and status.end_ts is not None, status)
check("status keeps start_ts", status.start_ts == started.start_ts, (status.start_ts, started.start_ts))

again = by_key.cache.cache_reserve.clear(zone_id=zone_id)
check("global key starts a new clear", again.start_ts > started.start_ts, again)
on_key = by_key.cache.cache_reserve.get(zone_id=zone_id)
check("global key reads the setting", on_key.value == "off", on_key)

# Purge and invalidate (SPEC §10): every selector, through the SDK's own methods.
site = f"https://{zone_name}"
for name, kwargs in [
    ("files", {"files": [f"{site}/a", f"{site}/b?x=1"]}),
    ("files with headers", {"files": [{"url": f"{site}/a", "headers": {"Origin": "https://app.example"}}]}),
    ("tags", {"tags": ["Product-1", "sale"]}),
    ("hosts", {"hosts": [zone_name, f"static.{zone_name}"]}),
    ("prefixes", {"prefixes": [f"{zone_name}/assets/"]}),
    ("purge_everything", {"purge_everything": True}),
]:
    purged = purger.cache.purge(zone_id=zone_id, **kwargs)
    check(f"cache.purge({name}) returns the zone id", purged is not None and purged.id == zone_id, purged)
    invalidated = purger.cache.invalidate(zone_id=zone_id, **kwargs)
    check(f"cache.invalidate({name}) returns the zone id", invalidated is not None and invalidated.id == zone_id, invalidated)
expect_error("purge with no selector is 1012", lambda: purger.cache.purge(zone_id=zone_id), BadRequestError, 1012)
expect_error("purge of a bare path is refused", lambda: purger.cache.purge(zone_id=zone_id, files=["/a"]), BadRequestError, 1016)
expect_error("settings permissions do not purge (10000)", lambda: client.cache.purge(zone_id=zone_id, tags=["x"]), PermissionDeniedError, 10000)
by_key_purge = by_key.cache.purge(zone_id=zone_id, tags=["x"])
check("global key purges", by_key_purge.id == zone_id, by_key_purge)

# Zones created and deleted as Terraform and the SDK's zones.create do (issue #12 B8).
account_id = zones[0].account.id
new_name = f"new.{zone_name}"
created = by_key.zones.create(account={"id": account_id}, name=new_name, type="full")
check("zones.create with the global key", created.name == new_name and len(created.id) == 32, created)
expect_error("zones.create of a taken name is 1061", lambda: by_key.zones.create(account={"id": account_id}, name=new_name, type="full"), BadRequestError, 1061)
expect_error("a token scoped to some zones cannot create (10000)", lambda: client.zones.create(account={"id": account_id}, name="other.example", type="full"), PermissionDeniedError, 10000)
deleted = by_key.zones.delete(zone_id=created.id)
check("zones.delete returns the zone id", deleted is not None and deleted.id == created.id, deleted)
expect_error("a deleted zone is 7003", lambda: by_key.zones.get(zone_id=created.id), BadRequestError, 7003)
again = by_key.zones.create(account={"id": account_id}, name=new_name, type="full")
check("a deleted zone's name can be created again", again.id != created.id and again.name == new_name, again)

bad_id = "0" * 32
expect_error("unknown zone is 7003", lambda: client.cache.cache_reserve.get(zone_id=bad_id), BadRequestError, 7003)

print(f"{passed} passed, 0 failed")
