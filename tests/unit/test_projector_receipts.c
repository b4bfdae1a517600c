/* test_projector_receipts.c - receipts named only by the provider's message
 * id (services/projector/projector_receipts.h): staging, the provider
 * message ids the match looks for, and reading a matched row back into an
 * ordinary StatusEvent. */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/err.h"
#include "projector_receipts.h"

static cmn_status_event_t receipt(const char *pmid)
{
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "8d5e1f0a-1b2c-5d3e-8f4a-5b6c7d8e9f01");
    ev.status = CMN_STATUS_DELIVERED;
    ev.channel = CMN_CHANNEL_SMS;
    ev.provider = "twilio";
    ev.provider_message_id = pmid;
    ev.occurred_at_ms = 1764000005000LL;
    return ev;
}

Test(projector_receipts, staged_receipt_and_pmids)
{
    projector_receipts_t r = {0};
    char why[256] = "";
    cmn_status_event_t ev = receipt("SM1");
    cr_assert_eq(projector_receipts_add(&r, &ev, 4, 99, why, sizeof why), 0, "%s", why);
    cr_assert_eq(projector_receipts_note_pmid(&r, "SM2"), 0);
    cr_assert_eq(projector_receipts_note_pmid(&r, ""), 0, "an empty id is ignored");
    cr_assert_eq(projector_receipts_note_pmid(&r, NULL), 0);
    const char *v[PROJECTOR_RECEIPT_NCOLS], *pmids = NULL;
    cr_assert_eq(projector_receipts_params(&r, v, &pmids), 0);
    cr_expect_str_eq(pmids, "{\"SM1\",\"SM2\"}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_TENANT_ID], "{\"default\"}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_STATUS], "{\"delivered\"}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_CHANNEL], "{\"sms\"}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_ERROR_CODE], "{NULL}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_OCCURRED_MS], "{1764000005000}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_KAFKA_OFFSET], "{99}");
    /* Staging goes on after params. */
    ev = receipt("SM3");
    cr_assert_eq(projector_receipts_add(&r, &ev, 4, 100, why, sizeof why), 0, "%s", why);
    cr_assert_eq(projector_receipts_params(&r, v, &pmids), 0);
    cr_expect_str_eq(pmids, "{\"SM1\",\"SM2\",\"SM3\"}");
    cr_expect_str_eq(v[PROJECTOR_RCOL_KAFKA_OFFSET], "{99,100}");
    projector_receipts_reset(&r);
    cr_assert_eq(projector_receipts_params(&r, v, &pmids), 0);
    cr_expect_str_eq(pmids, "{}");
    projector_receipts_free(&r);
}

Test(projector_receipts, refuses_what_cannot_be_matched)
{
    projector_receipts_t r = {0};
    char why[256] = "";
    cmn_status_event_t ev = receipt(NULL);
    cr_expect_eq(projector_receipts_add(&r, &ev, 0, 1, why, sizeof why), CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "provider_message_id"), "%s", why);
    ev = receipt("SM1");
    strcpy(ev.event_id, "not-a-uuid");
    cr_expect_eq(projector_receipts_add(&r, &ev, 0, 1, why, sizeof why), CMN_ERR_INVALID);
    cr_expect_not_null(strstr(why, "event_id"), "%s", why);
    ev = receipt("SM\xff");
    cr_expect_eq(projector_receipts_add(&r, &ev, 0, 1, why, sizeof why), CMN_ERR_INVALID);
    cr_expect_eq(r.n, 0);
    projector_receipts_free(&r);
}

Test(projector_receipts, matched_row_becomes_an_event_of_the_communication)
{
    const char *vals[PROJECTOR_RESOLVED_NCOLS] = {
        [PROJECTOR_MCOL_EVENT_ID] = "8d5e1f0a-1b2c-5d3e-8f4a-5b6c7d8e9f01",
        [PROJECTOR_MCOL_COMMUNICATION_ID] = "012f8c88-d2e4-5fd5-a271-fff7aad3c8b6",
        [PROJECTOR_MCOL_TENANT_ID] = "acme",
        [PROJECTOR_MCOL_CLIENT_ID] = "client-7",
        [PROJECTOR_MCOL_REQUEST_ID] = "req-1",
        [PROJECTOR_MCOL_MESSAGE_TYPE] = "event_reminder",
        [PROJECTOR_MCOL_CHANNEL] = "sms",
        [PROJECTOR_MCOL_STATUS] = "read",
        [PROJECTOR_MCOL_HOP] = "1",
        [PROJECTOR_MCOL_ATTEMPT] = "2",
        [PROJECTOR_MCOL_PROVIDER] = "twilio",
        [PROJECTOR_MCOL_PROVIDER_MESSAGE_ID] = "SM1",
        [PROJECTOR_MCOL_ERROR_CODE] = NULL,
        [PROJECTOR_MCOL_ERROR_MESSAGE] = NULL,
        [PROJECTOR_MCOL_OCCURRED_MS] = "1764000005000",
        [PROJECTOR_MCOL_KAFKA_PARTITION] = "4",
        [PROJECTOR_MCOL_KAFKA_OFFSET] = "99",
    };
    cmn_status_event_t ev;
    cr_assert_eq(projector_receipts_event(vals, &ev), 0);
    cr_expect_str_eq(ev.communication_id, "012f8c88-d2e4-5fd5-a271-fff7aad3c8b6");
    cr_expect_eq(ev.status, CMN_STATUS_READ);
    cr_expect_eq(ev.channel, CMN_CHANNEL_SMS);
    cr_expect_eq(ev.hop, 1);
    cr_expect_eq(ev.attempt, 2);
    cr_expect_eq(ev.occurred_at_ms, 1764000005000LL);
    cr_expect_str_eq(ev.client_id, "client-7");
    cr_expect_null(ev.error_code);

    vals[PROJECTOR_MCOL_STATUS] = "teleported";
    cr_expect_eq(projector_receipts_event(vals, &ev), CMN_ERR_INVALID);
    vals[PROJECTOR_MCOL_STATUS] = "read";
    vals[PROJECTOR_MCOL_HOP] = "-1";
    cr_expect_eq(projector_receipts_event(vals, &ev), CMN_ERR_INVALID);
    vals[PROJECTOR_MCOL_HOP] = "1";
    vals[PROJECTOR_MCOL_COMMUNICATION_ID] = NULL;
    cr_expect_eq(projector_receipts_event(vals, &ev), CMN_ERR_INVALID);
}
