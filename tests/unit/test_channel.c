/* Unit tests for crm/channel.h. */
#include <criterion/criterion.h>

#include "crm/channel.h"
#include "crm/err.h"

Test(channel, names)
{
    cr_assert_str_eq(cmn_channel_name(CMN_CHANNEL_EMAIL), "email");
    cr_assert_str_eq(cmn_channel_name(CMN_CHANNEL_SMS), "sms");
    cr_assert_str_eq(cmn_channel_name(CMN_CHANNEL_WHATSAPP), "whatsapp");
    cr_assert_str_eq(cmn_channel_name(CMN_CHANNEL_NONE), "");
    cr_assert_str_eq(cmn_channel_name(CMN_CHANNEL__COUNT), "");
    cr_assert_str_eq(cmn_channel_name((cmn_channel_t)42), "");
}

Test(channel, parse_round_trips)
{
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        cr_assert_eq(cmn_channel_parse(cmn_channel_name((cmn_channel_t)c)), c);
    }
}

Test(channel, parse_rejects_unknown)
{
    cr_assert_eq(cmn_channel_parse(NULL), CMN_CHANNEL_NONE);
    cr_assert_eq(cmn_channel_parse(""), CMN_CHANNEL_NONE);
    cr_assert_eq(cmn_channel_parse("Email"), CMN_CHANNEL_NONE);
    cr_assert_eq(cmn_channel_parse("email "), CMN_CHANNEL_NONE);
    cr_assert_eq(cmn_channel_parse("emai"), CMN_CHANNEL_NONE);
    cr_assert_eq(cmn_channel_parse("pigeon"), CMN_CHANNEL_NONE);
}

Test(urgency, names_and_parse)
{
    static const char *const names[] = {"low", "normal", "high", "critical"};
    for (int u = CMN_URGENCY_LOW; u <= CMN_URGENCY_CRITICAL; u++) {
        cr_assert_str_eq(cmn_urgency_name((cmn_urgency_t)u), names[u]);
        cmn_urgency_t out = CMN_URGENCY_LOW;
        cr_assert_eq(cmn_urgency_parse(names[u], &out), CMN_OK);
        cr_assert_eq(out, u);
    }
    cr_assert_str_eq(cmn_urgency_name((cmn_urgency_t)7), "");
    cr_assert_str_eq(cmn_urgency_name((cmn_urgency_t)-1), "");
}

Test(urgency, parse_rejects_unknown_and_leaves_output)
{
    cmn_urgency_t out = CMN_URGENCY_HIGH;
    cr_assert_eq(cmn_urgency_parse("urgent", &out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_urgency_parse("HIGH", &out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_urgency_parse("", &out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_urgency_parse(NULL, &out), CMN_ERR_INVALID);
    cr_assert_eq(cmn_urgency_parse("low", NULL), CMN_ERR_INVALID);
    cr_assert_eq(out, CMN_URGENCY_HIGH);
}
