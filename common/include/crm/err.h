/* err.h - the one error enum of the project.
 *
 * Every function that can fail returns 0 on success or one of these negative
 * codes. Constructors return NULL and fill a caller-supplied errstr buffer. */
#ifndef CRM_ERR_H
#define CRM_ERR_H

typedef enum cmn_err {
    CMN_OK = 0,
    CMN_ERR_INVALID = -1,     /* bad argument or input that fails validation */
    CMN_ERR_NOMEM = -2,       /* allocation failed */
    CMN_ERR_IO = -3,          /* file, socket or process error */
    CMN_ERR_PARSE = -4,       /* malformed JSON, template or protocol data */
    CMN_ERR_NOTFOUND = -5,    /* a looked-up item does not exist */
    CMN_ERR_TIMEOUT = -6,     /* an operation did not finish in time */
    CMN_ERR_KAFKA = -7,       /* librdkafka reported an error */
    CMN_ERR_DB = -8,          /* PostgreSQL reported an error */
    CMN_ERR_HTTP = -9,        /* HTTP server or client error */
    CMN_ERR_TEMPLATE = -10,   /* template cannot be rendered */
    CMN_ERR_CONFIG = -11,     /* configuration is missing or invalid */
    CMN_ERR_UNAVAILABLE = -12,/* a dependency is down; try again later */
    CMN_ERR_OVERFLOW = -13,   /* a size limit was exceeded */
    CMN_ERR_SMTP = -14,       /* the SMTP server refused or failed */
    CMN_ERR_STATE = -15,      /* call not valid in the object's current state */
    CMN_ERR__LAST = -16
} cmn_err_t;

/* Returns a static, human-readable description of err (never NULL). */
const char *cmn_strerror(int err);

#endif
