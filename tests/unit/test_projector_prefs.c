/* test_projector_prefs.c - the crm.preferences projection's batch logic
 * (services/projector/projector_prefs.h): validation against the key,
 * canonical snapshots, the in-batch fold (newest wins, later offset on a
 * tie, a tombstone erases what came before) and the statements' arrays. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "projector_prefs.h"

#define SNAP(tenant, client, extra, at)                                                                         \
    "{\"tenant_id\":\"" tenant "\",\"client_id\":\"" client "\"" extra ",\"updated_at\":\"" at "\"}"

static int stage(projector_prefs_batch_t *b, const char *key, const char *value, int64_t offset, char *why,
                 size_t whylen)
{
    return projector_prefs_stage(b, key, strlen(key), value, value != NULL ? strlen(value) : 0, 3, offset, why,
                                 whylen);
}

static void upsert_cols(projector_prefs_batch_t *b, cmn_buf_t cols[6], size_t *n)
{
    for (int i = 0; i < 6; i++)
        cols[i] = (cmn_buf_t)CMN_BUF_INIT;
    cr_assert_eq(projector_prefs_upsert_params(b, cols, n), 0);
}

static void free_cols(cmn_buf_t *cols, int n)
{
    for (int i = 0; i < n; i++)
        cmn_buf_free(&cols[i]);
}

Test(projector_prefs, snapshot_is_staged_in_canonical_form)
{
    projector_prefs_batch_t b = {0};
    char why[256] = "";
    cr_assert_eq(stage(&b, "acme:c-1", SNAP("acme", "c-1", ",\"locale\":\"pt-br\"", "2026-03-02T11:00:00Z"), 7, why,
                       sizeof why),
                 0, "%s", why);
    cmn_buf_t cols[6];
    size_t n = 0;
    upsert_cols(&b, cols, &n);
    cr_expect_eq(n, 1);
    cr_expect_str_eq(cols[0].data, "{\"acme\"}");
    cr_expect_str_eq(cols[1].data, "{\"c-1\"}");
    cr_expect_str_eq(cols[2].data,
                     "{\"{\\\"v\\\":1,\\\"tenant_id\\\":\\\"acme\\\",\\\"client_id\\\":\\\"c-1\\\","
                     "\\\"preferred_channels\\\":[],\\\"opt_out\\\":{\\\"email\\\":false,\\\"sms\\\":false,"
                     "\\\"whatsapp\\\":false},\\\"locale\\\":\\\"pt-BR\\\","
                     "\\\"updated_at\\\":\\\"2026-03-02T11:00:00.000Z\\\"}\"}");
    cr_expect_str_eq(cols[3].data, "{1772449200000}");
    cr_expect_str_eq(cols[4].data, "{3}");
    cr_expect_str_eq(cols[5].data, "{7}");
    free_cols(cols, 6);
    cmn_buf_t del[2] = {CMN_BUF_INIT, CMN_BUF_INIT};
    cr_assert_eq(projector_prefs_delete_params(&b, &del[0], &del[1], &n), 0);
    cr_expect_eq(n, 0);
    cr_expect_str_eq(del[0].data, "{}");
    free_cols(del, 2);
    projector_prefs_free(&b);
}

Test(projector_prefs, newest_wins_and_a_tie_goes_to_the_later_offset)
{
    projector_prefs_batch_t b = {0};
    char why[256];
    cr_assert_eq(stage(&b, "t:c", SNAP("t", "c", ",\"locale\":\"fr\"", "2026-01-01T00:00:02Z"), 1, why, sizeof why), 0);
    cr_assert_eq(stage(&b, "t:c", SNAP("t", "c", ",\"locale\":\"de\"", "2026-01-01T00:00:01Z"), 2, why, sizeof why), 0);
    cr_assert_eq(stage(&b, "t:c", SNAP("t", "c", ",\"locale\":\"it\"", "2026-01-01T00:00:02Z"), 3, why, sizeof why), 0);
    cr_assert_eq(b.n, 1);
    cr_expect_not_null(strstr(b.items[0].snapshot, "\"it\""), "%s", b.items[0].snapshot);
    cr_expect_eq(b.items[0].offset, 3);
    cr_expect_eq(b.records, 3);
    projector_prefs_free(&b);
}

Test(projector_prefs, tombstone_erases_what_came_before_in_the_batch)
{
    projector_prefs_batch_t b = {0};
    char why[256];
    cr_assert_eq(stage(&b, "t:c", SNAP("t", "c", "", "2026-01-01T00:00:09Z"), 1, why, sizeof why), 0);
    cr_assert_eq(stage(&b, "t:c", NULL, 2, why, sizeof why), 0);
    cr_assert_eq(b.n, 1);
    cr_expect(b.items[0].deleted);
    cr_expect_null(b.items[0].snapshot);
    /* An older snapshot after the tombstone still counts: the row is gone. */
    cr_assert_eq(stage(&b, "t:c", SNAP("t", "c", "", "2026-01-01T00:00:01Z"), 3, why, sizeof why), 0);
    cr_assert_eq(stage(&b, "t:d", NULL, 4, why, sizeof why), 0);
    cmn_buf_t del[2] = {CMN_BUF_INIT, CMN_BUF_INIT};
    size_t n = 0;
    cr_assert_eq(projector_prefs_delete_params(&b, &del[0], &del[1], &n), 0);
    cr_expect_eq(n, 2);
    cr_expect_str_eq(del[0].data, "{\"t\",\"t\"}");
    cr_expect_str_eq(del[1].data, "{\"c\",\"d\"}");
    free_cols(del, 2);
    cmn_buf_t cols[6];
    upsert_cols(&b, cols, &n);
    cr_expect_eq(n, 1);
    cr_expect_str_eq(cols[5].data, "{3}");
    free_cols(cols, 6);
    /* A reset batch is empty and reusable. */
    projector_prefs_reset(&b);
    cr_expect_eq(b.n, 0);
    cr_assert_eq(stage(&b, "t:c", NULL, 5, why, sizeof why), 0);
    cr_expect_eq(b.n, 1);
    projector_prefs_free(&b);
}

Test(projector_prefs, invalid_records_are_refused_with_the_reason)
{
    projector_prefs_batch_t b = {0};
    char why[512];
    cr_expect_eq(stage(&b, "t:c", "{not json", 1, why, sizeof why), CMN_ERR_PARSE);
    cr_expect_not_null(strstr(why, "not JSON"), "%s", why);
    cr_expect_eq(stage(&b, "t:c", "", 1, why, sizeof why), CMN_ERR_PARSE);
    cr_expect_eq(stage(&b, "t:c", SNAP("t", "c", ",\"timezone\":\"Mars/Base\",\"opt_out\":{\"sms\":1}",
                                       "2026-01-01T00:00:00Z"),
                       1, why, sizeof why),
                 CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "timezone"), "%s", why);
    cr_expect_not_null(strstr(why, "opt_out.sms"), "%s", why);
    cr_expect_eq(stage(&b, "t:c", "{\"tenant_id\":\"t\",\"client_id\":\"c\"}", 1, why, sizeof why),
                 CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "updated_at"), "%s", why);
    cr_expect_eq(stage(&b, "t:other", SNAP("t", "c", "", "2026-01-01T00:00:00Z"), 1, why, sizeof why),
                 CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "key"), "%s", why);
    cr_expect_eq(stage(&b, "no-colon", NULL, 1, why, sizeof why), CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "key"), "%s", why);
    cr_expect_eq(projector_prefs_stage(&b, NULL, 0, NULL, 0, 0, 1, why, sizeof why), CMN_ERR_INVALID);
    cr_expect_eq(b.n, 0, "nothing invalid is staged");
    cr_expect_eq(b.records, 0);
    projector_prefs_free(&b);
}
