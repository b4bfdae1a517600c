/* config.c - table-driven configuration from the environment.
 *
 * Every problem found is collected before failing, one line per problem
 * naming the variable, so an operator fixes a deployment in one round trip.
 * Values of secret entries are never echoed: not in error lines, not in
 * --print-config, not in --help. */
#include "crm/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/buf.h"
#include "crm/err.h"

/* Longest part of a bad value quoted back in an error line; enough to
 * recognise a typo without flooding the log with a pasted document. */
#define QUOTE_MAX 64

/* Appends value in single quotes, with control characters replaced so one
 * problem always stays on one line, and truncated to QUOTE_MAX bytes. */
static void quote_value(cmn_buf_t *errs, const char *value)
{
    size_t n = strlen(value);
    cmn_buf_putc(errs, '\'');
    for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)value[i];
        cmn_buf_putc(errs, c < 0x20 || c == 0x7f ? '?' : (char)c);
    }
    cmn_buf_putc(errs, '\'');
    if (n > QUOTE_MAX) {
        cmn_buf_puts(errs, "...");
    }
}

/* Records "NAME: problem[: 'value']\n"; the value is left out for secrets. */
static void add_problem(cmn_buf_t *errs, const cmn_cfg_entry_t *e, const char *problem,
                        const char *value)
{
    cmn_buf_printf(errs, "%s: %s", e->name, problem);
    if (value != NULL && !e->secret) {
        cmn_buf_puts(errs, ": ");
        quote_value(errs, value);
    }
    cmn_buf_putc(errs, '\n');
}

static void add_range_problem(cmn_buf_t *errs, const cmn_cfg_entry_t *e)
{
    if (e->type == CMN_CFG_INT) {
        cmn_buf_printf(errs, "%s: must be between %.0f and %.0f\n", e->name, e->min, e->max);
    } else {
        cmn_buf_printf(errs, "%s: must be between %g and %g\n", e->name, e->min, e->max);
    }
}

static int parse_bool(const char *s, int *out)
{
    static const char *const truthy[] = {"true", "1", "yes", "on"};
    static const char *const falsy[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
        if (strcasecmp(s, truthy[i]) == 0) {
            *out = 1;
            return CMN_OK;
        }
        if (strcasecmp(s, falsy[i]) == 0) {
            *out = 0;
            return CMN_OK;
        }
    }
    return CMN_ERR_INVALID;
}

/* strtol/strtod skip leading white space and accept a prefix; we accept only
 * the whole string, so " 587", "587x" and "0x24B" are all errors. */
static int parse_long(const char *s, long *out)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0])) {
        return CMN_ERR_INVALID;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return CMN_ERR_INVALID;
    }
    *out = v;
    return CMN_OK;
}

static int parse_double(const char *s, double *out)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0])) {
        return CMN_ERR_INVALID;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) {
        return CMN_ERR_INVALID;
    }
    *out = v;
    return CMN_OK;
}

/* Parses one entry's value into its field. `value` is the environment value
 * or the default; `from_default` only changes the wording of a problem (a bad
 * default is a bug in the table, not in the deployment). Returns 0 or -1. */
static int load_entry(const cmn_cfg_entry_t *e, const char *value, int from_default, void *cfg,
                      cmn_buf_t *errs)
{
    char *field = (char *)cfg + e->offset;
    int ranged = e->min < e->max;
    const char *what = NULL;

    if (value[0] == '\0' && e->type != CMN_CFG_STRING) {
        add_problem(errs, e, "set but empty", NULL);
        return -1;
    }
    switch (e->type) {
    case CMN_CFG_STRING: {
        char *copy = strdup(value);
        if (copy == NULL) {
            add_problem(errs, e, "out of memory", NULL);
            return -1;
        }
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = copy;
        return 0;
    }
    case CMN_CFG_INT: {
        long v = 0;
        if (parse_long(value, &v) != CMN_OK) {
            what = "not an integer";
            break;
        }
        if (ranged && ((double)v < e->min || (double)v > e->max)) {
            add_range_problem(errs, e);
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CMN_CFG_BOOL: {
        int v = 0;
        if (parse_bool(value, &v) != CMN_OK) {
            what = "not a boolean (true/false/1/0/yes/no/on/off)";
            break;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CMN_CFG_DOUBLE: {
        double v = 0;
        if (parse_double(value, &v) != CMN_OK) {
            what = "not a number";
            break;
        }
        if (ranged && (v < e->min || v > e->max)) {
            add_range_problem(errs, e);
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    default:
        add_problem(errs, e, "unknown type in the configuration table", NULL);
        return -1;
    }
    if (from_default) {
        cmn_buf_t msg = CMN_BUF_INIT;
        cmn_buf_printf(&msg, "invalid default (%s)", what);
        add_problem(errs, e, msg.data != NULL ? msg.data : what, value);
        cmn_buf_free(&msg);
    } else {
        add_problem(errs, e, what, value);
    }
    return -1;
}

/* Loads the table, appending one line per problem to errs. */
static int load_into(const cmn_cfg_entry_t *table, size_t n, void *cfg, cmn_buf_t *errs)
{
    size_t problems = 0;
    for (size_t i = 0; i < n; i++) {
        const cmn_cfg_entry_t *e = &table[i];
        if (e->name == NULL) {
            cmn_buf_printf(errs, "entry %zu: no variable name in the configuration table\n", i);
            problems++;
            continue;
        }
        const char *value = getenv(e->name);
        int from_default = 0;
        if (value == NULL) {
            if (e->default_value == NULL) {
                add_problem(errs, e, "required but not set", NULL);
                problems++;
                continue;
            }
            value = e->default_value;
            from_default = 1;
        } else if (value[0] == '\0' && e->default_value == NULL) {
            /* A required setting exported as "" is as missing as an unset one. */
            add_problem(errs, e, "required but set to an empty value", NULL);
            problems++;
            continue;
        }
        if (load_entry(e, value, from_default, cfg, errs) != 0) {
            problems++;
        }
    }
    if (problems > 0) {
        /* Do not hand out a half-loaded configuration. */
        cmn_config_free(table, n, cfg);
        return CMN_ERR_CONFIG;
    }
    return CMN_OK;
}

int cmn_config_load(const cmn_cfg_entry_t *table, size_t n, void *cfg, char *errstr, size_t errlen)
{
    if (errstr != NULL && errlen > 0) {
        errstr[0] = '\0';
    }
    if ((table == NULL && n > 0) || cfg == NULL) {
        return CMN_ERR_INVALID;
    }
    cmn_buf_t errs = CMN_BUF_INIT;
    int rc = load_into(table, n, cfg, &errs);
    if (rc != CMN_OK && errstr != NULL && errlen > 0 && errs.data != NULL) {
        /* Truncation keeps whole leading lines where possible; the caller
         * sized errstr, and cmn_config_main uses an unbounded buffer. */
        size_t copy = errs.len < errlen - 1 ? errs.len : errlen - 1;
        memcpy(errstr, errs.data, copy);
        errstr[copy] = '\0';
    }
    cmn_buf_free(&errs);
    return rc;
}

/* Writes a configuration value with control characters as \xNN, so a
 * value never spans or fakes lines of the table. */
static void print_escaped(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p);
        } else {
            fputc(*p, out);
        }
    }
}

void cmn_config_print(const cmn_cfg_entry_t *table, size_t n, const void *cfg, FILE *out)
{
    if (table == NULL || cfg == NULL || out == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const cmn_cfg_entry_t *e = &table[i];
        if (e->name == NULL) {
            continue;
        }
        const char *field = (const char *)cfg + e->offset;
        fprintf(out, "%s=", e->name);
        switch (e->type) {
        case CMN_CFG_STRING: {
            const char *s = NULL;
            memcpy(&s, field, sizeof s);
            if (s == NULL || (e->secret && s[0] == '\0')) {
                fputs("<unset>", out);
            } else if (e->secret) {
                fputs("<redacted>", out);
            } else {
                print_escaped(out, s);
            }
            break;
        }
        case CMN_CFG_INT: {
            long v = 0;
            memcpy(&v, field, sizeof v);
            if (e->secret) {
                fputs("<redacted>", out);
            } else {
                fprintf(out, "%ld", v);
            }
            break;
        }
        case CMN_CFG_BOOL: {
            int v = 0;
            memcpy(&v, field, sizeof v);
            fputs(e->secret ? "<redacted>" : (v ? "true" : "false"), out);
            break;
        }
        case CMN_CFG_DOUBLE: {
            double v = 0;
            memcpy(&v, field, sizeof v);
            if (e->secret) {
                fputs("<redacted>", out);
            } else {
                fprintf(out, "%g", v);
            }
            break;
        }
        default:
            fputs("<unknown type>", out);
            break;
        }
        fputc('\n', out);
    }
    fflush(out);
}

void cmn_config_free(const cmn_cfg_entry_t *table, size_t n, void *cfg)
{
    if (table == NULL || cfg == NULL) {
        return;
    }
    /* Pointers are reset to NULL so freeing twice (a failed load followed by
     * the caller's own cleanup) is harmless. */
    for (size_t i = 0; i < n; i++) {
        if (table[i].type != CMN_CFG_STRING || table[i].name == NULL) {
            continue;
        }
        char **slot = (char **)(void *)((char *)cfg + table[i].offset);
        free(*slot);
        *slot = NULL;
    }
}

static const char *type_name(cmn_cfg_type_t t)
{
    switch (t) {
    case CMN_CFG_STRING:
        return "string";
    case CMN_CFG_INT:
        return "integer";
    case CMN_CFG_BOOL:
        return "boolean";
    case CMN_CFG_DOUBLE:
        return "number";
    }
    return "unknown";
}

static void print_usage(const char *service, FILE *out)
{
    fprintf(out, "usage: %s [--print-config | --help]\n", service);
}

static void print_help(const char *service, const cmn_cfg_entry_t *table, size_t n, FILE *out)
{
    print_usage(service, out);
    fputs("\nConfiguration is read from these environment variables:\n\n", out);
    for (size_t i = 0; i < n; i++) {
        const cmn_cfg_entry_t *e = &table[i];
        if (e->name == NULL) {
            continue;
        }
        fprintf(out, "  %s (%s", e->name, type_name(e->type));
        if (e->default_value == NULL) {
            fputs(", required", out);
        } else if (e->secret) {
            /* Even a default of a secret stays out of the output: a test
             * credential compiled in is still a credential. */
            fputs(", optional", out);
        } else {
            fputs(", default '", out);
            print_escaped(out, e->default_value);
            fputc('\'', out);
        }
        if (e->min < e->max) {
            if (e->type == CMN_CFG_INT) {
                fprintf(out, ", %.0f..%.0f", e->min, e->max);
            } else {
                fprintf(out, ", %g..%g", e->min, e->max);
            }
        }
        if (e->secret) {
            fputs(", secret", out);
        }
        fputs(")\n", out);
        if (e->help != NULL && e->help[0] != '\0') {
            fprintf(out, "      %s\n", e->help);
        }
    }
    fflush(out);
}

int cmn_config_main(const char *service, int argc, char **argv, const cmn_cfg_entry_t *table,
                    size_t n, void *cfg)
{
    if (service == NULL) {
        service = "crm";
    }
    if ((table == NULL && n > 0) || cfg == NULL) {
        return CMN_ERR_INVALID;
    }
    int want_print = 0;
    for (int i = 1; i < argc && argv != NULL; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            /* --help wins over everything else, and needs no valid config. */
            print_help(service, table, n, stdout);
            return 1;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            want_print = 1;
            continue;
        }
        fprintf(stderr, "%s: unknown argument '%s'\n", service, argv[i]);
        print_usage(service, stderr);
        return CMN_ERR_INVALID;
    }

    cmn_buf_t errs = CMN_BUF_INIT;
    int rc = load_into(table, n, cfg, &errs);
    if (rc != CMN_OK) {
        /* One "service: config error: ..." line per problem, so each is
         * greppable on its own in a log aggregator. */
        const char *line = errs.data != NULL ? errs.data : "";
        while (*line != '\0') {
            const char *nl = strchr(line, '\n');
            size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
            fprintf(stderr, "%s: config error: %.*s\n", service, (int)len, line);
            line += len + (nl != NULL ? 1 : 0);
        }
        fflush(stderr);
        cmn_buf_free(&errs);
        return CMN_ERR_CONFIG;
    }
    cmn_buf_free(&errs);
    if (want_print) {
        cmn_config_print(table, n, cfg, stdout);
        /* The program exits next; free now so leak checkers stay quiet. */
        cmn_config_free(table, n, cfg);
        return 1;
    }
    return CMN_OK;
}
