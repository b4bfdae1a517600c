/* sms.h - SMS text encoding, segment count and length limit (pure).
 *
 * An SMS carries 140 octets. A text made only of GSM 03.38 characters goes
 * as GSM-7 (7-bit septets): 160 per single message. Characters of the GSM
 * extension table (form feed, ^ { } \ [ ~ ] | and the euro sign) are sent
 * as an escape plus a septet, so they count 2. Any other character forces
 * the whole text into UCS-2 (UTF-16 on the wire): 70 code units per single
 * message, and a character outside the Basic Multilingual Plane (most
 * emoji) takes 2 units as a surrogate pair.
 *
 * A longer text is split into concatenated parts whose user-data header
 * takes 6 octets: 153 septets or 67 UTF-16 units per part. An escape pair
 * or a surrogate pair is never split across parts (the phone could not
 * reassemble it), so a part may end one unit short and the count is made by
 * filling parts in order, not by dividing.
 *
 * Twilio accepts a Body of up to 1,600 characters (error 21617 beyond) and
 * its error page warns that characters outside GSM-7 "use more space" and
 * reach the limit sooner. We therefore count the limit in encoded units:
 * septets for GSM-7 text (extension characters 2) and UTF-16 code units for
 * UCS-2 text (emoji 2). That is the stricter of the possible readings, so
 * a text we accept is never refused by Twilio for its length. */
#ifndef CRM_SMS_H
#define CRM_SMS_H

#include <stddef.h>

#define CMN_SMS_GSM7_SINGLE 160
#define CMN_SMS_GSM7_PART 153
#define CMN_SMS_UCS2_SINGLE 70
#define CMN_SMS_UCS2_PART 67
#define CMN_SMS_MAX_UNITS 1600

typedef enum cmn_sms_encoding {
    CMN_SMS_GSM7 = 0,
    CMN_SMS_UCS2 = 1
} cmn_sms_encoding_t;

typedef struct cmn_sms_info {
    cmn_sms_encoding_t encoding;
    size_t characters; /* Unicode code points */
    size_t units;      /* encoded length: GSM-7 septets or UTF-16 code units */
    size_t segments;   /* SMS parts; 0 for the empty text */
    int within_limit;  /* 1 when units <= CMN_SMS_MAX_UNITS */
} cmn_sms_info_t;

/* Analyzes the NUL-terminated UTF-8 text (borrowed) into *out. Returns 0,
 * or CMN_ERR_INVALID for NULL arguments or text that is not valid UTF-8
 * (overlong forms, surrogates, code points above U+10FFFF, truncated
 * sequences); *out is then zeroed. */
int cmn_sms_analyze(const char *text, cmn_sms_info_t *out);

/* 1 when the code point is in the GSM 03.38 basic set, 2 when it is in the
 * extension table, 0 when it needs UCS-2. */
int cmn_sms_gsm7_cost(unsigned long cp);

/* "GSM-7" or "UCS-2". */
const char *cmn_sms_encoding_name(cmn_sms_encoding_t e);

/* Writes {"encoding":"GSM-7","segments":2,"characters":170,"units":170}
 * into buf, for a status event's details (cmn_worker_result_t's
 * details_json). Returns 0, or CMN_ERR_OVERFLOW when buflen is too small. */
int cmn_sms_details_json(const cmn_sms_info_t *info, char *buf, size_t buflen);

#endif
