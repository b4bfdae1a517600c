/* Unit tests for crm/config.h. Criterion runs each test in its own process,
 * so setenv/unsetenv in one test cannot leak into another. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crm/config.h"
#include "crm/err.h"

struct cfg {
    char *brokers;
    char *password;
    char *from_name;
    char *region;
    long port;
    long workers;
    int use_tls;
    double ratio;
};

#define SECRET "hunter2-very-secret"

static const cmn_cfg_entry_t table[] = {
    {"CRMT_KAFKA_BROKERS", CMN_CFG_STRING, NULL, 0, offsetof(struct cfg, brokers),
     "Kafka bootstrap servers.", 0, 0},
    {"CRMT_SMTP_PASSWORD", CMN_CFG_STRING, "", 1, offsetof(struct cfg, password),
     "SMTP password.", 0, 0},
    {"CRMT_SMTP_FROM_NAME", CMN_CFG_STRING, "", 0, offsetof(struct cfg, from_name),
     "Display name of the sender.", 0, 0},
    {"CRMT_REGION", CMN_CFG_STRING, "eu-west", 0, offsetof(struct cfg, region), "Region.", 0, 0},
    {"CRMT_SMTP_PORT", CMN_CFG_INT, "587", 0, offsetof(struct cfg, port), "SMTP port.", 1, 65535},
    {"CRMT_WORKERS", CMN_CFG_INT, "4", 0, offsetof(struct cfg, workers), "Worker threads.", 0, 0},
    {"CRMT_SMTP_USE_TLS", CMN_CFG_BOOL, "true", 0, offsetof(struct cfg, use_tls), "Use TLS.", 0, 0},
    {"CRMT_RATIO", CMN_CFG_DOUBLE, "0.5", 0, offsetof(struct cfg, ratio), "A ratio.", 0, 1},
};
#define N (sizeof table / sizeof table[0])

static void clear_env(void)
{
    for (size_t i = 0; i < N; i++) {
        unsetenv(table[i].name);
    }
}

static void set_env_base(void)
{
    clear_env();
    setenv("CRMT_KAFKA_BROKERS", "k1:9092,k2:9092", 1);
}

/* Reads a whole stream (from its start) into a malloc'd string. */
static char *slurp(FILE *f)
{
    fflush(f);
    rewind(f);
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t n = 0;
    do {
        n = fread(s + len, 1, cap - len - 1, f);
        len += n;
        if (len + 1 == cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
    } while (n > 0);
    s[len] = '\0';
    return s;
}

Test(config, defaults_and_overrides)
{
    set_env_base();
    struct cfg c = {0};
    char err[1024] = "x";
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_OK, "%s", err);
    cr_assert_str_eq(err, "");
    cr_assert_str_eq(c.brokers, "k1:9092,k2:9092");
    cr_assert_str_eq(c.password, "");
    cr_assert_str_eq(c.region, "eu-west");
    cr_assert_eq(c.port, 587);
    cr_assert_eq(c.workers, 4);
    cr_assert_eq(c.use_tls, 1);
    cr_assert_float_eq(c.ratio, 0.5, 1e-12);
    cmn_config_free(table, N, &c);
    cr_assert_null(c.brokers);
    cr_assert_null(c.password);

    setenv("CRMT_SMTP_PORT", "465", 1);
    setenv("CRMT_WORKERS", "-3", 1);
    setenv("CRMT_SMTP_USE_TLS", "off", 1);
    setenv("CRMT_RATIO", "1", 1);
    setenv("CRMT_REGION", "us-east", 1);
    setenv("CRMT_SMTP_PASSWORD", SECRET, 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_OK, "%s", err);
    cr_assert_eq(c.port, 465);
    cr_assert_eq(c.workers, -3, "no range when min == max");
    cr_assert_eq(c.use_tls, 0);
    cr_assert_float_eq(c.ratio, 1.0, 1e-12);
    cr_assert_str_eq(c.region, "us-east");
    cr_assert_str_eq(c.password, SECRET);
    cmn_config_free(table, N, &c);
    /* Freeing twice is harmless. */
    cmn_config_free(table, N, &c);
}

Test(config, bool_spellings)
{
    static const char *const truthy[] = {"true", "TRUE", "1", "yes", "Yes", "on"};
    static const char *const falsy[] = {"false", "False", "0", "no", "NO", "off"};
    set_env_base();
    for (size_t i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
        struct cfg c = {0};
        setenv("CRMT_SMTP_USE_TLS", truthy[i], 1);
        cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK, "%s", truthy[i]);
        cr_assert_eq(c.use_tls, 1, "%s", truthy[i]);
        cmn_config_free(table, N, &c);
        setenv("CRMT_SMTP_USE_TLS", falsy[i], 1);
        c.use_tls = 7;
        cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK, "%s", falsy[i]);
        cr_assert_eq(c.use_tls, 0, "%s", falsy[i]);
        cmn_config_free(table, N, &c);
    }
}

Test(config, range_bounds_are_inclusive)
{
    set_env_base();
    struct cfg c = {0};
    setenv("CRMT_SMTP_PORT", "1", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK);
    cr_assert_eq(c.port, 1);
    cmn_config_free(table, N, &c);
    setenv("CRMT_SMTP_PORT", "65535", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK);
    cr_assert_eq(c.port, 65535);
    cmn_config_free(table, N, &c);

    char err[256];
    setenv("CRMT_SMTP_PORT", "0", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_SMTP_PORT: must be between 1 and 65535\n");
    setenv("CRMT_SMTP_PORT", "65536", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_SMTP_PORT: must be between 1 and 65535\n");
    unsetenv("CRMT_SMTP_PORT");
    setenv("CRMT_RATIO", "1.0001", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_RATIO: must be between 0 and 1\n");
}

Test(config, every_problem_reported_at_once)
{
    clear_env();
    setenv("CRMT_SMTP_PORT", "abc", 1);
    setenv("CRMT_WORKERS", "", 1);
    setenv("CRMT_SMTP_USE_TLS", "maybe", 1);
    setenv("CRMT_RATIO", "nan", 1);
    struct cfg c = {0};
    char err[2048];
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_KAFKA_BROKERS: required but not set\n"
                          "CRMT_SMTP_PORT: not an integer: 'abc'\n"
                          "CRMT_WORKERS: set but empty\n"
                          "CRMT_SMTP_USE_TLS: not a boolean (true/false/1/0/yes/no/on/off): 'maybe'\n"
                          "CRMT_RATIO: not a number: 'nan'\n");
    /* A failed load leaves no allocations behind. */
    cr_assert_null(c.brokers);
    cr_assert_null(c.region);
    cr_assert_null(c.password);
}

Test(config, integer_syntax_is_strict)
{
    static const char *const bad[] = {"12x", " 12", "12 ", "0x24B", "1e3", "+", "-",
                                      "99999999999999999999999"};
    set_env_base();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg c = {0};
        char err[256];
        setenv("CRMT_WORKERS", bad[i], 1);
        cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG, "'%s'", bad[i]);
        cr_assert(strncmp(err, "CRMT_WORKERS: not an integer: '", 31) == 0, "%s", err);
    }
}

Test(config, empty_values)
{
    set_env_base();
    struct cfg c = {0};
    char err[512];
    /* An optional string with default "" may be set to empty. */
    setenv("CRMT_SMTP_FROM_NAME", "", 1);
    /* An optional string with another default can be cleared explicitly. */
    setenv("CRMT_REGION", "", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_OK, "%s", err);
    cr_assert_str_eq(c.from_name, "");
    cr_assert_str_eq(c.region, "");
    cmn_config_free(table, N, &c);

    /* A required string set to "" is as missing as an unset one. */
    setenv("CRMT_KAFKA_BROKERS", "", 1);
    setenv("CRMT_SMTP_PORT", "", 1);
    setenv("CRMT_RATIO", "", 1);
    setenv("CRMT_SMTP_USE_TLS", "", 1);
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_KAFKA_BROKERS: required but set to an empty value\n"
                          "CRMT_SMTP_PORT: set but empty\n"
                          "CRMT_SMTP_USE_TLS: set but empty\n"
                          "CRMT_RATIO: set but empty\n");
}

Test(config, secret_values_never_in_errors)
{
    static const cmn_cfg_entry_t secret_table[] = {
        {"CRMT_TOKEN_TTL", CMN_CFG_INT, "60", 1, 0, "A secret number.", 0, 0},
    };
    long ttl = 0;
    char err[256];
    setenv("CRMT_TOKEN_TTL", SECRET, 1);
    cr_assert_eq(cmn_config_load(secret_table, 1, &ttl, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_TOKEN_TTL: not an integer\n");
    cr_assert_null(strstr(err, "hunter2"));
}

Test(config, quoted_values_are_sanitised)
{
    set_env_base();
    char longval[200];
    memset(longval, 'a', sizeof longval - 1);
    longval[sizeof longval - 1] = '\0';
    longval[0] = '\n';
    setenv("CRMT_WORKERS", longval, 1);
    struct cfg c = {0};
    char err[512];
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    /* One line only, and the value is cut. */
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "%s", err);
    cr_assert_not_null(strstr(err, "'?aaa"));
    cr_assert_not_null(strstr(err, "'...\n"));
    cr_assert_lt(strlen(err), 120);
}

Test(config, errstr_truncation_and_null)
{
    clear_env();
    struct cfg c = {0};
    char err[10];
    cr_assert_eq(cmn_config_load(table, N, &c, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_KAFK");
    cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_ERR_CONFIG);
    cr_assert_eq(cmn_config_load(table, N, NULL, err, sizeof err), CMN_ERR_INVALID);
    cr_assert_eq(cmn_config_load(NULL, 0, &c, err, sizeof err), CMN_OK, "empty table");
}

Test(config, invalid_default_is_reported)
{
    static const cmn_cfg_entry_t bad_table[] = {
        {"CRMT_BAD_DEFAULT", CMN_CFG_INT, "ten", 0, 0, "Broken table.", 0, 0},
    };
    unsetenv("CRMT_BAD_DEFAULT");
    long v = 0;
    char err[256];
    cr_assert_eq(cmn_config_load(bad_table, 1, &v, err, sizeof err), CMN_ERR_CONFIG);
    cr_assert_str_eq(err, "CRMT_BAD_DEFAULT: invalid default (not an integer): 'ten'\n");
}

Test(config, print_redacts_secrets)
{
    set_env_base();
    setenv("CRMT_SMTP_PASSWORD", SECRET, 1);
    setenv("CRMT_SMTP_FROM_NAME", "Acme\nEvil=1", 1);
    struct cfg c = {0};
    cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    cmn_config_print(table, N, &c, f);
    fclose(f);
    cr_assert_str_eq(out, "CRMT_KAFKA_BROKERS=k1:9092,k2:9092\n"
                          "CRMT_SMTP_PASSWORD=<redacted>\n"
                          "CRMT_SMTP_FROM_NAME=Acme\\x0aEvil=1\n"
                          "CRMT_REGION=eu-west\n"
                          "CRMT_SMTP_PORT=587\n"
                          "CRMT_WORKERS=4\n"
                          "CRMT_SMTP_USE_TLS=true\n"
                          "CRMT_RATIO=0.5\n");
    cr_assert_null(strstr(out, "hunter2"));
    free(out);
    cmn_config_free(table, N, &c);
}

Test(config, print_shows_unset_secret)
{
    set_env_base();
    struct cfg c = {0};
    cr_assert_eq(cmn_config_load(table, N, &c, NULL, 0), CMN_OK);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    cmn_config_print(table, N, &c, f);
    fclose(f);
    cr_assert_not_null(strstr(out, "\nCRMT_SMTP_PASSWORD=<unset>\n"), "%s", out);
    cr_assert_not_null(strstr(out, "\nCRMT_SMTP_FROM_NAME=\n"), "%s", out);
    free(out);
    cmn_config_free(table, N, &c);
}

Test(config_main, print_config_exits_zero_with_redaction, .init = cr_redirect_stdout)
{
    set_env_base();
    setenv("CRMT_SMTP_PASSWORD", SECRET, 1);
    struct cfg c = {0};
    char *argv[] = {"crm-test", "--print-config", NULL};
    cr_assert_eq(cmn_config_main("crm-test", 2, argv, table, N, &c), 1);
    char *out = slurp(cr_get_redirected_stdout());
    cr_assert_not_null(strstr(out, "CRMT_KAFKA_BROKERS=k1:9092,k2:9092\n"), "%s", out);
    cr_assert_not_null(strstr(out, "CRMT_SMTP_PASSWORD=<redacted>\n"), "%s", out);
    cr_assert_null(strstr(out, "hunter2"));
    free(out);
    /* The strings were released before returning 1. */
    cr_assert_null(c.brokers);
}

Test(config_main, normal_start_loads, .init = cr_redirect_stdout)
{
    set_env_base();
    struct cfg c = {0};
    char *argv[] = {"crm-test", NULL};
    cr_assert_eq(cmn_config_main("crm-test", 1, argv, table, N, &c), CMN_OK);
    cr_assert_str_eq(c.brokers, "k1:9092,k2:9092");
    cmn_config_free(table, N, &c);
    char *out = slurp(cr_get_redirected_stdout());
    cr_assert_str_eq(out, "", "a normal start prints nothing");
    free(out);
}

Test(config_main, errors_go_to_stderr_one_per_line, .init = cr_redirect_stderr)
{
    clear_env();
    setenv("CRMT_SMTP_PORT", "abc", 1);
    setenv("CRMT_SMTP_PASSWORD", SECRET, 1);
    struct cfg c = {0};
    char *argv[] = {"crm-test", NULL};
    int rc = cmn_config_main("crm-test", 1, argv, table, N, &c);
    cr_assert_lt(rc, 0);
    cr_assert_eq(rc, CMN_ERR_CONFIG);
    char *err = slurp(cr_get_redirected_stderr());
    cr_assert_str_eq(err, "crm-test: config error: CRMT_KAFKA_BROKERS: required but not set\n"
                          "crm-test: config error: CRMT_SMTP_PORT: not an integer: 'abc'\n");
    free(err);
}

Test(config_main, print_config_with_bad_config_fails, .init = cr_redirect_stderr)
{
    clear_env();
    struct cfg c = {0};
    char *argv[] = {"crm-test", "--print-config", NULL};
    cr_assert_eq(cmn_config_main("crm-test", 2, argv, table, N, &c), CMN_ERR_CONFIG);
    char *err = slurp(cr_get_redirected_stderr());
    cr_assert_not_null(strstr(err, "CRMT_KAFKA_BROKERS: required but not set"));
    free(err);
}

Test(config_main, help_lists_variables, .init = cr_redirect_stdout)
{
    clear_env();
    setenv("CRMT_SMTP_PASSWORD", SECRET, 1);
    struct cfg c = {0};
    char *argv[] = {"crm-test", "--help", NULL};
    cr_assert_eq(cmn_config_main("crm-test", 2, argv, table, N, &c), 1);
    char *out = slurp(cr_get_redirected_stdout());
    cr_assert_not_null(strstr(out, "usage: crm-test"), "%s", out);
    cr_assert_not_null(strstr(out, "CRMT_KAFKA_BROKERS (string, required)\n      Kafka bootstrap servers.\n"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "CRMT_SMTP_PORT (integer, default '587', 1..65535)"), "%s", out);
    cr_assert_not_null(strstr(out, "CRMT_SMTP_PASSWORD (string, optional, secret)"), "%s", out);
    cr_assert_not_null(strstr(out, "CRMT_RATIO (number, default '0.5', 0..1)"), "%s", out);
    cr_assert_null(strstr(out, "hunter2"));
    free(out);
    /* --help needs no valid configuration and loads nothing. */
    cr_assert_null(c.brokers);
}

Test(config_main, unknown_argument_is_usage_error, .init = cr_redirect_stderr)
{
    set_env_base();
    struct cfg c = {0};
    char *argv[] = {"crm-test", "--frobnicate", NULL};
    int rc = cmn_config_main("crm-test", 2, argv, table, N, &c);
    cr_assert_lt(rc, 0);
    cr_assert_neq(rc, 1);
    char *err = slurp(cr_get_redirected_stderr());
    cr_assert_not_null(strstr(err, "crm-test: unknown argument '--frobnicate'\n"), "%s", err);
    cr_assert_not_null(strstr(err, "usage: crm-test [--print-config | --help]\n"), "%s", err);
    free(err);
    cr_assert_null(c.brokers);
}
