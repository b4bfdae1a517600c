/* channel.h - channels and urgencies, and their wire names. */
#ifndef CRM_CHANNEL_H
#define CRM_CHANNEL_H

typedef enum cmn_channel {
    CMN_CHANNEL_NONE = -1,
    CMN_CHANNEL_EMAIL = 0,
    CMN_CHANNEL_SMS = 1,
    CMN_CHANNEL_WHATSAPP = 2,
    CMN_CHANNEL__COUNT = 3
} cmn_channel_t;

typedef enum cmn_urgency {
    CMN_URGENCY_LOW = 0,
    CMN_URGENCY_NORMAL = 1,
    CMN_URGENCY_HIGH = 2,
    CMN_URGENCY_CRITICAL = 3
} cmn_urgency_t;

const char *cmn_channel_name(cmn_channel_t c);      /* "email", "sms", "whatsapp"; "" for NONE */
cmn_channel_t cmn_channel_parse(const char *s);     /* CMN_CHANNEL_NONE when unknown or NULL */
const char *cmn_urgency_name(cmn_urgency_t u);      /* "low", "normal", "high", "critical" */
int cmn_urgency_parse(const char *s, cmn_urgency_t *out); /* 0 or CMN_ERR_INVALID */

#endif
