/* sms.c - GSM-7/UCS-2 detection, segment count and length limit. See
 * crm/sms.h. */
#include "crm/sms.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"

/* GSM 03.38 basic character set, as Unicode code points, in table order
 * (0x00..0x7F). 0x1B is the escape to the extension table, not a character,
 * so it is left out (a literal U+001B in a text needs UCS-2). */
static const uint16_t GSM7_BASIC[] = {
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8,
    0x000D, 0x00C5, 0x00E5, 0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, 0x03A3, 0x0398,
    0x039E, /* 0x1B escape */ 0x00C6, 0x00E6, 0x00DF, 0x00C9, 0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025,
    0x0026, 0x0027, 0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F, 0x0030, 0x0031, 0x0032,
    0x0033, 0x0034, 0x0035, 0x0036, 0x0037, 0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F,
    0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047, 0x0048, 0x0049, 0x004A, 0x004B, 0x004C,
    0x004D, 0x004E, 0x004F, 0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057, 0x0058, 0x0059,
    0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, 0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066,
    0x0067, 0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F, 0x0070, 0x0071, 0x0072, 0x0073,
    0x0074, 0x0075, 0x0076, 0x0077, 0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
};

/* The extension table characters reachable through the escape: form feed,
 * ^ { } \ [ ~ ] | and the euro sign. */
static const uint16_t GSM7_EXTENSION[] = {0x000C, 0x005E, 0x007B, 0x007D, 0x005C, 0x005B,
                                          0x007E, 0x005D, 0x007C, 0x20AC};

static int in_table(const uint16_t *table, size_t n, unsigned long cp)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i] == cp)
            return 1;
    }
    return 0;
}

int cmn_sms_gsm7_cost(unsigned long cp)
{
    if (in_table(GSM7_BASIC, sizeof GSM7_BASIC / sizeof GSM7_BASIC[0], cp))
        return 1;
    if (in_table(GSM7_EXTENSION, sizeof GSM7_EXTENSION / sizeof GSM7_EXTENSION[0], cp))
        return 2;
    return 0;
}

const char *cmn_sms_encoding_name(cmn_sms_encoding_t e)
{
    return e == CMN_SMS_UCS2 ? "UCS-2" : "GSM-7";
}

/* Decodes one UTF-8 sequence at s. Returns its length (1..4) with the code
 * point in *cp, or 0 when the sequence is invalid (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_next(const unsigned char *s, unsigned long *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    unsigned long min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
        *cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
        *cp = c & 0x07;
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL of a truncated sequence */
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return len;
}

/* Number of parts when characters costing costs[i] units are packed in
 * order into parts of `part` units, none split across two parts. */
typedef struct packer {
    size_t part;  /* capacity of one part */
    size_t used;  /* units in the current part */
    size_t parts; /* parts started so far */
} packer_t;

static void pack(packer_t *p, size_t cost)
{
    if (p->parts == 0 || p->used + cost > p->part) {
        p->parts++;
        p->used = 0;
    }
    p->used += cost;
}

int cmn_sms_analyze(const char *text, cmn_sms_info_t *out)
{
    if (out == NULL)
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (text == NULL)
        return CMN_ERR_INVALID;

    /* Two passes: the encoding (and so the unit of every character) is only
     * known once the whole text has been seen. The first pass validates. */
    const unsigned char *s = (const unsigned char *)text;
    size_t characters = 0, septets = 0, utf16 = 0;
    int gsm7 = 1;
    for (size_t i = 0; s[i] != '\0';) {
        unsigned long cp = 0;
        size_t len = utf8_next(s + i, &cp);
        if (len == 0)
            return CMN_ERR_INVALID;
        int cost = cmn_sms_gsm7_cost(cp);
        if (cost == 0)
            gsm7 = 0;
        septets += (size_t)cost;
        utf16 += cp >= 0x10000 ? 2 : 1;
        characters++;
        i += len;
    }

    size_t units = gsm7 ? septets : utf16;
    size_t single = gsm7 ? CMN_SMS_GSM7_SINGLE : CMN_SMS_UCS2_SINGLE;
    size_t segments = units == 0 ? 0 : 1;
    if (units > single) {
        packer_t p = {.part = gsm7 ? CMN_SMS_GSM7_PART : CMN_SMS_UCS2_PART, .used = 0, .parts = 0};
        for (size_t i = 0; s[i] != '\0';) {
            unsigned long cp = 0;
            size_t len = utf8_next(s + i, &cp);
            pack(&p, gsm7 ? (size_t)cmn_sms_gsm7_cost(cp) : (cp >= 0x10000 ? 2u : 1u));
            i += len;
        }
        segments = p.parts;
    }
    out->encoding = gsm7 ? CMN_SMS_GSM7 : CMN_SMS_UCS2;
    out->characters = characters;
    out->units = units;
    out->segments = segments;
    out->within_limit = units <= CMN_SMS_MAX_UNITS;
    return 0;
}

int cmn_sms_details_json(const cmn_sms_info_t *info, char *buf, size_t buflen)
{
    if (info == NULL || buf == NULL || buflen == 0)
        return CMN_ERR_INVALID;
    int n = snprintf(buf, buflen, "{\"encoding\":\"%s\",\"segments\":%zu,\"characters\":%zu,\"units\":%zu}",
                     cmn_sms_encoding_name(info->encoding), info->segments, info->characters, info->units);
    if (n < 0 || (size_t)n >= buflen) {
        buf[0] = '\0';
        return CMN_ERR_OVERFLOW;
    }
    return 0;
}
