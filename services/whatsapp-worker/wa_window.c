/* wa_window.c - the 24-hour window and the send decision. See wa_window.h. */
#include "wa_window.h"

const char *wa_window_state_name(wa_window_state_t s)
{
    switch (s) {
    case WA_WINDOW_UNKNOWN:
        return "unknown";
    case WA_WINDOW_NONE:
        return "none";
    case WA_WINDOW_OPEN:
        return "open";
    case WA_WINDOW_CLOSED:
        return "closed";
    }
    return "unknown";
}

wa_window_state_t wa_window_state(int have_inbound, int64_t last_inbound_ms, int64_t now_ms, int64_t margin_ms)
{
    if (!have_inbound)
        return WA_WINDOW_NONE;
    if (margin_ms < 0)
        margin_ms = 0;
    if (last_inbound_ms > now_ms) {
        /* Small skew: the message really arrived "now" on a clock a little
         * ahead of ours. Beyond that the value cannot be trusted, and
         * trusting it could keep a window open for days. */
        if (last_inbound_ms - now_ms > WA_WINDOW_MAX_SKEW_MS)
            return WA_WINDOW_CLOSED;
        last_inbound_ms = now_ms;
    }
    int64_t age = now_ms - last_inbound_ms;
    return age < WA_WINDOW_MS - margin_ms ? WA_WINDOW_OPEN : WA_WINDOW_CLOSED;
}

wa_send_kind_t wa_window_decide(wa_window_state_t state, int want_template, int has_freeform, int has_template)
{
    if (want_template)
        return has_template ? WA_SEND_TEMPLATE : WA_SEND_FAIL_NOTHING;
    switch (state) {
    case WA_WINDOW_OPEN:
        if (has_freeform)
            return WA_SEND_FREEFORM;
        return has_template ? WA_SEND_TEMPLATE : WA_SEND_FAIL_NOTHING;
    case WA_WINDOW_NONE:
    case WA_WINDOW_CLOSED:
        return has_template ? WA_SEND_TEMPLATE : WA_SEND_FAIL_NO_TEMPLATE;
    case WA_WINDOW_UNKNOWN:
        break;
    }
    return has_template ? WA_SEND_TEMPLATE : WA_SEND_RETRY_UNKNOWN;
}
