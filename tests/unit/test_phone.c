/* test_phone.c - phone number checks over libphonenumber (crm/phone.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/err.h"
#include "crm/phone.h"

Test(phone, french_mobile)
{
    cmn_phone_info_t info;
    cr_assert_eq(cmn_phone_check("+33612345678", &info), 0);
    cr_expect_eq(info.valid, 1);
    cr_expect_eq(info.type, CMN_PHONE_MOBILE);
    cr_expect_str_eq(cmn_phone_type_name(info.type), "mobile");
    cr_expect_str_eq(info.region, "FR");
    cr_expect_eq(info.country_code, 33);
    cr_expect_str_eq(info.e164, "+33612345678");
    cr_expect_eq(cmn_phone_is_messageable(info.type), 1);
}

Test(phone, french_fixed_line_is_not_messageable)
{
    cmn_phone_info_t info;
    cr_assert_eq(cmn_phone_check("+33142685300", &info), 0);
    cr_expect_eq(info.type, CMN_PHONE_FIXED_LINE);
    cr_expect_str_eq(cmn_phone_type_name(info.type), "fixed_line");
    cr_expect_str_eq(info.region, "FR");
    cr_expect_eq(cmn_phone_is_messageable(info.type), 0);
}

Test(phone, north_american_numbers_are_fixed_line_or_mobile_and_messageable)
{
    /* The NANP does not separate mobile from fixed ranges, so every valid
     * US number is FIXED_LINE_OR_MOBILE; the policy sends to them. */
    cmn_phone_info_t info;
    cr_assert_eq(cmn_phone_check("+12015550123", &info), 0);
    cr_expect_eq(info.type, CMN_PHONE_FIXED_LINE_OR_MOBILE);
    cr_expect_str_eq(cmn_phone_type_name(info.type), "fixed_line_or_mobile");
    cr_expect_str_eq(info.region, "US");
    cr_expect_eq(info.country_code, 1);
    cr_expect_eq(cmn_phone_is_messageable(info.type), 1);
    cr_assert_eq(cmn_phone_check("+16135550123", &info), 0);
    cr_expect_str_eq(info.region, "CA");
}

Test(phone, other_types)
{
    cmn_phone_info_t info;
    cr_assert_eq(cmn_phone_check("+18002345678", &info), 0); /* US toll free */
    cr_expect_eq(info.type, CMN_PHONE_TOLL_FREE);
    cr_expect_eq(cmn_phone_is_messageable(info.type), 0);
    cr_assert_eq(cmn_phone_check("+447912345678", &info), 0); /* UK mobile */
    cr_expect_eq(info.type, CMN_PHONE_MOBILE);
    cr_expect_str_eq(info.region, "GB");
    cr_assert_eq(cmn_phone_check("+4915123456789", &info), 0); /* German mobile */
    cr_expect_eq(info.type, CMN_PHONE_MOBILE);
    cr_expect_str_eq(info.region, "DE");
    cr_assert_eq(cmn_phone_check("+33912345678", &info), 0); /* French 09: VoIP */
    cr_expect_eq(info.type, CMN_PHONE_VOIP);
    cr_expect_eq(cmn_phone_is_messageable(info.type), 0);
}

Test(phone, formatting_is_normalized)
{
    cmn_phone_info_t info;
    cr_assert_eq(cmn_phone_check("+33 6 12 34 56 78", &info), 0);
    cr_expect_str_eq(info.e164, "+33612345678");
    cr_assert_eq(cmn_phone_check("+1 (201) 555-0123", &info), 0);
    cr_expect_str_eq(info.e164, "+12015550123");
    cr_assert_eq(cmn_phone_check("+33.6.12.34.56.78", &info), 0);
    cr_expect_str_eq(info.e164, "+33612345678");
}

Test(phone, invalid_numbers)
{
    cmn_phone_info_t info;
    /* Too short, too long, unassigned range: parseable but not valid, and
     * what is known (the country) is still reported. */
    cr_expect_eq(cmn_phone_check("+3361234567", &info), CMN_ERR_INVALID);
    cr_expect_eq(info.valid, 0);
    cr_expect_eq(info.country_code, 33);
    cr_expect_str_eq(info.e164, "");
    cr_expect_eq(cmn_phone_check("+336123456789", &info), CMN_ERR_INVALID);
    cr_expect_eq(cmn_phone_check("+33012345678", &info), CMN_ERR_INVALID);
    cr_expect_eq(cmn_phone_check("+12015550", &info), CMN_ERR_INVALID);
    /* No such country calling code. */
    cr_expect_eq(cmn_phone_check("+999123456789", &info), CMN_ERR_INVALID);
    cr_expect_eq(info.valid, 0);
    cr_expect_eq(info.type, CMN_PHONE_UNKNOWN);
}

Test(phone, garbage_and_non_e164_input)
{
    cmn_phone_info_t info;
    const char *bad[] = {
        "",
        "+",
        "0612345678",            /* national form: no country */
        "33612345678",           /* no '+' */
        "+33 6 12 34 56 78 ext. 9",
        "+33612345678;ext=9",
        "+1 800 FLOWERS",        /* vanity letters */
        "++33612345678",
        "+33612345678\n",
        "phone",
        "+1234567890123456",     /* 16 digits: longer than E.164 allows */
        "+336123456780000000000000000000000000000000000000000000000000000000000000",
        "\xc3\x28",              /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&info, 0x5a, sizeof info);
        cr_expect_eq(cmn_phone_check(bad[i], &info), CMN_ERR_INVALID, "input #%zu", i);
        cr_expect_eq(info.valid, 0, "input #%zu", i);
        cr_expect_str_eq(info.e164, "", "input #%zu", i);
    }
    cr_expect_eq(cmn_phone_check(NULL, &info), CMN_ERR_INVALID);
    cr_expect_eq(cmn_phone_check("+33612345678", NULL), CMN_ERR_INVALID);
}

Test(phone, type_names)
{
    cr_expect_str_eq(cmn_phone_type_name(CMN_PHONE_UNKNOWN), "unknown");
    cr_expect_str_eq(cmn_phone_type_name(CMN_PHONE_VOIP), "voip");
    cr_expect_str_eq(cmn_phone_type_name(CMN_PHONE_TOLL_FREE), "toll_free");
    cr_expect_str_eq(cmn_phone_type_name(CMN_PHONE_PAGER), "pager");
    cr_expect_str_eq(cmn_phone_type_name((cmn_phone_type_t)99), "unknown");
    cr_expect_eq(cmn_phone_is_messageable(CMN_PHONE_UNKNOWN), 0);
    cr_expect_eq(cmn_phone_is_messageable(CMN_PHONE_PAGER), 0);
}
