/* phone.h - phone number checks for the SMS and WhatsApp channels, on
 * Google's libphonenumber (the Debian package's C++ library, behind a small
 * C++ shim in phone.cc).
 *
 * What the engine needs from a number: is it a real, complete number; what
 * kind of line is it (a landline cannot receive SMS, and Twilio answers
 * 30006 when we try); which country (for region permissions and sender
 * choice); and one canonical E.164 spelling to send to and to key on.
 *
 * Input must be in international form with a leading '+' (the envelope
 * contract is E.164); blanks, '-', '.', '(' and ')' between digits are
 * tolerated and dropped from the normalized form. Extensions, letters and
 * anything else are refused.
 *
 * Sending policy (cmn_phone_is_messageable): MOBILE and
 * FIXED_LINE_OR_MOBILE are messageable. The second is what libphonenumber
 * says of every US/Canadian number (and a few other countries'), because
 * the North American numbering plan does not separate mobile from fixed
 * ranges; excluding it would exclude North America. The provider's landline
 * answer (Twilio 30006) then catches the real landlines among them, and the
 * router falls back to another channel. Every other type, including VOIP,
 * PAGER and UNKNOWN, is not messageable.
 *
 * Thread-safe: libphonenumber's PhoneNumberUtil is an immutable singleton
 * once built, and this module keeps no state of its own. */
#ifndef CRM_PHONE_H
#define CRM_PHONE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cmn_phone_type {
    CMN_PHONE_UNKNOWN = 0,
    CMN_PHONE_FIXED_LINE,
    CMN_PHONE_MOBILE,
    CMN_PHONE_FIXED_LINE_OR_MOBILE,
    CMN_PHONE_TOLL_FREE,
    CMN_PHONE_PREMIUM_RATE,
    CMN_PHONE_SHARED_COST,
    CMN_PHONE_VOIP,
    CMN_PHONE_PERSONAL_NUMBER,
    CMN_PHONE_PAGER,
    CMN_PHONE_UAN,
    CMN_PHONE_VOICEMAIL
} cmn_phone_type_t;

/* E.164: '+', at most 15 digits, NUL. */
#define CMN_PHONE_E164_MAX 17

typedef struct cmn_phone_info {
    int valid;                     /* 1: a complete, assigned-range number */
    cmn_phone_type_t type;         /* UNKNOWN unless valid */
    char region[3];                /* ISO 3166-1 alpha-2 ("FR"), "" when unknown */
    int country_code;              /* calling code (33), 0 when unparseable */
    char e164[CMN_PHONE_E164_MAX]; /* normalized "+33612345678", "" unless valid */
} cmn_phone_info_t;

/* Checks the number text (borrowed) and fills *out (always reset first).
 * Returns 0 when the number is valid, CMN_ERR_INVALID when it is not (NULL,
 * empty, garbage, no '+', wrong length, unassigned range; out then holds
 * what could be learned, e.g. the region of a too-short French number), or
 * CMN_ERR_NOMEM. */
int cmn_phone_check(const char *text, cmn_phone_info_t *out);

/* "mobile", "fixed_line", "fixed_line_or_mobile", "toll_free",
 * "premium_rate", "shared_cost", "voip", "personal_number", "pager", "uan",
 * "voicemail", "unknown". */
const char *cmn_phone_type_name(cmn_phone_type_t t);

/* 1 when a number of this type may be sent SMS/WhatsApp (see the policy
 * above), else 0. */
int cmn_phone_is_messageable(cmn_phone_type_t t);

#ifdef __cplusplus
}
#endif

#endif
