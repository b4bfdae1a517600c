/* wh_optout.h - the preference change an opt-out or opt-in asks for.
 *
 * Rules (docs/webhooks.md, "Opt-out and opt-in"):
 *   STOP, UNSUBSCRIBE, CANCEL, END, QUIT  -> opt_out.<channel it came on> = true
 *   STOPALL                               -> opt_out of every channel (email, sms,
 *                                            whatsapp): the person asked for all
 *                                            of it to stop, and the cautious
 *                                            reading is the compliant one
 *   START, YES, UNSTOP                    -> opt_out.<channel it came on> = false
 *                                            (never email, never consent)
 *   email one-click / unsubscribe page    -> opt_out.email = true
 * Everything else in the snapshot is kept. Pure. */
#ifndef WH_OPTOUT_H
#define WH_OPTOUT_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/inbound.h"

/* 1 when body is STOPALL (trimmed like cmn_inbound_keyword_parse). */
int wh_optout_is_all(const char *body);

typedef struct wh_optout_change {
    int opt_out;      /* 1: opt out, 0: opt back in */
    int all_channels; /* opt_out only: every channel */
    cmn_channel_t channel;
} wh_optout_change_t;

/* Applies change to the client's stored snapshot (canonical JSON text, or
 * NULL / unparsable: start from an empty snapshot of tenant_id/client_id)
 * and appends the new snapshot to out. updated_at is now_ms, or one
 * millisecond after the stored updated_at when that is not older (clock
 * skew must not make the change lose "newest wins"). Returns 0,
 * CMN_ERR_INVALID (bad ids or channel) or CMN_ERR_NOMEM. *stored_ok
 * (may be NULL) tells whether the stored snapshot was used. */
int wh_optout_apply(const char *stored_json, const char *tenant_id, const char *client_id,
                    const wh_optout_change_t *change, int64_t now_ms, cmn_buf_t *out, int *stored_ok);

#endif
