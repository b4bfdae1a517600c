/* wh_status.c - receipts to StatusEvents. */
#include "wh_status.h"

#include <string.h>

#include "crm/err.h"

static const struct {
    const char *provider_status;
    cmn_status_t status;
    const char *reason;
} MAPPING[] = {
    {"sent", CMN_STATUS_SENT, NULL},
    {"delivered", CMN_STATUS_DELIVERED, NULL},
    {"read", CMN_STATUS_READ, NULL},
    {"undelivered", CMN_STATUS_FAILED, "undelivered"},
    {"failed", CMN_STATUS_FAILED, NULL},
    {"canceled", CMN_STATUS_FAILED, "canceled"},
};

void wh_receipt_init(wh_receipt_t *r)
{
    if (r == NULL)
        return;
    memset(r, 0, sizeof *r);
    r->channel = CMN_CHANNEL_NONE;
    r->hop = -1;
    r->attempt = -1;
}

int wh_status_map(const char *provider_status, cmn_status_t *status, const char **reason)
{
    if (provider_status == NULL)
        return 0;
    for (size_t i = 0; i < sizeof MAPPING / sizeof MAPPING[0]; i++) {
        if (strcmp(MAPPING[i].provider_status, provider_status) == 0) {
            if (status != NULL)
                *status = MAPPING[i].status;
            if (reason != NULL)
                *reason = MAPPING[i].reason;
            return 1;
        }
    }
    return 0;
}

int wh_status_event_id(const wh_receipt_t *r, char out[CMN_UUID_STR_LEN + 1])
{
    if (r == NULL || r->provider == NULL || r->provider_message_id == NULL || r->provider_message_id[0] == '\0' ||
        r->provider_status == NULL || r->provider_status[0] == '\0')
        return CMN_ERR_INVALID;
    cmn_buf_t name = CMN_BUF_INIT;
    int rc = cmn_buf_printf(&name, "receipt|%s|%s|%s|%s", r->provider, r->provider_message_id, r->provider_status,
                            r->error_code != NULL ? r->error_code : "");
    if (rc == 0)
        rc = cmn_uuid_v5(CMN_UUID_NS_EVENT, name.data, name.len, out);
    cmn_buf_free(&name);
    return rc;
}

int wh_status_build(const wh_receipt_t *r, const char *tenant_id, cmn_status_event_t *ev, cmn_buf_t *details)
{
    cmn_status_t st = CMN_STATUS_SENT;
    const char *reason = NULL;
    if (r == NULL || ev == NULL || details == NULL)
        return CMN_ERR_INVALID;
    memset(ev, 0, sizeof *ev);
    if (!wh_status_map(r->provider_status, &st, &reason))
        return 0;
    int rc = wh_status_event_id(r, ev->event_id);
    if (rc != 0)
        return rc;
    memcpy(ev->communication_id, r->communication_id, sizeof ev->communication_id);
    ev->tenant_id = tenant_id;
    ev->channel = r->channel;
    ev->status = st;
    ev->reason = reason;
    ev->hop = r->hop >= 0 ? r->hop : 0;
    ev->attempt = r->attempt >= 0 ? r->attempt : 0;
    ev->provider = r->provider;
    ev->provider_message_id = r->provider_message_id;
    ev->error_code = r->error_code;
    ev->error_message = r->error_message;
    ev->occurred_at_ms = r->occurred_at_ms;
    cmn_buf_reset(details);
    rc = cmn_buf_puts(details, "{\"provider_status\":");
    if (rc == 0)
        rc = cmn_buf_put_json_string(details, r->provider_status);
    if (rc == 0)
        rc = cmn_buf_putc(details, '}');
    if (rc != 0)
        return rc;
    ev->details_json = details->data;
    return 1;
}

const char *wh_status_key(const cmn_status_event_t *ev)
{
    if (ev == NULL)
        return "";
    if (ev->communication_id[0] != '\0')
        return ev->communication_id;
    return ev->provider_message_id != NULL ? ev->provider_message_id : "";
}
