/* err.c - descriptions of the project's error codes. */
#include "crm/err.h"

const char *cmn_strerror(int err)
{
    /* A switch rather than a table indexed by -err: the compiler then warns
     * (-Wswitch) when a new code is added to the enum without a description. */
    switch ((cmn_err_t)err) {
    case CMN_OK:
        return "success";
    case CMN_ERR_INVALID:
        return "invalid argument";
    case CMN_ERR_NOMEM:
        return "out of memory";
    case CMN_ERR_IO:
        return "input/output error";
    case CMN_ERR_PARSE:
        return "parse error";
    case CMN_ERR_NOTFOUND:
        return "not found";
    case CMN_ERR_TIMEOUT:
        return "timed out";
    case CMN_ERR_KAFKA:
        return "kafka error";
    case CMN_ERR_DB:
        return "database error";
    case CMN_ERR_HTTP:
        return "http error";
    case CMN_ERR_TEMPLATE:
        return "template error";
    case CMN_ERR_CONFIG:
        return "configuration error";
    case CMN_ERR_UNAVAILABLE:
        return "service unavailable";
    case CMN_ERR_OVERFLOW:
        return "size limit exceeded";
    case CMN_ERR_SMTP:
        return "smtp error";
    case CMN_ERR_STATE:
        return "invalid state";
    case CMN_ERR__LAST:
        break;
    }
    return "unknown error";
}
