/* Unit tests of the pure parts of `crmctl dlq` (crmctl_dlq.h): argument
 * parsing, --since, the filter, the replay target check, the
 * communication_id lookup and the replayed marks. */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/err.h"
#include "crm/time.h"
#include "crmctl_dlq.h"

#define NOW 1767225600000LL /* 2026-01-01T00:00:00Z */

static int parse(crmctl_dlq_opts_t *o, char *err, size_t errlen, const char *a1, const char *a2, const char *a3,
                 const char *a4, const char *a5)
{
    char *argv[8] = {"dlq", (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL, NULL};
    int argc = 1;
    while (argv[argc] != NULL)
        argc++;
    return crmctl_dlq_parse_args(argc, argv, NOW, o, err, errlen);
}

Test(crmctl_dlq_args, list_takes_its_flags)
{
    crmctl_dlq_opts_t o;
    char err[256] = "";
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--reason", "schema", "--limit", "5"), 0, "%s", err);
    cr_assert_eq(o.replay, 0);
    cr_assert_str_eq(o.filter.reason, "schema");
    cr_assert_eq(o.limit, 5);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--json", "--show-value", "--source-topic", "crm.requests"), 0);
    cr_assert(o.json && o.show_value);
    cr_assert_str_eq(o.filter.source_topic, "crm.requests");
    cr_assert_eq(o.filter.since_ms, 0);
}

Test(crmctl_dlq_args, replay_takes_its_flags_and_not_the_list_ones)
{
    crmctl_dlq_opts_t o;
    char err[256] = "";
    cr_assert_eq(parse(&o, err, sizeof(err), "replay", "--dry-run", "--all", "--since", "2h"), 0, "%s", err);
    cr_assert(o.replay && o.dry_run && o.all);
    cr_assert_eq(o.filter.since_ms, NOW - 2 * 3600000LL);
    cr_assert_eq(parse(&o, err, sizeof(err), "replay", "--json", NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_not_null(strstr(err, "--json"), "%s", err);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--dry-run", NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--all", NULL, NULL, NULL), CMN_ERR_INVALID);
}

Test(crmctl_dlq_args, bad_input_names_the_flag)
{
    crmctl_dlq_opts_t o;
    char err[256] = "";
    cr_assert_eq(parse(&o, err, sizeof(err), NULL, NULL, NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "purge", NULL, NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--limit", "0", NULL, NULL), CMN_ERR_INVALID);
    cr_assert_not_null(strstr(err, "--limit"));
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--limit", "-3", NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--limit", "5x", NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--reason", NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_not_null(strstr(err, "--reason"));
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--reason", "", NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "list", "--source-topic", NULL, NULL, NULL), CMN_ERR_INVALID);
    cr_assert_eq(parse(&o, err, sizeof(err), "replay", "--since", "soon", NULL, NULL), CMN_ERR_INVALID);
    cr_assert_not_null(strstr(err, "--since"));
}

Test(crmctl_dlq_since, takes_rfc3339_and_durations)
{
    int64_t t = 0;
    cr_assert_eq(crmctl_dlq_parse_since("2025-12-31T23:00:00Z", NOW, &t), 0);
    cr_assert_eq(t, NOW - 3600000LL);
    cr_assert_eq(crmctl_dlq_parse_since("90s", NOW, &t), 0);
    cr_assert_eq(t, NOW - 90000);
    cr_assert_eq(crmctl_dlq_parse_since("15m", NOW, &t), 0);
    cr_assert_eq(t, NOW - 15 * 60000);
    cr_assert_eq(crmctl_dlq_parse_since("7d", NOW, &t), 0);
    cr_assert_eq(t, NOW - 7 * 86400000LL);
    cr_assert_eq(crmctl_dlq_parse_since("1d12h30m", NOW, &t), 0);
    cr_assert_eq(t, NOW - (86400000LL + 12 * 3600000LL + 30 * 60000LL));
}

Test(crmctl_dlq_since, refuses_what_is_not_a_time)
{
    int64_t t = 42;
    const char *bad[] = {"", "h", "5", "5x", "-5m", "5 m", "0s", "1.5h", "999999999999d", "yesterday", "2h-", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        cr_assert_eq(crmctl_dlq_parse_since(bad[i], NOW, &t), CMN_ERR_INVALID, "'%s'", bad[i]);
    cr_assert_eq(t, 42, "nothing written on failure");
    cr_assert_eq(crmctl_dlq_parse_since(NULL, NOW, &t), CMN_ERR_INVALID);
}

Test(crmctl_dlq_filter, reason_is_a_case_insensitive_substring)
{
    crmctl_dlq_filter_t f = {.reason = "SCHEMA"};
    const char *r = "schema: missing channel";
    cr_assert(crmctl_dlq_matches(&f, r, strlen(r), NULL, 0, NOW));
    cr_assert_not(crmctl_dlq_matches(&f, "schem", 5, NULL, 0, NOW));
    cr_assert_not(crmctl_dlq_matches(&f, NULL, 0, NULL, 0, NOW), "no reason header: no match");
    /* Header values are not NUL-terminated: only len bytes count. */
    cr_assert_not(crmctl_dlq_matches(&f, "xx schema", 5, NULL, 0, NOW));
}

Test(crmctl_dlq_filter, source_topic_is_exact_and_since_bounds_time)
{
    crmctl_dlq_filter_t f = {.source_topic = "crm.requests"};
    cr_assert(crmctl_dlq_matches(&f, NULL, 0, "crm.requests", 12, NOW));
    cr_assert_not(crmctl_dlq_matches(&f, NULL, 0, "crm.requests.x", 14, NOW));
    cr_assert_not(crmctl_dlq_matches(&f, NULL, 0, "crm.request", 11, NOW));
    cr_assert_not(crmctl_dlq_matches(&f, NULL, 0, NULL, 0, NOW));
    crmctl_dlq_filter_t s = {.since_ms = NOW};
    cr_assert(crmctl_dlq_matches(&s, NULL, 0, NULL, 0, NOW));
    cr_assert_not(crmctl_dlq_matches(&s, NULL, 0, NULL, 0, NOW - 1));
    cr_assert(crmctl_dlq_matches(NULL, NULL, 0, NULL, 0, 0), "no filter passes everything");
}

Test(crmctl_dlq_target, only_engine_topics_other_than_the_dlq)
{
    const char *ok[] = {"crm.requests", "crm.send.email", "crm.retry.sms.30s", "crm.defer.1h", "crm.preferences",
                        "crm.status", NULL};
    for (size_t i = 0; ok[i] != NULL; i++)
        cr_assert(crmctl_dlq_target_ok(ok[i], strlen(ok[i])), "%s", ok[i]);
    const char *bad[] = {"crm.dlq", "billing.events", "crm.send.fax", "crm.requests ", "", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        cr_assert_not(crmctl_dlq_target_ok(bad[i], strlen(bad[i])), "'%s'", bad[i]);
    cr_assert_not(crmctl_dlq_target_ok(NULL, 0));
    cr_assert(crmctl_dlq_target_ok("crm.requestsXYZ", 12), "only len bytes count");
}

Test(crmctl_dlq_cid, reads_a_top_level_string)
{
    char out[64];
    const char *v = "{\"communication_id\":\"c-1\",\"x\":1}";
    crmctl_dlq_communication_id(v, strlen(v), out, sizeof(out));
    cr_assert_str_eq(out, "c-1");
    const char *none[] = {"not json", "[1,2]", "{\"communication_id\":7}", "{\"a\":{\"communication_id\":\"c\"}}",
                          "", NULL};
    for (size_t i = 0; none[i] != NULL; i++) {
        crmctl_dlq_communication_id(none[i], strlen(none[i]), out, sizeof(out));
        cr_assert_str_eq(out, "", "%s", none[i]);
    }
    crmctl_dlq_communication_id(NULL, 0, out, sizeof(out));
    cr_assert_str_eq(out, "");
}

Test(crmctl_dlq_marks, adding_merges_ranges_and_advances_the_watermark)
{
    crmctl_dlq_marks_t m;
    cr_assert_eq(crmctl_dlq_marks_load(&m, -1001, NULL, 0, 0), 0);
    cr_assert_eq(m.next, 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 3), 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 5), 0);
    cr_assert_eq(m.n, 2);
    cr_assert(crmctl_dlq_marks_contains(&m, 3) && crmctl_dlq_marks_contains(&m, 5));
    cr_assert_not(crmctl_dlq_marks_contains(&m, 4));
    cr_assert_eq(crmctl_dlq_marks_add(&m, 4), 0);
    cr_assert_eq(m.n, 1, "3..5 is one range");
    cr_assert_eq(m.ranges[0].lo, 3);
    cr_assert_eq(m.ranges[0].hi, 5);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 0), 0);
    cr_assert_eq(m.next, 1);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 2), 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 1), 0);
    cr_assert_eq(m.next, 6, "0..5 all replayed");
    cr_assert_eq(m.n, 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 2), 0, "adding again changes nothing");
    cr_assert_eq(m.next, 6);
    crmctl_dlq_marks_free(&m);
}

Test(crmctl_dlq_marks, round_trip_through_commit_metadata)
{
    crmctl_dlq_marks_t m, back;
    char meta[CRMCTL_DLQ_MARKS_MAX + 64];
    cr_assert_eq(crmctl_dlq_marks_load(&m, 10, NULL, 0, 0), 0);
    cr_assert_eq(m.next, 10);
    const int64_t offs[] = {12, 13, 14, 20, 31, 30};
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
        cr_assert_eq(crmctl_dlq_marks_add(&m, offs[i]), 0);
    cr_assert_eq(crmctl_dlq_marks_format(&m, meta, sizeof(meta)), 0);
    cr_assert_str_eq(meta, "crmctl-dlq-replay/1 12-14,20-20,30-31");
    cr_assert_eq(crmctl_dlq_marks_load(&back, 10, meta, strlen(meta), 0), 0);
    cr_assert_eq(back.n, 3);
    for (int64_t o = 0; o < 40; o++)
        cr_assert_eq(crmctl_dlq_marks_contains(&back, o), crmctl_dlq_marks_contains(&m, o), "offset %lld",
                     (long long)o);
    crmctl_dlq_marks_free(&back);
    crmctl_dlq_marks_free(&m);
}

Test(crmctl_dlq_marks, foreign_metadata_and_retention_are_handled)
{
    crmctl_dlq_marks_t m;
    const char *foreign = "some other tool's note";
    cr_assert_eq(crmctl_dlq_marks_load(&m, 7, foreign, strlen(foreign), 0), 0);
    cr_assert_eq(m.next, 7);
    cr_assert_eq(m.n, 0, "metadata that is not ours is ignored");
    crmctl_dlq_marks_free(&m);
    const char *broken = "crmctl-dlq-replay/1 12-14,garbage,20-21";
    cr_assert_eq(crmctl_dlq_marks_load(&m, 0, broken, strlen(broken), 0), 0);
    cr_assert(crmctl_dlq_marks_contains(&m, 13));
    cr_assert_not(crmctl_dlq_marks_contains(&m, 20), "parsing stops at the first bad part");
    crmctl_dlq_marks_free(&m);
    /* Records below the log start were deleted by retention: handled. */
    cr_assert_eq(crmctl_dlq_marks_load(&m, 3, "crmctl-dlq-replay/1 8-9", 23, 5), 0);
    cr_assert_eq(m.next, 5);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 5), 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 6), 0);
    cr_assert_eq(crmctl_dlq_marks_add(&m, 7), 0);
    cr_assert_eq(m.next, 10, "5..7 joins 8..9");
    crmctl_dlq_marks_free(&m);
}

Test(crmctl_dlq_marks, format_refuses_marks_longer_than_the_limit)
{
    crmctl_dlq_marks_t m;
    char meta[CRMCTL_DLQ_MARKS_MAX + 64];
    cr_assert_eq(crmctl_dlq_marks_load(&m, 0, NULL, 0, 0), 0);
    int64_t o = 1000000;
    while (crmctl_dlq_marks_format(&m, meta, sizeof(meta)) == 0) {
        cr_assert_eq(crmctl_dlq_marks_add(&m, o), 0);
        o += 2; /* every other offset: one range each */
    }
    cr_assert_eq(crmctl_dlq_marks_format(&m, meta, sizeof(meta)), CMN_ERR_OVERFLOW);
    cr_assert_gt(m.n, 100, "hundreds of gaps fit before the limit (%zu)", m.n);
    cr_assert_eq(crmctl_dlq_marks_format(&m, meta, 16), CMN_ERR_OVERFLOW, "nor longer than the buffer");
    crmctl_dlq_marks_free(&m);
}
