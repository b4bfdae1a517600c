/* router_config.c - loading and checking the routing configuration file. */
#include "router_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"

typedef struct router_type_order {
    char *message_type; /* owned */
    router_order_t order;
} router_type_order_t;

struct router_config {
    router_order_t default_order;
    router_type_order_t *types; /* owned array, sorted by message_type for bsearch */
    size_t n_types;
};

#define EXPECTED_CHANNELS "expected email, sms or whatsapp"

/* Parses one channel list. path names the list in error messages
 * ("default", "message_types.welcome"). */
static int parse_order(json_object *arr, const char *path, router_order_t *out, char *errstr,
                       size_t errlen)
{
    if (!json_object_is_type(arr, json_type_array)) {
        snprintf(errstr, errlen, "%s: must be an array of channel names (%s)", path, EXPECTED_CHANNELS);
        return CMN_ERR_CONFIG;
    }
    size_t len = json_object_array_length(arr);
    if (len == 0) {
        snprintf(errstr, errlen, "%s: must list at least one channel", path);
        return CMN_ERR_CONFIG;
    }
    out->n = 0;
    for (size_t i = 0; i < len; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(item, json_type_string)) {
            snprintf(errstr, errlen, "%s[%zu]: must be a channel name string (%s)", path, i,
                     EXPECTED_CHANNELS);
            return CMN_ERR_CONFIG;
        }
        const char *name = json_object_get_string(item);
        cmn_channel_t c = cmn_channel_parse(name);
        if (c == CMN_CHANNEL_NONE) {
            snprintf(errstr, errlen, "%s[%zu]: unknown channel \"%.64s\" (%s)", path, i, name,
                     EXPECTED_CHANNELS);
            return CMN_ERR_CONFIG;
        }
        for (size_t j = 0; j < out->n; j++) {
            if (out->ch[j] == c) {
                snprintf(errstr, errlen, "%s[%zu]: channel \"%s\" is listed twice", path, i, name);
                return CMN_ERR_CONFIG;
            }
        }
        /* Distinct known channels cannot exceed CMN_CHANNEL__COUNT, so this
         * store stays in bounds once the duplicate check has passed. */
        out->ch[out->n++] = c;
    }
    return CMN_OK;
}

static int cmp_type_order(const void *a, const void *b)
{
    const router_type_order_t *x = a;
    const router_type_order_t *y = b;
    return strcmp(x->message_type, y->message_type);
}

static int parse_message_types(json_object *obj, router_config_t *cfg, char *errstr, size_t errlen)
{
    if (!json_object_is_type(obj, json_type_object)) {
        snprintf(errstr, errlen, "message_types: must be an object mapping message types to channel lists");
        return CMN_ERR_CONFIG;
    }
    size_t n = (size_t)json_object_object_length(obj);
    if (n == 0) {
        return CMN_OK;
    }
    cfg->types = calloc(n, sizeof *cfg->types);
    if (cfg->types == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return CMN_ERR_NOMEM;
    }
    json_object_object_foreach(obj, key, val)
    {
        char path[200];
        snprintf(path, sizeof path, "message_types.%.128s", key);
        /* Message types are matched against requests' message_type, which
         * validation restricts; a key that can never match is a typo. */
        if (!cmn_valid_message_type(key)) {
            snprintf(errstr, errlen,
                     "%s: not a valid message type name (1-64 of a-z, 0-9, '_', '.', '-', not starting with '.')",
                     path);
            return CMN_ERR_CONFIG;
        }
        router_type_order_t *t = &cfg->types[cfg->n_types];
        int rc = parse_order(val, path, &t->order, errstr, errlen);
        if (rc != CMN_OK) {
            return rc;
        }
        t->message_type = strdup(key);
        if (t->message_type == NULL) {
            snprintf(errstr, errlen, "out of memory");
            return CMN_ERR_NOMEM;
        }
        cfg->n_types++;
    }
    /* json-c objects cannot hold duplicate keys (the last one wins while
     * parsing), so the sorted array has distinct names. */
    qsort(cfg->types, cfg->n_types, sizeof *cfg->types, cmp_type_order);
    return CMN_OK;
}

router_config_t *router_config_parse(const char *json, size_t len, char *errstr, size_t errlen)
{
    router_config_t *cfg = NULL;
    json_object *root = NULL;
    json_object *def = NULL;
    json_object *types = NULL;
    int ok = 0;
    char perr[256];

    if (json == NULL) {
        snprintf(errstr, errlen, "no routing document");
        goto cleanup;
    }
    root = cmn_json_parse(json, len, perr, sizeof perr);
    if (root == NULL) {
        snprintf(errstr, errlen, "malformed JSON: %s", perr);
        goto cleanup;
    }
    if (!json_object_is_type(root, json_type_object)) {
        snprintf(errstr, errlen, "the top level must be a JSON object with \"default\" and \"message_types\"");
        goto cleanup;
    }
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    {
        json_object_object_foreach(root, key, val)
        {
            (void)val;
            if (strcmp(key, "default") != 0 && strcmp(key, "message_types") != 0) {
                snprintf(errstr, errlen, "unknown key \"%.64s\" (expected \"default\" or \"message_types\")",
                         key);
                goto cleanup;
            }
        }
    }
    if (!json_object_object_get_ex(root, "default", &def)) {
        snprintf(errstr, errlen, "default: required (the channel order for message types not listed)");
        goto cleanup;
    }
    if (parse_order(def, "default", &cfg->default_order, errstr, errlen) != CMN_OK) {
        goto cleanup;
    }
    if (json_object_object_get_ex(root, "message_types", &types) &&
        parse_message_types(types, cfg, errstr, errlen) != CMN_OK) {
        goto cleanup;
    }
    ok = 1;

cleanup:
    json_object_put(root);
    if (!ok) {
        router_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

router_config_t *router_config_load(const char *path, char *errstr, size_t errlen)
{
    router_config_t *cfg = NULL;
    FILE *f = NULL;
    char *data = NULL;
    size_t len = 0;
    char perr[512];

    if (path == NULL || path[0] == '\0') {
        snprintf(errstr, errlen, "no routing file given");
        goto cleanup;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    /* Read one byte past the limit so an oversized file is detected without
     * trusting its size before reading. */
    data = malloc(ROUTER_CONFIG_MAX_BYTES + 1);
    if (data == NULL) {
        snprintf(errstr, errlen, "%s: out of memory", path);
        goto cleanup;
    }
    len = fread(data, 1, ROUTER_CONFIG_MAX_BYTES + 1, f);
    if (ferror(f)) {
        snprintf(errstr, errlen, "%s: read error", path);
        goto cleanup;
    }
    if (len > ROUTER_CONFIG_MAX_BYTES) {
        snprintf(errstr, errlen, "%s: larger than %d bytes", path, ROUTER_CONFIG_MAX_BYTES);
        goto cleanup;
    }
    cfg = router_config_parse(data, len, perr, sizeof perr);
    if (cfg == NULL) {
        snprintf(errstr, errlen, "%s: %s", path, perr);
    }

cleanup:
    if (f != NULL) {
        fclose(f);
    }
    free(data);
    return cfg;
}

void router_config_destroy(router_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_types; i++) {
        free(cfg->types[i].message_type);
    }
    free(cfg->types);
    free(cfg);
}

const router_order_t *router_config_default_order(const router_config_t *cfg)
{
    return &cfg->default_order;
}

const router_order_t *router_config_type_order(const router_config_t *cfg, const char *message_type)
{
    if (cfg == NULL || message_type == NULL || cfg->n_types == 0) {
        return NULL;
    }
    router_type_order_t key = {.message_type = (char *)message_type};
    const router_type_order_t *t = bsearch(&key, cfg->types, cfg->n_types, sizeof *cfg->types, cmp_type_order);
    return t != NULL ? &t->order : NULL;
}

size_t router_config_type_count(const router_config_t *cfg)
{
    return cfg->n_types;
}

int router_channels_parse_list(const char *list, unsigned *mask, char *errstr, size_t errlen)
{
    unsigned m = 0;
    size_t index = 0;

    if (list == NULL || mask == NULL) {
        snprintf(errstr, errlen, "no channel list");
        return CMN_ERR_CONFIG;
    }
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        /* Trim spaces so "email, sms" works as people write it. */
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        char name[32];
        if (len == 0) {
            snprintf(errstr, errlen, "item %zu is empty (expected a comma list of email, sms, whatsapp)", index);
            return CMN_ERR_CONFIG;
        }
        if (len >= sizeof name) {
            snprintf(errstr, errlen, "unknown channel \"%.31s...\" (%s)", p, EXPECTED_CHANNELS);
            return CMN_ERR_CONFIG;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        cmn_channel_t c = cmn_channel_parse(name);
        if (c == CMN_CHANNEL_NONE) {
            snprintf(errstr, errlen, "unknown channel \"%s\" (%s)", name, EXPECTED_CHANNELS);
            return CMN_ERR_CONFIG;
        }
        m |= ROUTER_CHANNEL_BIT(c);
        index++;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    *mask = m;
    return CMN_OK;
}
