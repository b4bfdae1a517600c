/* wa_window.h - WhatsApp's 24-hour customer-service window, and what it
 * allows a message to be.
 *
 * Meta (and Twilio, which relays Meta's rule as error 63016) lets a business
 * send free-form messages - text, media, interactive - only while the
 * person's last message to it is less than 24 hours old. Outside that
 * window only an approved template may be sent; free-form is refused with
 * error 131047. The worker therefore decides before sending, from the
 * conversations table (migrations/0004_conversations.sql).
 *
 * Boundaries (docs/whatsapp.md):
 *   - open iff now - last_inbound < 24 h - margin. At exactly 24 h the window
 *     is closed: Meta counts the 24 h as a strict bound, and a message that
 *     is refused costs a permanent failure while a template always works.
 *   - margin (WHATSAPP_WINDOW_MARGIN_SECONDS) closes the window a little
 *     early so a free-form message accepted by us does not reach Meta just
 *     after the window closed (queueing, retries, clock differences).
 *   - a last_inbound in the future by at most WA_WINDOW_MAX_SKEW_MS is clock
 *     skew between the host that stored it and this one: it counts as "just
 *     now". Further in the future it is not trustworthy data, and the window
 *     counts as closed (the template, which is always allowed, is used).
 *   - no conversation at all: closed (the person never wrote to us, or wrote
 *     before CRM_DATA_KEY was rotated).
 *
 * Everything here is pure: time is passed in. */
#ifndef WA_WINDOW_H
#define WA_WINDOW_H

#include <stdint.h>

#define WA_WINDOW_MS (24LL * 60 * 60 * 1000)
#define WA_WINDOW_MAX_SKEW_MS (5LL * 60 * 1000)

typedef enum wa_window_state {
    WA_WINDOW_UNKNOWN = 0, /* the lookup failed (database unreachable): nothing is known */
    WA_WINDOW_NONE,        /* no conversation (or no inbound message in it) */
    WA_WINDOW_OPEN,        /* free-form messages allowed */
    WA_WINDOW_CLOSED       /* only templates allowed */
} wa_window_state_t;

/* "unknown", "none", "open", "closed". */
const char *wa_window_state_name(wa_window_state_t s);

/* The window at now_ms for a conversation whose last inbound message was at
 * last_inbound_ms (epoch ms), when have_inbound is 1; have_inbound 0 means
 * there is none (NONE). margin_ms >= 0 closes the window that much earlier
 * (a negative margin counts as 0). */
wa_window_state_t wa_window_state(int have_inbound, int64_t last_inbound_ms, int64_t now_ms, int64_t margin_ms);

/* What the worker sends. */
typedef enum wa_send_kind {
    WA_SEND_FREEFORM = 0,  /* the dispatch's own content (text, media, interactive) */
    WA_SEND_TEMPLATE,      /* the approved template mapped from the message type */
    WA_SEND_FAIL_NO_TEMPLATE, /* outside the window and no template: permanent, no_template_outside_window */
    WA_SEND_FAIL_NOTHING,  /* neither a free-text template nor an approved one: permanent, no_template */
    WA_SEND_RETRY_UNKNOWN  /* window unknown and no template to fall back on: retryable, window_unknown */
} wa_send_kind_t;

/* Chooses what to send. state is the window; want_template is 1 when the
 * dispatch asks for the approved template whatever the window (context
 * whatsapp.type "template"); has_freeform is 1 when a free-form body could
 * be rendered (a whatsapp.txt template exists for the type and locale);
 * has_template is 1 when the message type maps to an approved template for
 * the provider in use.
 *   - want_template: TEMPLATE, or FAIL_NOTHING without one;
 *   - OPEN: FREEFORM, or TEMPLATE when there is no free-form body, or
 *     FAIL_NOTHING when neither exists;
 *   - NONE / CLOSED: TEMPLATE, or FAIL_NO_TEMPLATE;
 *   - UNKNOWN: TEMPLATE (allowed in and out of the window), or
 *     RETRY_UNKNOWN (the database may be back on the next attempt). */
wa_send_kind_t wa_window_decide(wa_window_state_t state, int want_template, int has_freeform, int has_template);

#endif
