/* test_sms.c - GSM-7/UCS-2 detection, segments and the length limit
 * (crm/sms.h), at every boundary. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/sms.h"

/* n copies of the UTF-8 sequence unit, then tail (may be ""), malloc'd. */
static char *rep(const char *unit, size_t n, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * n + tl + 1);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * n, tail, tl + 1);
    return s;
}

static cmn_sms_info_t analyze(const char *text)
{
    cmn_sms_info_t info;
    cr_assert_eq(cmn_sms_analyze(text, &info), 0);
    return info;
}

static void expect_text(const char *unit, size_t n, const char *tail, cmn_sms_encoding_t enc, size_t units,
                        size_t segments)
{
    char *s = rep(unit, n, tail);
    cmn_sms_info_t info = analyze(s);
    cr_expect_eq(info.encoding, enc, "%zu x '%s' + '%s': encoding", n, unit, tail);
    cr_expect_eq(info.units, units, "%zu x '%s' + '%s': units %zu", n, unit, tail, info.units);
    cr_expect_eq(info.segments, segments, "%zu x '%s' + '%s': segments %zu", n, unit, tail, info.segments);
    free(s);
}

Test(sms, empty_text)
{
    cmn_sms_info_t info = analyze("");
    cr_expect_eq(info.encoding, CMN_SMS_GSM7);
    cr_expect_eq(info.segments, 0);
    cr_expect_eq(info.characters, 0);
    cr_expect_eq(info.within_limit, 1);
}

Test(sms, gsm7_single_and_multipart_boundaries)
{
    expect_text("a", 1, "", CMN_SMS_GSM7, 1, 1);
    expect_text("a", 160, "", CMN_SMS_GSM7, 160, 1);
    expect_text("a", 161, "", CMN_SMS_GSM7, 161, 2);
    expect_text("a", 153 * 2, "", CMN_SMS_GSM7, 306, 2);
    expect_text("a", 153 * 2 + 1, "", CMN_SMS_GSM7, 307, 3);
    expect_text("a", 153 * 3, "", CMN_SMS_GSM7, 459, 3);
}

Test(sms, gsm7_basic_set_accents_and_greek_stay_gsm7)
{
    /* é, à, ü, ñ, Ç, Ø, Å, ß, £, ¥, §, ¿, ¡, Δ, Ω, @, newline: all basic set. */
    cmn_sms_info_t info = analyze("\xc3\xa9\xc3\xa0\xc3\xbc\xc3\xb1\xc3\x87\xc3\x98\xc3\x85\xc3\x9f\xc2\xa3\xc2\xa5"
                                  "\xc2\xa7\xc2\xbf\xc2\xa1\xce\x94\xce\xa9@\n");
    cr_expect_eq(info.encoding, CMN_SMS_GSM7);
    cr_expect_eq(info.characters, 17);
    cr_expect_eq(info.units, 17);
    /* ê, ç (lower case), á are not in GSM 03.38: UCS-2. */
    cr_expect_eq(analyze("cr\xc3\xaape").encoding, CMN_SMS_UCS2);
    cr_expect_eq(analyze("gar\xc3\xa7on").encoding, CMN_SMS_UCS2);
    cr_expect_eq(analyze("\xc3\xa1").encoding, CMN_SMS_UCS2);
    /* Curly quotes are not GSM either (Twilio's "smart encoding" exists for this). */
    cr_expect_eq(analyze("\xe2\x80\x9chi\xe2\x80\x9d").encoding, CMN_SMS_UCS2);
}

Test(sms, extension_characters_count_two_septets)
{
    const char *ext[] = {"\xe2\x82\xac", "^", "{", "}", "[", "~", "]", "|", "\\", "\f"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        cmn_sms_info_t info = analyze(ext[i]);
        cr_expect_eq(info.encoding, CMN_SMS_GSM7, "ext #%zu", i);
        cr_expect_eq(info.units, 2, "ext #%zu", i);
        cr_expect_eq(info.characters, 1, "ext #%zu", i);
        cr_expect_eq(cmn_sms_gsm7_cost(i == 0 ? 0x20AC : (unsigned char)ext[i][0]), 2);
    }
    /* 80 euro signs are 160 septets: one SMS; one more character, two. */
    expect_text("\xe2\x82\xac", 80, "", CMN_SMS_GSM7, 160, 1);
    expect_text("\xe2\x82\xac", 80, "a", CMN_SMS_GSM7, 161, 2);
    expect_text("a", 159, "\xe2\x82\xac", CMN_SMS_GSM7, 161, 2);
}

Test(sms, escape_pair_is_never_split_across_parts)
{
    /* 152 septets then a euro: 154 would straddle the 153-septet part, so
     * the euro opens part 2 (152 | 2 + 7 = 9), 2 parts. */
    expect_text("a", 152, "\xe2\x82\xac" "aaaaaaa", CMN_SMS_GSM7, 161, 2);
    /* 152 + euro + 152: a naive 306/153 says 2 parts, but the euro moves to
     * part 2, which then holds 2 + 151 and the last 'a' spills: 3 parts. */
    char *s = rep("a", 152, "\xe2\x82\xac");
    char *t = rep("a", 152, "");
    char *both = malloc(strlen(s) + strlen(t) + 1);
    strcpy(both, s);
    strcat(both, t);
    cmn_sms_info_t info = analyze(both);
    cr_expect_eq(info.units, 306);
    cr_expect_eq(info.segments, 3);
    free(s);
    free(t);
    free(both);
    /* A euro that ends part 1 exactly (151 + 2 = 153) stays there. */
    expect_text("a", 151, "\xe2\x82\xac" "aaaaaaaa", CMN_SMS_GSM7, 161, 2);
    expect_text("a", 151, "\xe2\x82\xac" "\xe2\x82\xac", CMN_SMS_GSM7, 155, 1);
}

Test(sms, ucs2_single_and_multipart_boundaries)
{
    /* Cyrillic 'ж' (U+0436): one UTF-16 unit, not GSM. */
    expect_text("\xd0\xb6", 70, "", CMN_SMS_UCS2, 70, 1);
    expect_text("\xd0\xb6", 71, "", CMN_SMS_UCS2, 71, 2);
    expect_text("\xd0\xb6", 67 * 2, "", CMN_SMS_UCS2, 134, 2);
    expect_text("\xd0\xb6", 67 * 2 + 1, "", CMN_SMS_UCS2, 135, 3);
    /* One non-GSM character turns a GSM text of 160 into UCS-2: 3 parts. */
    expect_text("a", 159, "\xd0\xb6", CMN_SMS_UCS2, 160, 3);
}

Test(sms, emoji_count_two_units_and_are_never_split)
{
    const char *smile = "\xf0\x9f\x98\x80"; /* U+1F600, a surrogate pair */
    cmn_sms_info_t info = analyze(smile);
    cr_expect_eq(info.encoding, CMN_SMS_UCS2);
    cr_expect_eq(info.characters, 1);
    cr_expect_eq(info.units, 2);
    /* 35 emoji = 70 units: one SMS; 36: two. */
    expect_text(smile, 35, "", CMN_SMS_UCS2, 70, 1);
    expect_text(smile, 36, "", CMN_SMS_UCS2, 72, 2);
    /* 66 units, then an emoji: it cannot take the 67th unit alone, so it
     * opens part 2 (66 | 2 + 3). */
    expect_text("\xd0\xb6", 66, "\xf0\x9f\x98\x80\xd0\xb6\xd0\xb6\xd0\xb6", CMN_SMS_UCS2, 71, 2);
    /* 67 emoji = 134 units, but each part holds 33 pairs (66 units): 3 parts. */
    expect_text(smile, 67, "", CMN_SMS_UCS2, 134, 3);
    /* 65 units + emoji fits part 1 exactly (67). */
    expect_text("\xd0\xb6", 65, "\xf0\x9f\x98\x80" "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6", CMN_SMS_UCS2, 72, 2);
}

Test(sms, twilio_1600_limit)
{
    char *s = rep("a", 1600, "");
    cmn_sms_info_t info = analyze(s);
    cr_expect_eq(info.within_limit, 1);
    cr_expect_eq(info.segments, 11); /* ceil(1600 / 153) */
    free(s);
    s = rep("a", 1601, "");
    cr_expect_eq(analyze(s).within_limit, 0);
    free(s);
    /* UCS-2 counts UTF-16 units: 800 emoji are 1600, 801 are over. */
    s = rep("\xf0\x9f\x98\x80", 800, "");
    info = analyze(s);
    cr_expect_eq(info.characters, 800);
    cr_expect_eq(info.units, 1600);
    cr_expect_eq(info.within_limit, 1);
    free(s);
    s = rep("\xf0\x9f\x98\x80", 800, "a");
    cr_expect_eq(analyze(s).within_limit, 0);
    free(s);
    /* Extension characters count 2 toward the limit. */
    s = rep("{", 800, "");
    cr_expect_eq(analyze(s).within_limit, 1);
    free(s);
    s = rep("{", 800, "a");
    cr_expect_eq(analyze(s).within_limit, 0);
    free(s);
}

Test(sms, invalid_utf8_is_an_error)
{
    const char *bad[] = {
        "\x80",                 /* lone continuation */
        "abc\xc3",              /* truncated */
        "\xc0\xaf",             /* overlong '/' */
        "\xe0\x80\xaf",         /* overlong */
        "\xed\xa0\x80",         /* UTF-16 surrogate encoded */
        "\xf4\x90\x80\x80",     /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cmn_sms_info_t info;
        memset(&info, 0x5a, sizeof info);
        cr_expect_eq(cmn_sms_analyze(bad[i], &info), CMN_ERR_INVALID, "input #%zu", i);
        cr_expect_eq(info.segments, 0);
    }
    cmn_sms_info_t info;
    cr_expect_eq(cmn_sms_analyze(NULL, &info), CMN_ERR_INVALID);
    cr_expect_eq(cmn_sms_analyze("a", NULL), CMN_ERR_INVALID);
    /* The largest code point and a 3-byte character are fine. */
    cr_expect_eq(cmn_sms_analyze("\xf4\x8f\xbf\xbf\xe2\x82\xac", &info), 0);
}

Test(sms, basic_table_has_127_characters)
{
    /* GSM 03.38 has 128 positions; 0x1B is the escape, not a character. */
    int n = 0;
    for (unsigned long cp = 0; cp < 0x10000; cp++)
        n += cmn_sms_gsm7_cost(cp) == 1;
    cr_expect_eq(n, 127);
    cr_expect_eq(cmn_sms_gsm7_cost(0x1B), 0);
}

Test(sms, details_json)
{
    char buf[128];
    cmn_sms_info_t info = analyze("hello \xe2\x82\xac");
    cr_assert_eq(cmn_sms_details_json(&info, buf, sizeof buf), 0);
    cr_expect_str_eq(buf, "{\"encoding\":\"GSM-7\",\"segments\":1,\"characters\":7,\"units\":8}");
    cr_expect_eq(cmn_sms_details_json(&info, buf, 10), CMN_ERR_OVERFLOW);
    cr_expect_str_eq(buf, "");
    cr_expect_str_eq(cmn_sms_encoding_name(CMN_SMS_UCS2), "UCS-2");
}
