/* wh_track.h - email tracking endpoints: the events and pages behind
 * GET /t/o/<token> (open pixel), GET /t/c/<token> (click redirect) and
 * GET/POST /u/<token> (unsubscribe page and RFC 8058 one-click).
 *
 * Tokens are crm/track.h's signed tokens; everything the receiver needs
 * (tenant, client, communication, hop, and for a click the target) is
 * inside them, and a click only ever redirects to the signed target.
 *
 * Event ids: an open is UUIDv5 of (communication, "opened", channel, hop,
 * attempt 0, discriminator "open"), so a mail client that loads the pixel
 * ten times records one open; a click uses discriminator "click|<link>",
 * so each distinct link is recorded once. An unsubscribe produces no
 * StatusEvent (crm/status.h has no such status, and any existing one would
 * rank over the delivery history); it produces the opt_out.email snapshot
 * on crm.preferences, which is the record (docs/webhooks.md proposes an
 * `unsubscribed` status). Pure. */
#ifndef WH_TRACK_H
#define WH_TRACK_H

#include <stdint.h>

#include "crm/buf.h"
#include "crm/status.h"
#include "crm/track.h"

#define WH_PROVIDER_TRACKING "tracking"

/* The HTTP status for a refused token: 403 for a bad signature or an
 * expired token (the link is not ours, or no longer), 400 otherwise. */
int wh_track_refusal_status(cmn_track_reason_t r);

/* The `opened` (kind OPEN) or `clicked` (kind CLICK) event of t at now_ms.
 * ev borrows from t and details (the caller's buffer: {"url":..,
 * "link_index":..} for a click). Returns 0 or a negative code. */
int wh_track_event(const cmn_track_token_t *t, int64_t now_ms, cmn_status_event_t *ev, cmn_buf_t *details);

/* The visible unsubscribe page for token (HTML, appended to out): a
 * confirm button that POSTs List-Unsubscribe=One-Click back to the same
 * URL, or, when done, the confirmation. Nothing happens on GET, because
 * mail scanners fetch every link of a message. Returns 0 or CMN_ERR_NOMEM. */
int wh_track_page(const char *token, int done, cmn_buf_t *out);

#endif
