/* router_strategy.c - the routing decision (see router_strategy.h). */
#include "router_strategy.h"

#include <string.h>

#include "crm/dispatch.h"
#include "crm/err.h"

/* A filter looks at one candidate channel and returns ROUTER_REASON_NONE to
 * keep it or the reason to drop it. Filters only read the input, so their
 * order changes the recorded reasons but never which channels survive. */
typedef router_reason_t (*router_filter_fn)(const router_input_t *in, cmn_channel_t c);

/* A channel is usable only with an address for it. cmn_recipient_address()
 * is the same lookup the workers use to fill `to`, so the router never plans
 * a channel a worker could not address. */
static router_reason_t filter_address(const router_input_t *in, cmn_channel_t c)
{
    const char *addr = cmn_recipient_address(&in->request->recipient, c);
    return (addr == NULL || addr[0] == '\0') ? ROUTER_REASON_NO_ADDRESS : ROUTER_REASON_NONE;
}

/* A channel without a configured provider would only pile up on a topic that
 * no worker consumes. */
static router_reason_t filter_provider(const router_input_t *in, cmn_channel_t c)
{
    return (in->enabled & ROUTER_CHANNEL_BIT(c)) ? ROUTER_REASON_NONE : ROUTER_REASON_NO_CHANNEL;
}

/* Applied in this order. The address filter comes first: see the suppression
 * reason rule in router_strategy.h. Consent, opt-outs and quiet hours are
 * added here when the router learns client preferences; they will need more
 * input (a preferences snapshot) in router_input_t, never I/O. */
static const router_filter_fn router_filters[] = {
    filter_address,
    filter_provider,
};

const char *router_reason_name(router_reason_t r)
{
    switch (r) {
    case ROUTER_REASON_EXPIRED:
        return "expired";
    case ROUTER_REASON_NO_ADDRESS:
        return "no_address";
    case ROUTER_REASON_NO_CHANNEL:
        return "no_channel";
    case ROUTER_REASON_NONE:
        break;
    }
    return "";
}

const char *router_source_name(router_source_t s)
{
    switch (s) {
    case ROUTER_SOURCE_EXPLICIT:
        return "explicit";
    case ROUTER_SOURCE_PREFERRED:
        return "preferred";
    case ROUTER_SOURCE_MESSAGE_TYPE:
        return "message_type";
    case ROUTER_SOURCE_DEFAULT:
        return "default";
    }
    return "";
}

static int is_instant(cmn_channel_t c)
{
    return c == CMN_CHANNEL_SMS || c == CMN_CHANNEL_WHATSAPP;
}

/* Appends the channels of src that are not in out yet, skipping values that
 * are not channels (defensive: the request was validated, but a bad enum
 * must not index past the arrays). */
static void add_distinct(cmn_channel_t *out, size_t *n, const cmn_channel_t *src, size_t nsrc)
{
    for (size_t i = 0; i < nsrc; i++) {
        cmn_channel_t c = src[i];
        int seen = 0;
        if ((int)c < 0 || (int)c >= CMN_CHANNEL__COUNT) {
            continue;
        }
        for (size_t j = 0; j < *n; j++) {
            if (out[j] == c) {
                seen = 1;
                break;
            }
        }
        if (!seen) {
            out[(*n)++] = c;
        }
    }
}

/* Stable partition: the channels whose instant-ness equals want_instant move
 * to the front; both groups keep their relative order. */
static void stable_front(cmn_channel_t *ch, size_t n, int want_instant)
{
    cmn_channel_t tmp[CMN_CHANNEL__COUNT];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_instant(ch[i]) == want_instant) {
            tmp[k++] = ch[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (is_instant(ch[i]) != want_instant) {
            tmp[k++] = ch[i];
        }
    }
    memcpy(ch, tmp, n * sizeof *ch);
}

static void apply_urgency(cmn_urgency_t u, cmn_channel_t *ch, size_t n)
{
    switch (u) {
    case CMN_URGENCY_CRITICAL:
    case CMN_URGENCY_HIGH:
        stable_front(ch, n, 1);
        break;
    case CMN_URGENCY_LOW:
        stable_front(ch, n, 0);
        break;
    case CMN_URGENCY_NORMAL:
        break;
    }
}

static void pick_candidates(const router_input_t *in, router_decision_t *out)
{
    const cmn_request_t *r = in->request;
    const router_order_t *order = NULL;

    if (r->n_channels > 0) {
        out->source = ROUTER_SOURCE_EXPLICIT;
        add_distinct(out->candidates, &out->n_candidates, r->channels, r->n_channels);
        return;
    }
    if (r->recipient.n_preferred > 0) {
        out->source = ROUTER_SOURCE_PREFERRED;
        add_distinct(out->candidates, &out->n_candidates, r->recipient.preferred, r->recipient.n_preferred);
        return;
    }
    order = router_config_type_order(in->config, r->message_type);
    if (order != NULL) {
        out->source = ROUTER_SOURCE_MESSAGE_TYPE;
    } else {
        out->source = ROUTER_SOURCE_DEFAULT;
        order = router_config_default_order(in->config);
    }
    add_distinct(out->candidates, &out->n_candidates, order->ch, order->n);
}

int router_decide(const router_input_t *in, router_decision_t *out)
{
    if (in == NULL || out == NULL || in->request == NULL || in->config == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    out->channel = CMN_CHANNEL_NONE;

    pick_candidates(in, out);

    /* Expiry is checked after the candidates are known only so the decision
     * records where the order came from; an expired request is suppressed
     * whatever its channels. */
    if (in->request->expires_at_ms != 0 && in->request->expires_at_ms <= in->now_ms) {
        out->suppressed = 1;
        out->reason = ROUTER_REASON_EXPIRED;
        return CMN_OK;
    }

    if (out->source != ROUTER_SOURCE_EXPLICIT) {
        apply_urgency(in->request->urgency, out->candidates, out->n_candidates);
    }

    cmn_channel_t kept[CMN_CHANNEL__COUNT];
    size_t n_kept = 0;
    for (size_t i = 0; i < out->n_candidates; i++) {
        cmn_channel_t c = out->candidates[i];
        router_reason_t why = ROUTER_REASON_NONE;
        for (size_t f = 0; f < sizeof router_filters / sizeof router_filters[0]; f++) {
            why = router_filters[f](in, c);
            if (why != ROUTER_REASON_NONE) {
                break;
            }
        }
        if (why == ROUTER_REASON_NONE) {
            kept[n_kept++] = c;
        } else {
            out->dropped[out->n_dropped] = c;
            out->dropped_reason[out->n_dropped] = why;
            out->n_dropped++;
        }
    }

    if (n_kept == 0) {
        /* One reason for the whole request: the shared reason when every
         * candidate was dropped for the same one, else no_channel (see the
         * header). An empty candidate list cannot happen with a valid
         * configuration, and is reported as no_channel too. */
        router_reason_t reason = out->n_dropped > 0 ? out->dropped_reason[0] : ROUTER_REASON_NO_CHANNEL;
        for (size_t i = 1; i < out->n_dropped; i++) {
            if (out->dropped_reason[i] != reason) {
                reason = ROUTER_REASON_NO_CHANNEL;
                break;
            }
        }
        out->suppressed = 1;
        out->reason = reason;
        return CMN_OK;
    }

    out->channel = kept[0];
    out->address = cmn_recipient_address(&in->request->recipient, kept[0]);
    for (size_t i = 1; i < n_kept; i++) {
        out->fallback[out->n_fallback++] = kept[i];
    }
    return CMN_OK;
}
