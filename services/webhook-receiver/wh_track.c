/* wh_track.c - email open, click and unsubscribe events and pages. */
#include "wh_track.h"

#include <stdio.h>
#include <string.h>

#include "crm/err.h"

int wh_track_refusal_status(cmn_track_reason_t r)
{
    return r == CMN_TRACK_R_SIGNATURE || r == CMN_TRACK_R_EXPIRED ? 403 : 400;
}

int wh_track_event(const cmn_track_token_t *t, int64_t now_ms, cmn_status_event_t *ev, cmn_buf_t *details)
{
    char disc[32];
    if (t == NULL || ev == NULL || details == NULL || (t->kind != CMN_TRACK_OPEN && t->kind != CMN_TRACK_CLICK))
        return CMN_ERR_INVALID;
    memset(ev, 0, sizeof *ev);
    snprintf(ev->communication_id, sizeof ev->communication_id, "%s", t->communication_id);
    ev->tenant_id = t->tenant_id;
    ev->client_id = t->client_id;
    ev->channel = t->channel;
    ev->hop = t->hop >= 0 ? t->hop : 0;
    ev->attempt = 0;
    ev->provider = WH_PROVIDER_TRACKING;
    ev->occurred_at_ms = now_ms;
    cmn_buf_reset(details);
    if (t->kind == CMN_TRACK_OPEN) {
        ev->status = CMN_STATUS_OPENED;
        ev->discriminator = "open";
    } else {
        ev->status = CMN_STATUS_CLICKED;
        snprintf(disc, sizeof disc, "click|%d", t->link_index);
        ev->discriminator = disc;
        int rc = cmn_buf_puts(details, "{\"url\":");
        if (rc == 0)
            rc = cmn_buf_put_json_string(details, t->target);
        if (rc == 0 && t->link_index >= 0)
            rc = cmn_buf_printf(details, ",\"link_index\":%d", t->link_index);
        if (rc == 0)
            rc = cmn_buf_putc(details, '}');
        if (rc != 0)
            return rc;
        ev->details_json = details->data;
    }
    int rc = cmn_status_event_finalize(ev);
    /* The discriminator lives on this stack frame; it is only an input of
     * the id and must not outlive the call. */
    ev->discriminator = NULL;
    return rc;
}

int wh_track_page(const char *token, int done, cmn_buf_t *out)
{
    int rc = cmn_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                               "<meta name=\"robots\" content=\"noindex\">"
                               "<title>Unsubscribe</title></head><body>");
    if (rc != 0)
        return rc;
    if (done) {
        rc = cmn_buf_puts(out, "<h1>You are unsubscribed</h1>"
                               "<p>You will no longer receive these emails.</p>");
    } else {
        /* The token is base64url (letters, digits, '-' and '_'), so it needs
         * no escaping inside the attribute; the parser checked it. */
        rc = cmn_buf_printf(out,
                            "<h1>Unsubscribe</h1><p>Do you want to stop receiving these emails?</p>"
                            "<form method=\"post\" action=\"%s\">"
                            "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                            "<button type=\"submit\">Unsubscribe</button></form>",
                            token);
    }
    if (rc == 0)
        rc = cmn_buf_puts(out, "</body></html>\n");
    return rc;
}
