/* test_router_prefs.c - the router's preferences cache: hits, TTL, LRU
 * eviction, newest-wins between PostgreSQL and the crm.preferences feed, the
 * epoch that keeps a racing lookup from undoing the feed, tombstones, shared
 * snapshots, and unreadable rows. (The SQL runs against a real PostgreSQL in
 * tests/integration/test_router_prefs.c.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/time.h"
#include "router_prefs.h"

/* A snapshot of client c updated at the given RFC 3339 instant, opted out of
 * SMS when sms_out. */
static router_prefs_ref_t *snap(const char *tenant, const char *client, const char *updated_at, int sms_out)
{
    char json[512];
    router_prefs_ref_t *ref = NULL;
    snprintf(json, sizeof json,
             "{\"v\":1,\"tenant_id\":\"%s\",\"client_id\":\"%s\",\"updated_at\":\"%s\",\"opt_out\":{\"sms\":%s}}",
             tenant, client, updated_at, sms_out ? "true" : "false");
    cr_assert_eq(router_prefs_parse(json, strlen(json), &ref), 0, "%s", json);
    cr_assert_not_null(ref);
    return ref;
}

static int sms_out(const router_prefs_ref_t *ref)
{
    return cmn_preferences_opted_out(router_prefs_get(ref), CMN_CHANNEL_SMS);
}

Test(router_prefs, miss_then_hit_and_known_absence)
{
    router_prefs_cache_t *c = router_prefs_cache_new(10, 1000);
    router_prefs_ref_t *out = NULL;
    cr_assert_not_null(c);
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 100, &out), 0);
    cr_expect_null(out);

    router_prefs_ref_t *a = snap("t", "a", "2026-01-01T00:00:00Z", 1);
    uint64_t since = router_prefs_cache_epoch(c);
    router_prefs_ref_t *winner = NULL;
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", a, since, 100, &winner), 0);
    cr_expect_eq(winner, a);
    router_prefs_ref_release(winner);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "b", NULL, since, 100, &winner), 0);
    cr_expect_null(winner, "no row: known to have none");

    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 500, &out), 1);
    cr_expect(out == a && sms_out(out));
    router_prefs_ref_release(out);
    cr_expect_eq(router_prefs_cache_get(c, "t", "b", 500, &out), 1, "a known absence is a hit");
    cr_expect_null(out);
    cr_expect_eq(router_prefs_cache_get(c, "u", "a", 500, &out), 0, "tenants are separate");
    cr_expect_eq(router_prefs_cache_size(c), 2);

    /* TTL: 1000 ms after loading, the entry must be read again. */
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 1099, &out), 1);
    router_prefs_ref_release(out);
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 1100, &out), 0);
    cr_expect_null(out);

    router_prefs_ref_release(a);
    router_prefs_cache_destroy(c);
}

Test(router_prefs, least_recently_used_goes_first)
{
    router_prefs_cache_t *c = router_prefs_cache_new(2, 100000);
    router_prefs_ref_t *out = NULL;
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", NULL, 0, 1, NULL), 0);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "b", NULL, 0, 1, NULL), 0);
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 2, &out), 1, "a is now the most recent");
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "c", NULL, 0, 3, NULL), 0);
    cr_expect_eq(router_prefs_cache_size(c), 2);
    cr_expect_eq(router_prefs_cache_get(c, "t", "b", 4, &out), 0, "b was evicted");
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 4, &out), 1);
    cr_expect_eq(router_prefs_cache_get(c, "t", "c", 4, &out), 1);
    router_prefs_cache_destroy(c);
}

Test(router_prefs, the_feed_replaces_and_newest_wins)
{
    router_prefs_cache_t *c = router_prefs_cache_new(10, 100000);
    router_prefs_ref_t *old = snap("t", "a", "2026-01-01T00:00:00Z", 0);
    router_prefs_ref_t *newer = snap("t", "a", "2026-02-01T00:00:00Z", 1);
    router_prefs_ref_t *out = NULL;

    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", old, router_prefs_cache_epoch(c), 1, NULL), 0);
    cr_expect_eq(router_prefs_cache_apply(c, NULL, NULL, newer, 2), 1);
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 3, &out), 1);
    cr_expect_eq(out, newer);
    router_prefs_ref_release(out);

    /* An older record (a late producer) changes nothing. */
    cr_expect_eq(router_prefs_cache_apply(c, NULL, NULL, old, 4), 0);
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 5, &out), 1);
    cr_expect_eq(out, newer);
    router_prefs_ref_release(out);

    /* Nor does an older row from a projection that lags, even loaded later. */
    router_prefs_ref_t *winner = NULL;
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", old, router_prefs_cache_epoch(c), 6, &winner), 0);
    cr_expect_eq(winner, newer);
    router_prefs_ref_release(winner);

    /* The feed may write a client the cache never held. */
    router_prefs_ref_t *b = snap("t", "b", "2026-01-01T00:00:00Z", 1);
    cr_expect_eq(router_prefs_cache_apply(c, NULL, NULL, b, 7), 1);
    cr_expect_eq(router_prefs_cache_get(c, "t", "b", 8, &out), 1);
    cr_expect_eq(out, b);
    router_prefs_ref_release(out);

    router_prefs_ref_release(old);
    router_prefs_ref_release(newer);
    router_prefs_ref_release(b);
    router_prefs_cache_destroy(c);
}

/* A batch takes the epoch, queries PostgreSQL (which still has the old row:
 * the projector lags), and meanwhile the feed applies the client's change.
 * The query's answer must not undo the change. */
Test(router_prefs, a_lookup_racing_with_the_feed_does_not_undo_it)
{
    router_prefs_cache_t *c = router_prefs_cache_new(10, 100000);
    /* The same updated_at on purpose: only the epoch can tell them apart. */
    router_prefs_ref_t *row = snap("t", "a", "2026-01-01T00:00:00Z", 0);
    router_prefs_ref_t *fed = snap("t", "a", "2026-01-01T00:00:00Z", 1);
    router_prefs_ref_t *out = NULL, *winner = NULL;

    uint64_t since = router_prefs_cache_epoch(c);
    cr_expect_eq(router_prefs_cache_apply(c, NULL, NULL, fed, 1), 1);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", row, since, 2, &winner), 0);
    cr_expect_eq(winner, fed, "the feed's record wins over a query that started before it");
    router_prefs_ref_release(winner);

    /* A query started after the feed's change is trusted as usual. */
    since = router_prefs_cache_epoch(c);
    router_prefs_ref_t *later = snap("t", "a", "2026-03-01T00:00:00Z", 0);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", later, since, 3, &winner), 0);
    cr_expect_eq(winner, later);
    router_prefs_ref_release(winner);

    /* A tombstone leaves "none", which a racing query cannot refill. */
    since = router_prefs_cache_epoch(c);
    cr_expect_eq(router_prefs_cache_apply(c, "t", "a", NULL, 4), 1);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "a", row, since, 5, &winner), 0);
    cr_expect_null(winner, "the erased client stays erased");
    cr_expect_eq(router_prefs_cache_get(c, "t", "a", 6, &out), 1);
    cr_expect_null(out);

    router_prefs_ref_release(row);
    router_prefs_ref_release(fed);
    router_prefs_ref_release(later);
    router_prefs_cache_destroy(c);
}

/* A batch keeps using the snapshot it took while the feed replaces it. */
Test(router_prefs, snapshots_outlive_their_replacement)
{
    router_prefs_cache_t *c = router_prefs_cache_new(1, 100000);
    router_prefs_ref_t *a = snap("t", "a", "2026-01-01T00:00:00Z", 1);
    router_prefs_ref_t *held = NULL;
    cr_assert_eq(router_prefs_cache_apply(c, NULL, NULL, a, 1), 1);
    router_prefs_ref_release(a);
    cr_assert_eq(router_prefs_cache_get(c, "t", "a", 2, &held), 1);
    cr_assert_eq(router_prefs_cache_apply(c, "t", "a", NULL, 3), 1);
    cr_assert_eq(router_prefs_cache_put_loaded(c, "t", "z", NULL, 0, 4, NULL), 0); /* evicts a's entry */
    cr_expect_str_eq(router_prefs_get(held)->client_id, "a");
    cr_expect(sms_out(held));
    router_prefs_ref_release(held);
    router_prefs_cache_destroy(c);
}

Test(router_prefs, unreadable_snapshots_refuse_every_channel)
{
    router_prefs_ref_t *ref = NULL;
    cr_expect_eq(router_prefs_parse("{\"v\":2,\"client_id\":\"a\"}", 24, &ref), CMN_ERR_INVALID);
    cr_expect_null(ref);
    cr_expect_eq(router_prefs_parse("not json", 8, &ref), CMN_ERR_INVALID);
    ref = router_prefs_refuse_all("t", "a");
    cr_assert_not_null(ref);
    for (int ch = 0; ch < CMN_CHANNEL__COUNT; ch++)
        cr_expect(cmn_preferences_opted_out(router_prefs_get(ref), (cmn_channel_t)ch), "channel %d", ch);
    cr_expect_str_eq(router_prefs_get(ref)->tenant_id, "t");
    router_prefs_ref_release(ref);
}

Test(router_prefs, bad_arguments)
{
    cr_expect_null(router_prefs_cache_new(0, 1000));
    cr_expect_null(router_prefs_cache_new(10, 0));
    router_prefs_ref_t *out = (router_prefs_ref_t *)1;
    cr_expect_eq(router_prefs_cache_get(NULL, "t", "a", 1, &out), 0);
    cr_expect_null(out);
    router_prefs_cache_destroy(NULL);
    router_prefs_ref_release(NULL);
    cr_expect_null(router_prefs_ref_keep(NULL));
}
