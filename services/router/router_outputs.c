/* router_outputs.c - Dispatch and status envelopes (see router_outputs.h). */
#include "router_outputs.h"

#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* strdup that keeps NULL as NULL and reports failure only for a real copy. */
static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL) {
        return CMN_OK;
    }
    *dst = strdup(src);
    return *dst != NULL ? CMN_OK : CMN_ERR_NOMEM;
}

int router_build_dispatch(const cmn_request_t *r, const router_decision_t *dec, int64_t created_at_ms,
                          cmn_dispatch_t *d)
{
    int rc = CMN_OK;

    if (r == NULL || dec == NULL || d == NULL || dec->suppressed || dec->channel == CMN_CHANNEL_NONE) {
        return CMN_ERR_INVALID;
    }
    d->v = 1;
    memcpy(d->communication_id, r->communication_id, sizeof d->communication_id);
    d->urgency = r->urgency;
    d->channel = dec->channel;
    d->attempt = 1;
    d->hop = 0;
    d->deadline_ms = r->expires_at_ms;
    d->created_at_ms = created_at_ms;
    memcpy(d->fallback, dec->fallback, dec->n_fallback * sizeof dec->fallback[0]);
    d->n_fallback = dec->n_fallback;

    rc = dup_opt(&d->request_id, r->request_id);
    if (rc == CMN_OK) {
        rc = dup_opt(&d->tenant_id, r->tenant_id);
    }
    if (rc == CMN_OK) {
        rc = dup_opt(&d->client_id, r->client_id);
    }
    if (rc == CMN_OK) {
        rc = dup_opt(&d->message_type, r->message_type);
    }
    if (rc == CMN_OK) {
        rc = dup_opt(&d->template_name, r->template_name);
    }
    if (rc == CMN_OK) {
        rc = dup_opt(&d->locale, r->recipient.locale);
    }
    if (rc == CMN_OK) {
        rc = dup_opt(&d->to, dec->address);
    }
    if (rc == CMN_OK) {
        rc = cmn_recipient_copy(&d->recipient, &r->recipient);
    }
    if (rc == CMN_OK) {
        /* The request and the Dispatch share the immutable JSON trees; each
         * holds its own reference. */
        d->context = r->context != NULL ? json_object_get(r->context) : NULL;
        d->attachments = r->attachments != NULL ? json_object_get(r->attachments) : NULL;
    }
    return rc == CMN_OK ? CMN_OK : CMN_ERR_NOMEM;
}

void router_status_init(cmn_status_event_t *ev, const cmn_request_t *r, cmn_status_t st, int64_t now_ms)
{
    memset(ev, 0, sizeof *ev);
    memcpy(ev->communication_id, r->communication_id, sizeof ev->communication_id);
    ev->request_id = r->request_id;
    ev->tenant_id = r->tenant_id;
    ev->client_id = r->client_id;
    ev->message_type = r->message_type;
    ev->channel = CMN_CHANNEL_NONE;
    ev->status = st;
    ev->attempt = 0;
    ev->hop = 0;
    ev->occurred_at_ms = now_ms;
}

int64_t router_created_at(const cmn_request_t *r, int64_t record_timestamp_ms, int64_t now_ms)
{
    if (r->received_at_ms > 0) {
        return r->received_at_ms;
    }
    return record_timestamp_ms > 0 ? record_timestamp_ms : now_ms;
}
