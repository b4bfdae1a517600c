/* sbx_spec.h - the CreateMessage request schema, read from Twilio's own
 * OpenAPI description (twilio_api_v2010.json) at start-up.
 *
 * The sandbox validates every POST .../Messages.json against what the
 * official file says, not against a hand-written copy, so a parameter we
 * send that Twilio does not define (or a value outside an enum, a SID that
 * breaks its pattern) is caught the way the real API or a validating mock
 * would catch it. From the file it takes:
 *   paths["/2010-04-01/Accounts/{AccountSid}/Messages.json"].post
 *     .parameters[AccountSid].schema           -> the path SID's pattern
 *     .requestBody.content["application/x-www-form-urlencoded"].schema
 *       .properties  -> every parameter: type, format, enum, pattern,
 *                       minLength/maxLength, array items ($ref resolved in
 *                       #/components/schemas)
 *       .required    -> required parameters ("To")
 * Formats honoured: phone-number, uri (unless the item says
 * x-twilio.ignoreFormat), date-time. */
#ifndef SBX_SPEC_H
#define SBX_SPEC_H

#include <regex.h>
#include <stddef.h>

typedef enum sbx_type {
    SBX_T_STRING = 0,
    SBX_T_INTEGER,
    SBX_T_NUMBER,
    SBX_T_BOOLEAN,
    SBX_T_ARRAY
} sbx_type_t;

typedef enum sbx_format {
    SBX_F_NONE = 0,
    SBX_F_PHONE,    /* "phone-number" */
    SBX_F_URI,      /* "uri" */
    SBX_F_DATETIME, /* "date-time" */
    SBX_F_OTHER     /* any other: not checked */
} sbx_format_t;

/* The rules for one value (a property, or the items of an array property). */
typedef struct sbx_rule {
    sbx_type_t type;
    sbx_format_t format;
    char **enums; /* owned; NULL when not an enum */
    size_t n_enums;
    long min_length, max_length; /* -1 when not set */
    int has_pattern;
    regex_t pattern;
    char *pattern_text; /* owned; for messages */
} sbx_rule_t;

typedef struct sbx_param {
    char *name;      /* owned, e.g. "StatusCallback" */
    int required;
    sbx_rule_t rule; /* for arrays: type SBX_T_ARRAY */
    sbx_rule_t item; /* for arrays: the items' rule */
} sbx_param_t;

typedef struct sbx_schema {
    char *title; /* "CreateMessageRequest" */
    sbx_param_t *params;
    size_t n;
    sbx_rule_t account_sid; /* the path parameter's rule */
} sbx_schema_t;

/* Reads the OpenAPI file at path and extracts the schema. NULL with the
 * reason in errstr when the file cannot be read or lacks the operation. */
sbx_schema_t *sbx_schema_load(const char *path, char *errstr, size_t errlen);
void sbx_schema_destroy(sbx_schema_t *s);

/* The parameter called name, or NULL. */
const sbx_param_t *sbx_schema_find(const sbx_schema_t *s, const char *name);

/* Checks one value against rule. Returns 0, or -1 with a reason such as
 * "must be one of retain, discard" in errstr. */
int sbx_rule_check(const sbx_rule_t *rule, const char *value, char *errstr, size_t errlen);

/* 1 when s is E.164 (+ then 2..15 digits, no leading 0) or a channel
 * address such as "whatsapp:+14155550100". */
int sbx_valid_phone(const char *s);

/* 1 when s is an absolute http(s) URL with a host name Twilio accepts
 * (no underscore, no blanks). */
int sbx_valid_uri(const char *s);

#endif
