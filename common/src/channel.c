/* channel.c - wire names of channels and urgencies.
 *
 * The names are part of the Kafka envelopes and the database, so they are
 * fixed strings compared exactly (case-sensitive): "Email" is not a channel. */
#include "crm/channel.h"

#include <string.h>

#include "crm/err.h"

static const char *const channel_names[CMN_CHANNEL__COUNT] = {
    [CMN_CHANNEL_EMAIL] = "email",
    [CMN_CHANNEL_SMS] = "sms",
    [CMN_CHANNEL_WHATSAPP] = "whatsapp",
};

static const char *const urgency_names[] = {
    [CMN_URGENCY_LOW] = "low",
    [CMN_URGENCY_NORMAL] = "normal",
    [CMN_URGENCY_HIGH] = "high",
    [CMN_URGENCY_CRITICAL] = "critical",
};

#define URGENCY_COUNT (sizeof urgency_names / sizeof urgency_names[0])

const char *cmn_channel_name(cmn_channel_t c)
{
    /* Out-of-range values (NONE included) map to "" so callers can always
     * print the result without a NULL check. */
    if ((int)c < 0 || (int)c >= CMN_CHANNEL__COUNT) {
        return "";
    }
    return channel_names[c];
}

cmn_channel_t cmn_channel_parse(const char *s)
{
    if (s == NULL) {
        return CMN_CHANNEL_NONE;
    }
    for (int i = 0; i < CMN_CHANNEL__COUNT; i++) {
        if (strcmp(s, channel_names[i]) == 0) {
            return (cmn_channel_t)i;
        }
    }
    return CMN_CHANNEL_NONE;
}

const char *cmn_urgency_name(cmn_urgency_t u)
{
    /* An invalid urgency is a programming error; "" keeps output printable. */
    if ((int)u < 0 || (size_t)u >= URGENCY_COUNT) {
        return "";
    }
    return urgency_names[u];
}

int cmn_urgency_parse(const char *s, cmn_urgency_t *out)
{
    if (s == NULL || out == NULL) {
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < URGENCY_COUNT; i++) {
        if (strcmp(s, urgency_names[i]) == 0) {
            *out = (cmn_urgency_t)i;
            return CMN_OK;
        }
    }
    return CMN_ERR_INVALID;
}
