/* test_webhook_sig.c - Twilio and Meta webhook signatures (wh_sig.h).
 *
 * Expected signatures come from outside the code under test: Twilio's own
 * documented example, and tests/tools/webhook_sign.py (Python's hmac,
 * hashlib and base64, written from the providers' documentation). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "th_proc.h"
#include "wh_form.h"
#include "wh_sig.h"

#define SIGNER CRM_SOURCE_DIR "/tests/tools/webhook_sign.py"
#define TOKEN "12345"

/* Runs the Python signer and returns its first output line in out. */
static void sign(char *out, size_t outlen, const char *a, const char *b, const char *c, const char *d)
{
    char *argv[] = {"python3", SIGNER, (char *)a, (char *)b, (char *)c, (char *)d, NULL};
    cr_assert_eq(th_run(argv, NULL, out, outlen, 30000), 0, "signer failed: %s", out);
    out[strcspn(out, "\n")] = '\0';
}

static void form(wh_form_t *f, const char *body)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(wh_form_parse(body, strlen(body), f), 0, "%s", body);
}

/* Twilio's documented example ("Validating requests are coming from
 * Twilio"): auth token 12345, this URL and these parameters. */
#define DOC_URL "https://mycompany.com/myapp.php?foo=1&bar=2"
#define DOC_FORM "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212"
#define DOC_SIG "RSOYDt4T1cUTdK1PDd93/VVr8B8="

Test(webhook_sig, twilio_documented_example)
{
    wh_form_t f;
    char sig[WH_SIG_TWILIO_LEN + 1];
    form(&f, DOC_FORM);
    cr_assert_eq(wh_sig_twilio_compute(TOKEN, DOC_URL, &f, sig), 0);
    cr_expect_str_eq(sig, DOC_SIG);
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &f, NULL, 0, DOC_SIG), 1);
    /* The parameters may arrive in any order: they are sorted. */
    wh_form_t g;
    form(&g, "To=%2B18005551212&Digits=1234&From=%2B14158675309&Caller=%2B14158675309&CallSid=CA1234567890ABCDE");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &g, NULL, 0, DOC_SIG), 1);
    wh_form_clear(&f);
    wh_form_clear(&g);
}

Test(webhook_sig, twilio_refuses_any_change)
{
    wh_form_t f, altered;
    form(&f, DOC_FORM);
    form(&altered, "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212");
    cr_expect_eq(wh_sig_twilio_valid("12346", DOC_URL, &f, NULL, 0, DOC_SIG), 0, "wrong token");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &altered, NULL, 0, DOC_SIG), 0, "altered parameter");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", &f, NULL, 0, DOC_SIG), 0);
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", &f, NULL, 0, DOC_SIG), 0,
                 "scheme is signed");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &f, NULL, 0, "RSOYDt4T1cUTdK1PDd93/VVr8B8"), 0, "short");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &f, NULL, 0, "rSOYDt4T1cUTdK1PDd93/VVr8B8="), 0, "case");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, DOC_URL, &f, NULL, 0, NULL), 0, "missing");
    cr_expect_eq(wh_sig_twilio_valid("", DOC_URL, &f, NULL, 0, DOC_SIG), 0, "no token configured");
    wh_form_clear(&f);
    wh_form_clear(&altered);
}

/* Twilio may sign the URL with or without the default port; both must be
 * accepted whichever form the deployment configured. */
Test(webhook_sig, twilio_port_variants)
{
    wh_form_t f;
    char with_port[128], without_port[128], other_port[128];
    const char *body = "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=delivered";
    form(&f, body);
    sign(with_port, sizeof with_port, "twilio", TOKEN, "https://hooks.example.com:443/twilio/status?hop=0", body);
    sign(without_port, sizeof without_port, "twilio", TOKEN, "https://hooks.example.com/twilio/status?hop=0", body);
    sign(other_port, sizeof other_port, "twilio", TOKEN, "https://hooks.example.com:8443/twilio/status?hop=0", body);
    cr_expect_str_neq(with_port, without_port);
    /* Configured without a port: both signatures pass. */
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, "https://hooks.example.com/twilio/status?hop=0", &f, NULL, 0, with_port), 1);
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, "https://hooks.example.com/twilio/status?hop=0", &f, NULL, 0, without_port),
                 1);
    /* Configured with the default port: both pass too. */
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, "https://hooks.example.com:443/twilio/status?hop=0", &f, NULL, 0,
                                     without_port),
                 1);
    cr_expect_eq(
        wh_sig_twilio_valid(TOKEN, "https://hooks.example.com:443/twilio/status?hop=0", &f, NULL, 0, with_port), 1);
    /* A non-default port is only ever added by the URL itself. */
    cr_expect_eq(
        wh_sig_twilio_valid(TOKEN, "https://hooks.example.com/twilio/status?hop=0", &f, NULL, 0, other_port), 0);
    cr_expect_eq(
        wh_sig_twilio_valid(TOKEN, "https://hooks.example.com:8443/twilio/status?hop=0", &f, NULL, 0, other_port), 1);

    cmn_buf_t a = CMN_BUF_INIT, b = CMN_BUF_INIT;
    cr_assert_eq(wh_sig_url_variants("http://h.example/p?x=1", &a, &b), 0);
    cr_expect_str_eq(a.data, "http://h.example/p?x=1");
    cr_expect_str_eq(b.data, "http://h.example:80/p?x=1");
    cr_assert_eq(wh_sig_url_variants("https://[::1]:8443", &a, &b), 0);
    cr_expect_str_eq(a.data, "https://[::1]");
    cr_expect_str_eq(b.data, "https://[::1]:8443");
    cr_expect_eq(wh_sig_url_variants("ftp://h/", &a, &b), CMN_ERR_INVALID);
    cmn_buf_free(&a);
    cmn_buf_free(&b);
    wh_form_clear(&f);
}

Test(webhook_sig, twilio_body_sha256_variant)
{
    char line[512], sha[80];
    const char *body = "{\"MessageSid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"MessageStatus\":\"read\"}";
    sign(line, sizeof line, "twilio-json", TOKEN, "https://hooks.example.com/twilio/status?hop=1", body);
    char *space = strchr(line, ' ');
    cr_assert_not_null(space, "%s", line);
    *space = '\0';
    const char *url = line, *sig = space + 1;
    sign(sha, sizeof sha, "sha256", body, NULL, NULL);
    cr_expect_not_null(strstr(url, sha));
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, url, NULL, body, strlen(body), sig), 1);
    /* Members parsed out of the JSON body do not enter the signature. */
    wh_form_t f;
    form(&f, "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=read");
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, url, &f, body, strlen(body), sig), 1);
    /* A changed body no longer matches its hash, even with a valid URL signature. */
    const char *forged = "{\"MessageSid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"MessageStatus\":\"failed\"}";
    cr_expect_eq(wh_sig_twilio_valid(TOKEN, url, NULL, forged, strlen(forged), sig), 0);
    wh_form_clear(&f);
}

Test(webhook_sig, meta_x_hub_signature_256)
{
    char header[128];
    const char *secret = "meta-app-secret-for-tests";
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    sign(header, sizeof header, "meta", secret, body, NULL);
    cr_expect_eq(strncmp(header, "sha256=", 7), 0);
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), header), 1);
    /* Hex digits in upper case are the same signature. */
    char upper[128];
    snprintf(upper, sizeof upper, "%s", header);
    for (char *p = upper + 7; *p != '\0'; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), upper), 1);
    cr_expect_eq(wh_sig_meta_valid("another-secret", body, strlen(body), header), 0);
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body) - 1, header), 0, "body cut");
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), header + 7), 0, "no prefix");
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), "sha1=abc"), 0);
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), NULL), 0);
    cr_expect_eq(wh_sig_meta_valid("", body, strlen(body), header), 0, "no secret configured");
    header[strlen(header) - 1] = header[strlen(header) - 1] == '0' ? '1' : '0';
    cr_expect_eq(wh_sig_meta_valid(secret, body, strlen(body), header), 0, "one digit changed");
}

Test(webhook_sig, constant_time_equal)
{
    cr_expect_eq(wh_sig_equal("abc", "abc"), 1);
    cr_expect_eq(wh_sig_equal("abc", "abd"), 0);
    cr_expect_eq(wh_sig_equal("abc", "abcd"), 0);
    cr_expect_eq(wh_sig_equal(NULL, "abc"), 0);
    cr_expect_eq(wh_sig_equal("", ""), 1);
}

Test(webhook_sig, form_decoding)
{
    wh_form_t f;
    form(&f, "a=1&b=x+y%21&&c&d=&a=2");
    cr_assert_eq(f.n, 5);
    cr_expect_str_eq(wh_form_get(&f, "a"), "1");
    cr_expect_str_eq(wh_form_get(&f, "b"), "x y!");
    cr_expect_str_eq(wh_form_get(&f, "c"), "");
    cr_expect_str_eq(wh_form_get(&f, "d"), "");
    cr_expect_null(wh_form_get(&f, "e"));
    wh_form_clear(&f);
    cr_expect_eq(wh_form_parse("a=%4", 4, &f), CMN_ERR_INVALID);
    cr_expect_eq(wh_form_parse("a=%zz", 5, &f), CMN_ERR_INVALID);
    cr_expect_eq(wh_form_parse("a=%00", 5, &f), CMN_ERR_INVALID);
    cr_expect_eq(f.n, 0);
    cmn_buf_t enc = CMN_BUF_INIT;
    cr_assert_eq(wh_form_encode(&enc, "a b+c/é~"), 0);
    cr_expect_str_eq(enc.data, "a%20b%2Bc%2F%C3%A9~");
    cmn_buf_free(&enc);
}
