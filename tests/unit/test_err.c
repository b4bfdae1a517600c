/* Unit tests for crm/err.h. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "crm/err.h"

Test(err, every_code_has_a_description)
{
    for (int e = CMN_OK; e > CMN_ERR__LAST; e--) {
        const char *s = cmn_strerror(e);
        cr_assert_not_null(s);
        cr_assert_str_neq(s, "unknown error", "code %d has no description", e);
        cr_assert_gt(strlen(s), 0);
        /* Descriptions are distinct, so a log line identifies the code. */
        for (int other = e - 1; other > CMN_ERR__LAST; other--) {
            cr_assert_str_neq(s, cmn_strerror(other), "codes %d and %d share a text", e, other);
        }
    }
    cr_assert_str_eq(cmn_strerror(CMN_ERR_NOMEM), "out of memory");
    cr_assert_str_eq(cmn_strerror(CMN_ERR_CONFIG), "configuration error");
}

Test(err, unknown_codes)
{
    cr_assert_str_eq(cmn_strerror(CMN_ERR__LAST), "unknown error");
    cr_assert_str_eq(cmn_strerror(-1000), "unknown error");
    cr_assert_str_eq(cmn_strerror(1), "unknown error");
    cr_assert_str_eq(cmn_strerror(INT32_MIN), "unknown error");
}
