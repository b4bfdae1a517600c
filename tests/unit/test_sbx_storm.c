/* test_sbx_storm.c - provider storms (tools/sandbox-twilio/sbx_storm.h),
 * the Twilio sandbox's scripted status callbacks (sbx_receipts_for) and the
 * ids it reads back from a StatusCallback URL (sbx_callback_ids), which the
 * chaos tests count provider-side duplicates by. */
#include <criterion/criterion.h>
#include <string.h>

#include "sbx_api.h"
#include "sbx_storm.h"

Test(sbx_storm, parses_shares)
{
    sbx_storm_cfg_t c;
    char why[160] = "";
    sbx_storm_cfg_init(&c);
    cr_assert_eq(sbx_storm_parse("500=0.30,429=0.10,timeout=0.05", &c, why, sizeof why), 0, "%s", why);
    cr_expect_float_eq(c.p500, 0.30, 1e-12);
    cr_expect_float_eq(c.p429, 0.10, 1e-12);
    cr_expect_float_eq(c.ptimeout, 0.05, 1e-12);
    cr_expect(sbx_storm_active(&c));
    cr_assert_eq(sbx_storm_parse("429=1", &c, why, sizeof why), 0, "%s", why);
    cr_expect_float_eq(c.p500, 0.0, 1e-12, "keys left out are 0");
    cr_expect_float_eq(c.p429, 1.0, 1e-12);
    cr_assert_eq(sbx_storm_parse("", &c, why, sizeof why), 0);
    cr_expect(!sbx_storm_active(&c), "an empty spec is no storm");
    cr_assert_eq(sbx_storm_parse("500=0.7,429=0.2,timeout=0.1", &c, why, sizeof why), 0,
                 "a sum of exactly 1 despite decimal rounding: %s", why);
}

Test(sbx_storm, refuses_bad_specs_with_the_reason)
{
    sbx_storm_cfg_t c;
    char why[160];
    sbx_storm_cfg_init(&c);
    struct {
        const char *spec, *reason;
    } bad[] = {
        {"404=0.1", "unknown key '404'"},
        {"500", "is not KEY=SHARE"},
        {"500=abc", "not a share"},
        {"500=1.5", "not a share"},
        {"500=-0.1", "not a share"},
        {"500=0.1,500=0.2", "given twice"},
        {"500=0.6,429=0.6", "more than 1"},
        {"500=0.1,", "ends with a comma"},
        {"500= 0.1", "not a share"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_expect_neq(sbx_storm_parse(bad[i].spec, &c, why, sizeof why), 0, "'%s' is refused", bad[i].spec);
        cr_expect(strstr(why, bad[i].reason) != NULL, "'%s': reason '%s' (got '%s')", bad[i].spec, bad[i].reason,
                  why);
    }
}

Test(sbx_storm, configure_reads_every_option)
{
    sbx_storm_cfg_t c;
    char why[200] = "";
    cr_assert_eq(sbx_storm_configure(&c, "500=0.3", "7", "2500", "42", why, sizeof why), 0, "%s", why);
    cr_expect_float_eq(c.p500, 0.3, 1e-12);
    cr_expect_eq(c.retry_after_s, 7);
    cr_expect_eq(c.timeout_ms, 2500);
    cr_expect_eq(c.seed, 42);
    cr_assert_eq(sbx_storm_configure(&c, NULL, NULL, "", NULL, why, sizeof why), 0);
    cr_expect(!sbx_storm_active(&c));
    cr_expect_eq(c.retry_after_s, 1, "defaults");
    cr_expect_eq(c.timeout_ms, 3000);
    cr_expect_eq(c.seed, 1);
    cr_expect_neq(sbx_storm_configure(&c, NULL, "x", NULL, NULL, why, sizeof why), 0);
    cr_expect(strstr(why, "retry-after") != NULL, "%s", why);
    cr_expect_neq(sbx_storm_configure(&c, NULL, NULL, "0", NULL, why, sizeof why), 0);
    cr_expect(strstr(why, "timeout") != NULL, "%s", why);
    cr_expect_neq(sbx_storm_configure(&c, NULL, NULL, NULL, "-1", why, sizeof why), 0);
    cr_expect(strstr(why, "seed") != NULL, "%s", why);
}

Test(sbx_storm, draws_follow_the_shares_and_the_seed)
{
    sbx_storm_cfg_t c;
    char why[160];
    sbx_storm_cfg_init(&c);
    cr_assert_eq(sbx_storm_parse("500=0.30,429=0.10,timeout=0.05", &c, why, sizeof why), 0);
    enum { draws = 100000 };
    int counts[4] = {0, 0, 0, 0};
    uint64_t state = 12345;
    for (int i = 0; i < draws; i++)
        counts[sbx_storm_draw(&c, &state)]++;
    /* Binomial standard deviations are below 0.0015 here; 0.01 is > 6 of them. */
    cr_expect_float_eq((double)counts[SBX_STORM_500] / draws, 0.30, 0.01, "500: %d", counts[SBX_STORM_500]);
    cr_expect_float_eq((double)counts[SBX_STORM_429] / draws, 0.10, 0.01, "429: %d", counts[SBX_STORM_429]);
    cr_expect_float_eq((double)counts[SBX_STORM_TIMEOUT] / draws, 0.05, 0.01, "timeout: %d",
                       counts[SBX_STORM_TIMEOUT]);
    cr_expect_float_eq((double)counts[SBX_STORM_NONE] / draws, 0.55, 0.01, "normal: %d", counts[SBX_STORM_NONE]);

    uint64_t a = 7, b = 7, other = 8;
    int same = 1, differs = 0;
    for (int i = 0; i < 200; i++) {
        sbx_storm_kind_t x = sbx_storm_draw(&c, &a);
        same = same && x == sbx_storm_draw(&c, &b);
        differs = differs || x != sbx_storm_draw(&c, &other);
    }
    cr_expect(same, "one seed, one sequence");
    cr_expect(differs, "another seed, another sequence");

    sbx_storm_cfg_init(&c);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(sbx_storm_draw(&c, &state), SBX_STORM_NONE, "no storm, no storm outcome");
    cr_expect_str_eq(sbx_storm_name(SBX_STORM_TIMEOUT), "timeout");
    cr_expect_str_eq(sbx_storm_name(SBX_STORM_NONE), "");
}

Test(sbx_receipts, scripted_outcomes_by_suffix)
{
    sbx_receipt_t r[SBX_RECEIPTS_MAX];
    size_t n = sbx_receipts_for("+33612330003", 0, r);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(r[0].status, "queued");
    cr_expect_str_eq(r[1].status, "sent");
    cr_expect_str_eq(r[2].status, "undelivered");
    cr_expect_eq(r[2].error, 30003);

    n = sbx_receipts_for("+33612330008", 0, r);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(r[0].status, "failed");
    cr_expect_eq(r[0].error, 30008);

    n = sbx_receipts_for("+33612330006", 0, r);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(r[1].status, "undelivered");
    cr_expect_eq(r[1].error, 30006);

    n = sbx_receipts_for("+33612300000", 0, r);
    cr_assert_eq(n, 1, "no final receipt");
    cr_expect_str_eq(r[0].status, "sent");
}

Test(sbx_receipts, whatsapp_window_and_defaults)
{
    sbx_receipt_t r[SBX_RECEIPTS_MAX];
    size_t n = sbx_receipts_for("whatsapp:+33612363016", 0, r);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(r[1].status, "failed");
    cr_expect_eq(r[1].error, 63016);
    n = sbx_receipts_for("whatsapp:+33612363016", 1, r);
    cr_assert_eq(n, 3, "a template is delivered and read");
    cr_expect_str_eq(r[2].status, "read");

    n = sbx_receipts_for("+33612345678", 0, r);
    cr_assert_eq(n, 2, "SMS: sent, delivered");
    cr_expect_str_eq(r[0].status, "sent");
    cr_expect_str_eq(r[1].status, "delivered");
    cr_expect_eq(r[1].error, 0);
    n = sbx_receipts_for("whatsapp:+33612345678", 0, r);
    cr_assert_eq(n, 3, "WhatsApp: sent, delivered, read");
    cr_expect_str_eq(r[2].status, "read");
}

Test(sbx_receipts, callback_ids_from_the_url)
{
    char id[64];
    int hop = 0;
    cr_assert(sbx_callback_ids("http://127.0.0.1:1/twilio/status?communication_id=0b6f1c2e-1111-5222-8333-"
                               "444455556666&hop=2&attempt=3",
                               id, sizeof id, &hop));
    cr_expect_str_eq(id, "0b6f1c2e-1111-5222-8333-444455556666");
    cr_expect_eq(hop, 2);
    cr_assert(sbx_callback_ids("https://h/s?x=1&communication_id=abc", id, sizeof id, &hop));
    cr_expect_str_eq(id, "abc");
    cr_expect_eq(hop, -1, "no hop");
    cr_expect(!sbx_callback_ids("https://h/s?x_communication_id=abc", id, sizeof id, &hop), "whole names only");
    cr_expect(!sbx_callback_ids("https://h/s", id, sizeof id, &hop));
    cr_expect_str_eq(id, "");
    cr_expect(!sbx_callback_ids(NULL, id, sizeof id, &hop));
    cr_assert(sbx_callback_ids("https://h/s?communication_id=abc&hop=x", id, sizeof id, &hop));
    cr_expect_eq(hop, -1, "a hop that is not a number is none");
}
