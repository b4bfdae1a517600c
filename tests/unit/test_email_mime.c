/* Unit tests of the email MIME builder (services/email-worker/email_mime.c).
 *
 * The checks decode what the builder wrote with small, independent decoders
 * written here from the RFCs (2047 encoded words, 2045 quoted-printable and
 * base64, 2231 parameters), so an encoder bug cannot hide behind a matching
 * decoder bug. The integration test also parses real messages with Python's
 * email package. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "email_mime.h"

/* ------------------------------------------------------------- helpers */

static const email_mime_input_t BASE = {
    .from = {.name = "CRM Clinic", .addr = "noreply@clinic.example"},
    .to = {.name = "Ana Silva", .addr = "ana@example.com"},
    .subject = "Your appointment",
    .text = "Hello Ana,\nSee you tomorrow.\n",
    .html = "<p>Hello Ana,</p>\n<p>See you tomorrow.</p>\n",
    .date_ms = 1795309323456LL, /* 2026-11-22T01:02:03.456Z */
    .id_token = "6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a99",
    .boundary_token = "0123456789abcdefABCDEF",
};

static char *build_ok(const email_mime_input_t *in, char msgid[EMAIL_MIME_MSGID_MAX])
{
    cmn_buf_t out = CMN_BUF_INIT;
    email_mime_error_t err = {0};
    int rc = email_mime_build(in, &out, msgid, &err);
    cr_assert_eq(rc, 0, "build failed: %s %s", err.code ? err.code : "-", err.detail);
    return cmn_buf_steal(&out);
}

static const char *build_err(const email_mime_input_t *in)
{
    static email_mime_error_t err;
    cmn_buf_t out = CMN_BUF_INIT;
    char msgid[EMAIL_MIME_MSGID_MAX];
    memset(&err, 0, sizeof err);
    int rc = email_mime_build(in, &out, msgid, &err);
    cmn_buf_free(&out);
    cr_assert_eq(rc, CMN_ERR_INVALID, "build should have failed");
    cr_assert_not_null(err.code);
    return err.code;
}

/* Every line ends in CRLF, no bare CR or LF, none longer than max. */
static void assert_lines(const char *msg, size_t max)
{
    size_t col = 0, line = 1;
    for (const char *p = msg; *p != '\0'; p++) {
        if (*p == '\r') {
            cr_assert_eq(p[1], '\n', "bare CR on line %zu", line);
            p++;
            col = 0;
            line++;
            continue;
        }
        cr_assert_neq(*p, '\n', "bare LF on line %zu", line);
        col++;
        cr_assert_leq(col, max, "line %zu is longer than %zu", line, max);
    }
    size_t len = strlen(msg);
    cr_assert(len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n', "message does not end in CRLF");
}

/* The header block's raw text (up to the blank line). */
static size_t header_block_len(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");
    cr_assert_not_null(end);
    return (size_t)(end - msg) + 2;
}

/* Unfolded value of header `name` in the top-level header block, malloc'd. */
static char *header(const char *msg, const char *name)
{
    size_t hlen = header_block_len(msg), nlen = strlen(name);
    const char *p = msg;
    while (p < msg + hlen) {
        const char *eol = strstr(p, "\r\n");
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            cmn_buf_t v = CMN_BUF_INIT;
            const char *q = p + nlen + 1;
            while (*q == ' ')
                q++;
            for (;;) {
                const char *e = strstr(q, "\r\n");
                cmn_buf_append(&v, q, (size_t)(e - q));
                if (e[2] != ' ' && e[2] != '\t')
                    break;
                q = e + 2; /* unfolding removes the CRLF only */
            }
            cmn_buf_puts(&v, "");
            return cmn_buf_steal(&v);
        }
        p = eol + 2;
    }
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static size_t b64_decode(const char *s, size_t n, unsigned char *out)
{
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(A, s[i]);
        if (s[i] == '=' || s[i] == '\r' || s[i] == '\n' || p == NULL)
            continue;
        acc = (acc << 6) | (unsigned)(p - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* 1 when s (len bytes) is well-formed UTF-8. */
static int utf8_ok(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC2 ? 2 : 0;
        if (n == 0 || i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

/* RFC 2047 decoding of an unfolded unstructured value. Checks on the way
 * that each encoded word is at most 75 chars and holds whole characters. */
static char *rfc2047_decode(const char *v)
{
    cmn_buf_t out = CMN_BUF_INIT;
    const char *p = v;
    int prev_was_word = 0;
    while (*p != '\0') {
        if (strncmp(p, "=?", 2) == 0) {
            const char *q1 = strchr(p + 2, '?');
            cr_assert_not_null(q1);
            cr_assert(strncasecmp(p + 2, "UTF-8", 5) == 0, "charset is not UTF-8");
            char enc = q1[1];
            cr_assert_eq(q1[2], '?');
            const char *text = q1 + 3;
            const char *end = strstr(text, "?=");
            cr_assert_not_null(end);
            cr_assert_leq((size_t)(end + 2 - p), 75, "encoded word longer than 75");
            unsigned char word[200];
            size_t wn = 0;
            if (enc == 'Q' || enc == 'q') {
                for (const char *c = text; c < end; c++) {
                    if (*c == '_') {
                        word[wn++] = ' ';
                    } else if (*c == '=') {
                        word[wn++] = (unsigned char)(hexval(c[1]) * 16 + hexval(c[2]));
                        c += 2;
                    } else {
                        word[wn++] = (unsigned char)*c;
                    }
                }
            } else {
                cr_assert(enc == 'B' || enc == 'b');
                wn = b64_decode(text, (size_t)(end - text), word);
            }
            cr_assert(utf8_ok(word, wn), "an encoded word splits a UTF-8 character");
            cmn_buf_append(&out, word, wn);
            p = end + 2;
            prev_was_word = 1;
            continue;
        }
        /* Whitespace between two encoded words is not part of the text. */
        if (*p == ' ' && prev_was_word) {
            const char *q = p;
            while (*q == ' ')
                q++;
            if (strncmp(q, "=?", 2) == 0) {
                p = q;
                continue;
            }
        }
        cmn_buf_putc(&out, *p++);
        prev_was_word = 0;
    }
    cmn_buf_puts(&out, "");
    return cmn_buf_steal(&out);
}

static char *qp_decode(const char *s, size_t n)
{
    cmn_buf_t out = CMN_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && i + 2 < n + 1 && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2; /* soft line break */
        } else if (s[i] == '=') {
            cr_assert(hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0, "bad =XX at %zu", i);
            cr_assert(!(s[i + 1] >= 'a' && s[i + 1] <= 'f'), "lower-case hex in quoted-printable");
            cmn_buf_putc(&out, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            cmn_buf_putc(&out, s[i]);
        }
    }
    cmn_buf_puts(&out, "");
    return cmn_buf_steal(&out);
}

/* The body of the MIME part whose headers contain `marker`, up to the next
 * CRLF "--" boundary line (the CRLF belongs to the delimiter). */
static char *part_body(const char *msg, const char *marker, size_t *len)
{
    const char *m = strstr(msg, marker);
    cr_assert_not_null(m, "no part with %s", marker);
    const char *body = strstr(m, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    const char *end = strstr(body, "\r\n--=_");
    cr_assert_not_null(end);
    *len = (size_t)(end - body);
    return strndup(body, *len);
}

/* -------------------------------------------------------------- headers */

Test(email_mime, top_level_headers)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    char *msg = build_ok(&BASE, msgid);
    cr_assert_str_eq(msgid, "<6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a99@clinic.example>");
    char *v = header(msg, "Message-ID");
    cr_assert_str_eq(v, msgid);
    free(v);
    v = header(msg, "Date");
    cr_assert_str_eq(v, "Sun, 22 Nov 2026 01:02:03 +0000");
    free(v);
    v = header(msg, "From");
    cr_assert_str_eq(v, "\"CRM Clinic\" <noreply@clinic.example>");
    free(v);
    v = header(msg, "To");
    cr_assert_str_eq(v, "\"Ana Silva\" <ana@example.com>");
    free(v);
    v = header(msg, "Subject");
    cr_assert_str_eq(v, "Your appointment");
    free(v);
    v = header(msg, "MIME-Version");
    cr_assert_str_eq(v, "1.0");
    free(v);
    assert_lines(msg, 78 + 0);
    free(msg);
}

Test(email_mime, list_unsubscribe_headers)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    char *msg = build_ok(&BASE, msgid);
    cr_expect_null(header(msg, "List-Unsubscribe"), "none unless asked for");
    cr_expect_null(header(msg, "List-Unsubscribe-Post"));
    free(msg);

    email_mime_input_t in = BASE;
    in.unsubscribe_url = "https://hooks.example.com/u/AQEAAQ-PrVvZy0afoWVwhncolQ4";
    in.unsubscribe_mailto = "mailto:unsubscribe@clinic.example?subject=unsubscribe-AQEAAQ-PrVvZy0afoWVwhncolQ4";
    msg = build_ok(&in, msgid);
    char *v = header(msg, "List-Unsubscribe");
    cr_assert_not_null(v);
    cr_expect_str_eq(v, "<https://hooks.example.com/u/AQEAAQ-PrVvZy0afoWVwhncolQ4>, "
                        "<mailto:unsubscribe@clinic.example?subject=unsubscribe-AQEAAQ-PrVvZy0afoWVwhncolQ4>");
    free(v);
    v = header(msg, "List-Unsubscribe-Post");
    cr_assert_not_null(v);
    cr_expect_str_eq(v, "List-Unsubscribe=One-Click");
    free(v);
    /* Top-level headers, before the body: after Message-ID, before MIME-Version. */
    const char *lu = strstr(msg, "\r\nList-Unsubscribe: ");
    const char *post = strstr(msg, "\r\nList-Unsubscribe-Post: ");
    cr_assert_not_null(lu);
    cr_assert_not_null(post);
    cr_expect_lt(strstr(msg, "\r\nMessage-ID: "), lu);
    cr_expect_lt(lu, post);
    cr_expect_lt(post, strstr(msg, "\r\nMIME-Version: "));
    cr_expect_lt((size_t)(post - msg), header_block_len(msg));
    assert_lines(msg, 998);
    free(msg);

    /* mailto only: no one-click (RFC 8058 needs an HTTPS URI). */
    in.unsubscribe_url = NULL;
    msg = build_ok(&in, msgid);
    v = header(msg, "List-Unsubscribe");
    cr_expect_str_eq(v, "<mailto:unsubscribe@clinic.example?subject=unsubscribe-AQEAAQ-PrVvZy0afoWVwhncolQ4>");
    free(v);
    cr_expect_null(header(msg, "List-Unsubscribe-Post"));
    free(msg);

    /* A plain http URL (a local receiver): listed, but no one-click. */
    in.unsubscribe_url = "http://127.0.0.1:8080/u/AQID";
    in.unsubscribe_mailto = NULL;
    msg = build_ok(&in, msgid);
    v = header(msg, "List-Unsubscribe");
    cr_expect_str_eq(v, "<http://127.0.0.1:8080/u/AQID>");
    free(v);
    cr_expect_null(header(msg, "List-Unsubscribe-Post"));
    free(msg);

    /* The longest URI still keeps every line within 998 octets. */
    char longest[EMAIL_MIME_MAX_UNSUB_URI + 2];
    strcpy(longest, "https://hooks.example.com/u/");
    memset(longest + 28, 'A', EMAIL_MIME_MAX_UNSUB_URI - 28);
    longest[EMAIL_MIME_MAX_UNSUB_URI] = '\0';
    in.unsubscribe_url = longest;
    in.unsubscribe_mailto = "mailto:u@clinic.example";
    msg = build_ok(&in, msgid);
    assert_lines(msg, 998);
    free(msg);
}

Test(email_mime, list_unsubscribe_uris_checked)
{
    struct {
        const char *url, *mailto, *code;
    } cases[] = {
        {"https://h.example/u/A\r\nBcc: victim@evil.example", NULL, "header_injection"},
        {NULL, "mailto:u@h.example\nBcc: victim@evil.example", "header_injection"},
        {"https://h.example/u/A B", NULL, "invalid_header"},
        {"https://h.example/u/A>, <https://evil.example/", NULL, "invalid_header"},
        {"https://h.example/u/A,B", NULL, "invalid_header"},
        {"https://h.example/u/\x01", NULL, "invalid_header"},
        {"https://h.example/u/\xc3\xa9", NULL, "invalid_header"},
        {"ftp://h.example/u/A", NULL, "invalid_header"},
        {"mailto:u@h.example", NULL, "invalid_header"},
        {NULL, "https://h.example/u/A", "invalid_header"},
    };
    char overlong[EMAIL_MIME_MAX_UNSUB_URI + 2];
    strcpy(overlong, "https://h.example/u/");
    memset(overlong + 20, 'A', EMAIL_MIME_MAX_UNSUB_URI + 1 - 20);
    overlong[EMAIL_MIME_MAX_UNSUB_URI + 1] = '\0';
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        email_mime_input_t in = BASE;
        in.unsubscribe_url = cases[i].url;
        in.unsubscribe_mailto = cases[i].mailto;
        cr_expect_str_eq(build_err(&in), cases[i].code, "case %zu", i);
    }
    email_mime_input_t in = BASE;
    in.unsubscribe_url = overlong;
    cr_expect_str_eq(build_err(&in), "invalid_header");
}

Test(email_mime, date_format)
{
    char d[64];
    cr_assert_eq(email_mime_format_date(0, d, sizeof d), 0);
    cr_assert_str_eq(d, "Thu, 01 Jan 1970 00:00:00 +0000");
    cr_assert_eq(email_mime_format_date(951782400000LL, d, sizeof d), 0); /* leap day 2000 */
    cr_assert_str_eq(d, "Tue, 29 Feb 2000 00:00:00 +0000");
    cr_assert_neq(email_mime_format_date(0, d, 10), 0);
}

Test(email_mime, display_names_quoted_or_encoded)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.from.name = "Dr. \"Bob\" O'Neil \\ Co";
    in.to.name = "Zoë Ångström";
    char *msg = build_ok(&in, msgid);
    char *v = header(msg, "From");
    cr_assert_str_eq(v, "\"Dr. \\\"Bob\\\" O'Neil \\\\ Co\" <noreply@clinic.example>");
    free(v);
    v = header(msg, "To");
    cr_assert(strncmp(v, "=?UTF-8?", 8) == 0, "non-ASCII name not encoded: %s", v);
    cr_assert_not_null(strstr(v, " <ana@example.com>"));
    *strstr(v, " <ana@example.com>") = '\0';
    char *dec = rfc2047_decode(v);
    cr_assert_str_eq(dec, "Zoë Ångström");
    free(dec);
    free(v);
    free(msg);

    /* No name: a bare address. */
    in = BASE;
    in.to.name = NULL;
    in.from.name = "";
    msg = build_ok(&in, msgid);
    v = header(msg, "To");
    cr_assert_str_eq(v, "ana@example.com");
    free(v);
    v = header(msg, "From");
    cr_assert_str_eq(v, "noreply@clinic.example");
    free(v);
    free(msg);
}

Test(email_mime, long_utf8_name_folds_and_round_trips)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.to.name = "Maria da Conceição Guimarães Figueiredo de Albuquerque e Vasconcelos Sá";
    char *msg = build_ok(&in, msgid);
    assert_lines(msg, 78);
    char *v = header(msg, "To");
    char *addr = strstr(v, " <ana@example.com>");
    cr_assert_not_null(addr);
    *addr = '\0';
    char *dec = rfc2047_decode(v);
    cr_assert_str_eq(dec, in.to.name);
    free(dec);
    free(v);
    free(msg);
}

/* ----------------------------------------------------- subject encoding */

static void check_subject_round_trip(const char *subject)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.subject = subject;
    char *msg = build_ok(&in, msgid);
    /* Header lines stay within 78 columns. */
    size_t hlen = header_block_len(msg);
    char *head = strndup(msg, hlen);
    char *saveptr = NULL;
    for (char *l = strtok_r(head, "\r\n", &saveptr); l != NULL; l = strtok_r(NULL, "\r\n", &saveptr))
        cr_assert_leq(strlen(l), 78, "header line too long: %s", l);
    free(head);
    char *v = header(msg, "Subject");
    char *dec = rfc2047_decode(v);
    cr_assert_str_eq(dec, subject, "subject did not round-trip: %s", v);
    free(dec);
    free(v);
    free(msg);
}

Test(email_mime, utf8_subject_encoded_and_round_trips)
{
    check_subject_round_trip("Rappel : votre rendez-vous le 22/11 à 14 h 30");
    check_subject_round_trip("Erinnerung: Ihr Termin am Dienstag um 9:00 Uhr – bitte bestätigen");
    check_subject_round_trip("Привет! Ваш заказ №12345 готов к выдаче в пункте самовывоза");
    check_subject_round_trip("ご予約のリマインダー：明日の午後三時です。よろしくお願いいたします。");
}

Test(email_mime, emoji_subject_never_split)
{
    /* Four-byte characters near every possible word edge. */
    check_subject_round_trip("🎉🎉🎉 You're invited 🎉 to the gala 🥂🍾 on Saturday 🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶🎶");
    check_subject_round_trip("👩‍👩‍👧‍👦 family plan");
    check_subject_round_trip("é");
}

Test(email_mime, utf8_subject_uses_encoded_words)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.subject = "Paiement reçu : 42,00 €";
    char *msg = build_ok(&in, msgid);
    char *v = header(msg, "Subject");
    cr_assert(strncmp(v, "=?UTF-8?Q?", 10) == 0 || strncmp(v, "=?UTF-8?B?", 10) == 0, "%s", v);
    /* No raw 8-bit byte anywhere in the headers. */
    size_t hlen = header_block_len(msg);
    for (size_t i = 0; i < hlen; i++)
        cr_assert_lt((unsigned char)msg[i], 0x80, "8-bit byte in headers at %zu", i);
    free(v);
    free(msg);
}

Test(email_mime, long_ascii_subject_folded_at_spaces)
{
    const char *s = "This is a rather long subject line that certainly needs folding because it goes on "
                    "and on past seventy-eight columns more than once";
    check_subject_round_trip(s);
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.subject = s;
    char *msg = build_ok(&in, msgid);
    char *v = header(msg, "Subject");
    cr_assert_str_eq(v, s, "plain ASCII should stay readable, only folded");
    free(v);
    free(msg);
}

Test(email_mime, ascii_that_looks_encoded_is_encoded)
{
    check_subject_round_trip("=?UTF-8?Q?not_an_encoded_word?=");
    check_subject_round_trip(" leading and trailing spaces ");
    check_subject_round_trip("double  space");
    check_subject_round_trip("tab\there");
    check_subject_round_trip("averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongwordwithoutspaces");
    check_subject_round_trip("");
}

/* -------------------------------------------------- header injection */

Test(email_mime, crlf_refused_in_every_user_header)
{
    const char *bad[] = {"x\r\nBcc: victim@example.com", "x\nBcc: victim@example.com", "x\rBcc: y", "\r\n"};
    email_attachment_t att = {.filename = "a.pdf", .content_type = "application/pdf",
                              .data = (const unsigned char *)"%PDF", .len = 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        email_mime_input_t in = BASE;
        in.subject = bad[i];
        cr_assert_str_eq(build_err(&in), "header_injection", "subject");
        in = BASE;
        in.to.name = bad[i];
        cr_assert_str_eq(build_err(&in), "header_injection", "to name");
        in = BASE;
        in.from.name = bad[i];
        cr_assert_str_eq(build_err(&in), "header_injection", "from name");
        in = BASE;
        in.to.addr = "ana@example.com\r\nBcc: victim@example.com";
        cr_assert_str_eq(build_err(&in), "header_injection", "to address");
        in = BASE;
        in.from.addr = "noreply@clinic.example\nX: y";
        cr_assert_str_eq(build_err(&in), "header_injection", "from address");

        email_attachment_t a = att;
        a.filename = bad[i];
        in = BASE;
        in.attachments = &a;
        in.n_attachments = 1;
        cr_assert_str_eq(build_err(&in), "header_injection", "filename");
        a = att;
        a.content_type = "text/plain\r\nX-Evil: 1";
        in.attachments = &a;
        cr_assert_str_eq(build_err(&in), "header_injection", "content type");
    }
}

Test(email_mime, refusal_leaves_detail_without_value)
{
    email_mime_input_t in = BASE;
    in.subject = "secret-value\r\nBcc: x@y.z";
    cmn_buf_t out = CMN_BUF_INIT;
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_error_t err = {0};
    cr_assert_eq(email_mime_build(&in, &out, msgid, &err), CMN_ERR_INVALID);
    cr_assert_str_eq(err.detail, "subject contains CR or LF");
    cr_assert_null(strstr(err.detail, "secret"));
    cmn_buf_free(&out);
}

Test(email_mime, other_bad_header_values)
{
    email_mime_input_t in = BASE;
    in.subject = "bell\a";
    cr_assert_str_eq(build_err(&in), "invalid_header");
    in = BASE;
    in.to.name = "bad \xC3\x28 utf8";
    cr_assert_str_eq(build_err(&in), "invalid_header");
    in = BASE;
    in.subject = "overlong \xC0\xAF";
    cr_assert_str_eq(build_err(&in), "invalid_header");
    in = BASE;
    in.subject = "surrogate \xED\xA0\x80";
    cr_assert_str_eq(build_err(&in), "invalid_header");
}

Test(email_mime, addresses_validated)
{
    cr_assert(email_mime_valid_address("ana@example.com"));
    cr_assert(email_mime_valid_address("a.b+tag@sub-domain.example.co"));
    cr_assert(email_mime_valid_address("fail550-x@localhost"));
    const char *bad[] = {"", "ana", "@example.com", "ana@", "a b@example.com", "ana@exa mple.com",
                         "<ana@example.com>", "ana@example.com>", "\"ana\"@example.com", "ana@@example.com",
                         "ana@example..com", ".ana@example.com", "ana.@example.com", "ana@-example.com",
                         "ana@example-.com", "anä@example.com", "ana@[127.0.0.1]", "a,b@example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(email_mime_valid_address(bad[i]), "accepted %s", bad[i]);
        email_mime_input_t in = BASE;
        in.to.addr = bad[i];
        cr_assert_str_eq(build_err(&in), "invalid_address", "%s", bad[i]);
    }
}

/* ------------------------------------------------------------ structure */

Test(email_mime, alternative_structure)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    char *msg = build_ok(&BASE, msgid);
    char *ct = header(msg, "Content-Type");
    cr_assert_str_eq(ct, "multipart/alternative; boundary=\"=_a_0123456789abcdefABCDEF\"");
    free(ct);
    const char *text = strstr(msg, "\r\n--=_a_0123456789abcdefABCDEF\r\nContent-Type: text/plain; charset=UTF-8\r\n");
    const char *html = strstr(msg, "\r\n--=_a_0123456789abcdefABCDEF\r\nContent-Type: text/html; charset=UTF-8\r\n");
    const char *close = strstr(msg, "\r\n--=_a_0123456789abcdefABCDEF--\r\n");
    cr_assert(text != NULL && html != NULL && close != NULL);
    cr_assert(text < html && html < close, "text must come before HTML (RFC 2046 5.1.4)");
    size_t n;
    char *body = part_body(msg, "text/plain", &n);
    char *dec = qp_decode(body, n);
    cr_assert_str_eq(dec, "Hello Ana,\r\nSee you tomorrow.\r\n");
    free(dec);
    free(body);
    body = part_body(msg, "text/html", &n);
    dec = qp_decode(body, n);
    cr_assert_str_eq(dec, "<p>Hello Ana,</p>\r\n<p>See you tomorrow.</p>\r\n");
    free(dec);
    free(body);
    assert_lines(msg, 998);
    free(msg);
}

Test(email_mime, text_only_message)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.html = NULL;
    in.text = "No HTML here.";
    char *msg = build_ok(&in, msgid);
    char *ct = header(msg, "Content-Type");
    cr_assert_str_eq(ct, "text/plain; charset=UTF-8");
    free(ct);
    cr_assert_null(strstr(msg, "multipart"));
    const char *body = strstr(msg, "\r\n\r\n") + 4;
    cr_assert_str_eq(body, "No HTML here.\r\n");
    free(msg);
}

Test(email_mime, attachments_in_mixed_with_rfc2231_names)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    unsigned char blob[3000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (unsigned char)(i * 7 + 3);
    email_attachment_t atts[] = {
        {.filename = "receipt-42.pdf", .content_type = "application/pdf", .data = blob, .len = sizeof blob},
        {.filename = "reçu d'été n°42 — facture très détaillée pour la clinique du centre.pdf",
         .content_type = NULL, .data = (const unsigned char *)"hi", .len = 2},
    };
    email_mime_input_t in = BASE;
    in.attachments = atts;
    in.n_attachments = 2;
    char *msg = build_ok(&in, msgid);
    assert_lines(msg, 78);
    char *ct = header(msg, "Content-Type");
    cr_assert_str_eq(ct, "multipart/mixed; boundary=\"=_m_0123456789abcdefABCDEF\"");
    free(ct);
    /* The alternative is the first part of the mixed one. */
    const char *first = strstr(msg, "--=_m_0123456789abcdefABCDEF\r\nContent-Type: multipart/alternative;");
    cr_assert_not_null(first);
    const char *alt_close = strstr(msg, "\r\n--=_a_0123456789abcdefABCDEF--\r\n--=_m_");
    cr_assert_not_null(alt_close);
    cr_assert_not_null(strstr(msg, "\r\n--=_m_0123456789abcdefABCDEF--\r\n"));

    /* First attachment: quoted ASCII filename, base64 that decodes to the bytes. */
    cr_assert_not_null(strstr(msg, "Content-Type: application/pdf;\r\n name=\"receipt-42.pdf\"\r\n"
                                   "Content-Disposition: attachment;\r\n filename=\"receipt-42.pdf\"\r\n"
                                   "Content-Transfer-Encoding: base64\r\n\r\n"));
    size_t n;
    char *b64 = part_body(msg, "filename=\"receipt-42.pdf\"", &n);
    unsigned char *dec = malloc(n);
    cr_assert_eq(b64_decode(b64, n, dec), sizeof blob);
    cr_assert_eq(memcmp(dec, blob, sizeof blob), 0);
    free(dec);
    free(b64);

    /* Second: RFC 2231 continuations; reassemble and percent-decode. */
    const char *disp = strstr(msg, "Content-Disposition: attachment;\r\n filename*0*=UTF-8''");
    cr_assert_not_null(disp, "non-ASCII filename should use RFC 2231");
    cr_assert_not_null(strstr(msg, "Content-Type: application/octet-stream;"));
    cmn_buf_t joined = CMN_BUF_INIT;
    const char *p = disp;
    for (int seg = 0;; seg++) {
        char key[32];
        snprintf(key, sizeof key, " filename*%d*=", seg);
        const char *k = strstr(p, key);
        const char *stop = strstr(disp, "\r\n\r\n");
        if (k == NULL || k > stop)
            break;
        k += strlen(key);
        if (seg == 0) {
            cr_assert(strncmp(k, "UTF-8''", 7) == 0);
            k += 7;
        }
        const char *e = k + strcspn(k, ";\r");
        cmn_buf_append(&joined, k, (size_t)(e - k));
        p = e;
    }
    cmn_buf_puts(&joined, "");
    cmn_buf_t name = CMN_BUF_INIT;
    for (const char *c = joined.data; *c != '\0'; c++) {
        if (*c == '%') {
            cmn_buf_putc(&name, (char)(hexval(c[1]) * 16 + hexval(c[2])));
            c += 2;
        } else {
            cmn_buf_putc(&name, *c);
        }
    }
    cmn_buf_puts(&name, "");
    cr_assert_str_eq(name.data, atts[1].filename);
    cmn_buf_free(&name);
    cmn_buf_free(&joined);
    free(msg);
}

Test(email_mime, bad_attachments)
{
    email_attachment_t a = {.filename = "x.bin", .content_type = "application/pdf; name=x",
                            .data = (const unsigned char *)"x", .len = 1};
    email_mime_input_t in = BASE;
    in.attachments = &a;
    in.n_attachments = 1;
    cr_assert_str_eq(build_err(&in), "invalid_attachment");
    a.content_type = "nosubtype";
    cr_assert_str_eq(build_err(&in), "invalid_attachment");
    a.content_type = NULL;
    a.filename = "";
    cr_assert_str_eq(build_err(&in), "invalid_attachment");
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    a.filename = longname;
    cr_assert_str_eq(build_err(&in), "invalid_attachment");
}

Test(email_mime, tokens_checked)
{
    email_mime_input_t in = BASE;
    in.boundary_token = "short";
    cr_assert_str_eq(build_err(&in), "invalid_input");
    in = BASE;
    in.id_token = "bad token";
    cr_assert_str_eq(build_err(&in), "invalid_input");
    in = BASE;
    in.text = NULL;
    cr_assert_str_eq(build_err(&in), "invalid_input");
}

/* ---------------------------------------------------- body encodings */

Test(email_mime, quoted_printable_rules)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"a=b", "a=3Db"},
        {"trailing space \nnext", "trailing space=20\r\nnext"},
        {"tab\t", "tab=09"},
        {"é", "=C3=A9"},
        {"unix\nlines\n", "unix\r\nlines\r\n"},
        {"mac\rline", "mac\r\nline"},
        {".dot first\n.", "=2Edot first\r\n=2E"},
        {"ctrl\x01", "ctrl=01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cmn_buf_t out = CMN_BUF_INIT;
        cr_assert_eq(email_mime_qp_encode(cases[i].in, strlen(cases[i].in), &out), 0);
        cmn_buf_puts(&out, "");
        cr_assert_str_eq(out.data, cases[i].out, "case %zu", i);
        cmn_buf_free(&out);
    }
}

Test(email_mime, quoted_printable_soft_breaks_and_round_trip)
{
    /* A deterministic mix of every byte value and long lines. */
    cmn_buf_t in = CMN_BUF_INIT;
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        unsigned char c = (unsigned char)(x >> 16);
        if (c == '\r' || c == '\n')
            c = (i % 500 == 0) ? '\n' : 'x'; /* line breaks are normalised; keep them LF */
        if (c == 0)
            c = ' ';
        cmn_buf_putc(&in, (char)c);
    }
    cmn_buf_puts(&in, "");
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(email_mime_qp_encode(in.data, in.len, &out), 0);
    cmn_buf_puts(&out, "\r\n");
    assert_lines(out.data, 76);
    /* Whitespace never ends an encoded line. */
    for (const char *p = strstr(out.data, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
        cr_assert(p == out.data || (p[-1] != ' ' && p[-1] != '\t'), "whitespace before line end");
    char *dec = qp_decode(out.data, out.len - 2);
    /* Expected: the input with LF turned into CRLF. */
    cmn_buf_t want = CMN_BUF_INIT;
    for (size_t i = 0; i < in.len; i++) {
        if (in.data[i] == '\n')
            cmn_buf_puts(&want, "\r\n");
        else
            cmn_buf_putc(&want, in.data[i]);
    }
    cmn_buf_puts(&want, "");
    cr_assert_eq(strlen(dec), want.len);
    cr_assert_eq(memcmp(dec, want.data, want.len), 0, "quoted-printable did not round-trip");
    free(dec);
    cmn_buf_free(&want);
    cmn_buf_free(&in);
    cmn_buf_free(&out);
}

Test(email_mime, long_body_lines_stay_short)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    char *text = malloc(5001);
    for (int i = 0; i < 5000; i++)
        text[i] = (char)('a' + i % 26);
    text[5000] = '\0';
    email_mime_input_t in = BASE;
    in.text = text;
    in.html = text;
    char *msg = build_ok(&in, msgid);
    assert_lines(msg, 78);
    size_t n;
    char *body = part_body(msg, "text/plain", &n);
    char *dec = qp_decode(body, n);
    cr_assert_str_eq(dec, text);
    free(dec);
    free(body);
    free(msg);
    free(text);
}

Test(email_mime, mostly_non_ascii_body_uses_base64)
{
    char msgid[EMAIL_MIME_MSGID_MAX];
    email_mime_input_t in = BASE;
    in.text = "Здравствуйте, Анна!\nНапоминаем о вашей записи.\n";
    in.html = NULL;
    char *msg = build_ok(&in, msgid);
    char *cte = header(msg, "Content-Transfer-Encoding");
    cr_assert_str_eq(cte, "base64");
    free(cte);
    const char *body = strstr(msg, "\r\n\r\n") + 4;
    unsigned char dec[512];
    size_t n = b64_decode(body, strlen(body), dec);
    dec[n] = '\0';
    cr_assert_str_eq((char *)dec, "Здравствуйте, Анна!\r\nНапоминаем о вашей записи.\r\n");
    free(msg);
}

Test(email_mime, base64_codec)
{
    const char *samples[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *encoded[] = {"", "Zg==\r\n", "Zm8=\r\n", "Zm9v\r\n", "Zm9vYg==\r\n", "Zm9vYmE=\r\n", "Zm9vYmFy\r\n"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        cmn_buf_t out = CMN_BUF_INIT;
        cr_assert_eq(email_mime_base64_encode(samples[i], strlen(samples[i]), &out), 0);
        cmn_buf_puts(&out, "");
        cr_assert_str_eq(out.data, encoded[i]);
        unsigned char *dec = NULL;
        size_t n = 0;
        cr_assert_eq(email_mime_base64_decode(out.data, out.len, 100, &dec, &n), 0);
        cr_assert_eq(n, strlen(samples[i]));
        cr_assert_eq(memcmp(dec, samples[i], n), 0);
        free(dec);
        cmn_buf_free(&out);
    }
    unsigned char *dec = NULL;
    size_t n = 0;
    cr_assert_eq(email_mime_base64_decode("Zm9v YmFy", 9, 100, &dec, &n), 0); /* whitespace ignored */
    cr_assert_eq(n, 6);
    free(dec);
    cr_assert_eq(email_mime_base64_decode("Zm9v!", 5, 100, &dec, &n), CMN_ERR_PARSE);
    cr_assert_eq(email_mime_base64_decode("Z", 1, 100, &dec, &n), CMN_ERR_PARSE);
    cr_assert_eq(email_mime_base64_decode("Zg==Zg==", 8, 100, &dec, &n), CMN_ERR_PARSE);
    cr_assert_eq(email_mime_base64_decode("Zm9vYmFy", 8, 5, &dec, &n), CMN_ERR_OVERFLOW);
    /* 76-character lines. */
    char big[200];
    memset(big, 'x', sizeof big);
    cmn_buf_t out = CMN_BUF_INIT;
    email_mime_base64_encode(big, sizeof big, &out);
    cmn_buf_puts(&out, "");
    cr_assert_eq(strstr(out.data, "\r\n") - out.data, 76);
    cmn_buf_free(&out);
}
