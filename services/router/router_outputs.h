/* router_outputs.h - the envelopes the router emits for a request: its first
 * Dispatch and its status events (pure: the caller passes the clock).
 *
 * Everything here is deterministic in the request and the decision, apart
 * from timestamps: a request processed again after a crash yields the same
 * communication_id, the same event ids and the same Dispatch, which is what
 * lets the projector store a re-emitted event once. */
#ifndef ROUTER_OUTPUTS_H
#define ROUTER_OUTPUTS_H

#include <stdint.h>

#include "crm/dispatch.h"
#include "crm/request.h"
#include "crm/status.h"
#include "router_strategy.h"

/* Fills d (which must be zeroed) with the hop-0, attempt-1 Dispatch of r on
 * dec->channel with dec's fallback plan: to = dec->address, recipient
 * copied, template, locale (the recipient's), context and attachments (d
 * takes its own references), deadline = expires_at, created_at =
 * created_at_ms. d owns everything it holds: free with cmn_dispatch_clear()
 * whatever this returns. Returns 0, CMN_ERR_INVALID (dec is a suppression)
 * or CMN_ERR_NOMEM. */
int router_build_dispatch(const cmn_request_t *r, const router_decision_t *dec, int64_t created_at_ms,
                          cmn_dispatch_t *d);

/* Fills ev for request r with status st, channel CMN_CHANNEL_NONE, hop 0,
 * attempt 0 and occurred_at = now_ms; the caller sets channel, attempt and
 * reason where they apply, then calls cmn_status_event_finalize(). String
 * fields borrow from r. */
void router_status_init(cmn_status_event_t *ev, const cmn_request_t *r, cmn_status_t st, int64_t now_ms);

/* created_at of a Dispatch: when the request was first accepted
 * (received_at, set by ingest), else when it was produced to Kafka (the
 * record timestamp, the same on every redelivery), else now. */
int64_t router_created_at(const cmn_request_t *r, int64_t record_timestamp_ms, int64_t now_ms);

#endif
