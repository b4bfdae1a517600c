/* sms_twilio.h - reading Twilio's answers to POST .../Messages.json.
 *
 * 201 Created: the Message resource, {"sid":"SM...","status":"queued",
 *   "num_segments":"1",...} (see the official examples in
 *   shared/oracles/twilio/webhook_and_error_examples.json).
 * 4xx/5xx: the error body {"code":21610,"message":"...","more_info":
 *   "https://www.twilio.com/docs/errors/21610","status":400}; newer endpoints
 *   answer RFC 9457 problems ({"type","title","status","code","detail"}),
 *   which are read the same way (message from detail or title).
 *
 * Provider texts can quote the recipient's number ("The 'To' number
 * +33612345678 is not a valid phone number."), and they end up in status
 * events, so every text read here has phone numbers redacted.
 *
 * Everything here is pure. */
#ifndef SMS_TWILIO_H
#define SMS_TWILIO_H

#include <stddef.h>

#define SMS_TWILIO_TEXT_MAX 400

typedef struct sms_twilio_error {
    long code;                            /* Twilio error code; 0 when the body has none */
    long status;                          /* the body's "status"; 0 when absent */
    char message[SMS_TWILIO_TEXT_MAX];    /* phone numbers redacted; "" when absent */
    char more_info[256];                  /* documentation URL; "" when absent */
} sms_twilio_error_t;

/* Parses an error body (len bytes, need not be NUL-terminated). Returns 0
 * when it is a JSON object carrying a code or a message, else
 * CMN_ERR_PARSE; out is zeroed first either way. */
int sms_twilio_parse_error(const char *body, size_t len, sms_twilio_error_t *out);

typedef struct sms_twilio_created {
    char sid[40];      /* "SM" or "MM" + 32 hex digits */
    char status[32];   /* "queued", "accepted", "scheduled", ...; "" when absent */
    int num_segments;  /* the "num_segments" string as a number; -1 when absent */
} sms_twilio_created_t;

/* Parses a 201 body. Returns 0 when it is a JSON object with a well-formed
 * message sid, else CMN_ERR_PARSE; out is zeroed first either way. */
int sms_twilio_parse_created(const char *body, size_t len, sms_twilio_created_t *out);

/* Replaces, in place, every run that looks like a phone number (an optional
 * '+', then digits possibly grouped by spaces, '-', '.', '(' or ')', with at
 * least 7 digits) by "<phone>". Error codes (5 digits) and small counts
 * stay readable. The string never grows. */
void sms_twilio_redact_numbers(char *s);

#endif
