/* wh_meta.c - Meta WhatsApp webhooks: verification and event batches. */
#include "wh_meta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "wh_sig.h"
#include "wh_twilio.h"

#define WH_META_CHALLENGE_MAX 256

typedef struct walk {
    wh_meta_batch_t *b;
    const char *tenant_id;
    char path[160];
    char *errstr;
    size_t errlen;
} walk_t;

static int fail(walk_t *w, const char *member, const char *reason)
{
    if (w->errstr != NULL && w->errlen > 0)
        snprintf(w->errstr, w->errlen, "%s%s%s: %s", w->path, w->path[0] != '\0' && member[0] != '\0' ? "." : "",
                 member, reason);
    return CMN_ERR_INVALID;
}

/* A required, non-empty string member (borrowed from the tree). */
static int req_str(walk_t *w, json_object *o, const char *key, const char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return fail(w, key, "is required");
    if (!json_object_is_type(v, json_type_string))
        return fail(w, key, "must be a string");
    *out = json_object_get_string(v);
    if ((*out)[0] == '\0')
        return fail(w, key, "must not be empty");
    return 0;
}

/* An optional string member; NULL when absent. */
static int opt_str(walk_t *w, json_object *o, const char *key, const char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return fail(w, key, "must be a string");
    *out = json_object_get_string(v);
    return 0;
}

/* Meta's timestamps are epoch seconds as a decimal string. */
static int req_timestamp(walk_t *w, json_object *o, int64_t *ms)
{
    const char *s = NULL;
    char *end = NULL;
    int rc = req_str(w, o, "timestamp", &s);
    if (rc != 0)
        return rc;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0 || v > 4102444800LL)
        return fail(w, "timestamp", "must be epoch seconds");
    *ms = (int64_t)v * 1000;
    return 0;
}

int wh_meta_opaque_parse(const char *s, wh_receipt_t *r)
{
    char id[CMN_UUID_STR_LEN + 1];
    int hop = -1, attempt = -1;
    if (s == NULL || r == NULL || strlen(s) < CMN_UUID_STR_LEN)
        return CMN_ERR_INVALID;
    memcpy(id, s, CMN_UUID_STR_LEN);
    id[CMN_UUID_STR_LEN] = '\0';
    if (!cmn_uuid_is_valid(id))
        return CMN_ERR_INVALID;
    const char *rest = s + CMN_UUID_STR_LEN;
    if (rest[0] != '\0') {
        char tail = '\0';
        if (sscanf(rest, ":%d:%d%c", &hop, &attempt, &tail) != 2 || hop < 0 || attempt < 0 || hop > 1000000 ||
            attempt > 1000000)
            return CMN_ERR_INVALID;
    }
    memcpy(r->communication_id, id, sizeof id);
    r->hop = hop;
    r->attempt = attempt;
    return 0;
}

static int parse_status(walk_t *w, json_object *st)
{
    wh_meta_batch_t *b = w->b;
    wh_receipt_t *r = &b->receipts[b->n_receipts];
    const char *opaque = NULL;
    int rc;

    if (!json_object_is_type(st, json_type_object))
        return fail(w, "", "must be an object");
    wh_receipt_init(r);
    r->provider = WH_PROVIDER_META;
    r->channel = CMN_CHANNEL_WHATSAPP;
    rc = req_str(w, st, "id", &r->provider_message_id);
    if (rc == 0 && strlen(r->provider_message_id) > 256)
        rc = fail(w, "id", "is too long");
    if (rc == 0)
        rc = req_str(w, st, "status", &r->provider_status);
    if (rc == 0 && strlen(r->provider_status) > 32)
        rc = fail(w, "status", "is too long");
    if (rc == 0)
        rc = req_timestamp(w, st, &r->occurred_at_ms);
    if (rc == 0)
        rc = opt_str(w, st, "biz_opaque_callback_data", &opaque);
    if (rc != 0)
        return rc;
    /* An opaque value this version does not understand is not an error:
     * the receipt is still tied to its communication by the message id. */
    if (opaque != NULL)
        (void)wh_meta_opaque_parse(opaque, r);

    json_object *errors = cmn_json_get_array(st, "errors");
    if (errors != NULL && json_object_array_length(errors) > 0) {
        json_object *e = json_object_array_get_idx(errors, 0);
        json_object *code = NULL;
        if (e != NULL && json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "code", &code) &&
            code != NULL) {
            /* The code is an integer in Meta's schema; its decimal text
             * lives in the tree's string cache, so it can be borrowed. */
            if (!json_object_is_type(code, json_type_int) && !json_object_is_type(code, json_type_string))
                return fail(w, "errors[0].code", "must be an integer");
            r->error_code = json_object_get_string(code);
        }
        if (e != NULL && json_object_is_type(e, json_type_object)) {
            json_object *data = cmn_json_get_object(e, "error_data");
            const char *details = data != NULL ? cmn_json_get_string(data, "details") : NULL;
            const char *title = cmn_json_get_string(e, "title");
            const char *message = cmn_json_get_string(e, "message");
            r->error_message = details != NULL ? details : title != NULL ? title : message;
        }
    }
    b->n_receipts++;
    return 0;
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    *out = strdup(s);
    return *out != NULL ? 0 : CMN_ERR_NOMEM;
}

/* The profile name of wa_id among value.contacts[], or NULL. */
static const char *profile_of(json_object *value, const char *wa_id)
{
    json_object *contacts = cmn_json_get_array(value, "contacts");
    for (size_t i = 0; contacts != NULL && i < json_object_array_length(contacts); i++) {
        json_object *c = json_object_array_get_idx(contacts, i);
        const char *id = cmn_json_get_string(c, "wa_id");
        json_object *profile = cmn_json_get_object(c, "profile");
        if (id != NULL && strcmp(id, wa_id) == 0 && profile != NULL)
            return cmn_json_get_string(profile, "name");
    }
    return NULL;
}

static const char *const MEDIA_TYPES[] = {"image", "video", "audio", "document", "sticker"};

/* Fills body, keyword and media of m from the message's typed member. */
static int message_content(walk_t *w, json_object *msg, const char *type, cmn_inbound_t *m)
{
    json_object *part = cmn_json_get_object(msg, type);
    if (strcmp(type, "text") == 0) {
        const char *body = part != NULL ? cmn_json_get_string(part, "body") : NULL;
        if (body == NULL)
            return fail(w, "text.body", "is required for a text message");
        m->keyword = cmn_inbound_keyword_parse(body);
        return dup_opt(body, &m->body);
    }
    if (strcmp(type, "button") == 0) {
        const char *payload = part != NULL ? cmn_json_get_string(part, "payload") : NULL;
        m->keyword = cmn_inbound_keyword_parse(payload);
        return dup_opt(part != NULL ? cmn_json_get_string(part, "text") : NULL, &m->body);
    }
    if (strcmp(type, "interactive") == 0 && part != NULL) {
        json_object *reply = cmn_json_get_object(part, "button_reply");
        if (reply == NULL)
            reply = cmn_json_get_object(part, "list_reply");
        return dup_opt(reply != NULL ? cmn_json_get_string(reply, "title") : NULL, &m->body);
    }
    if (strcmp(type, "location") == 0 && part != NULL) {
        json_object *lat = NULL, *lon = NULL;
        if (json_object_object_get_ex(part, "latitude", &lat) && json_object_object_get_ex(part, "longitude", &lon)) {
            char text[96];
            snprintf(text, sizeof text, "%.6f,%.6f", json_object_get_double(lat), json_object_get_double(lon));
            return dup_opt(text, &m->body);
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof MEDIA_TYPES / sizeof MEDIA_TYPES[0]; i++) {
        if (strcmp(type, MEDIA_TYPES[i]) != 0 || part == NULL)
            continue;
        const char *id = cmn_json_get_string(part, "id");
        int rc = dup_opt(cmn_json_get_string(part, "caption"), &m->body);
        if (rc == 0 && id != NULL) {
            /* Meta gives a media id, fetched with the access token through
             * GET /{media-id}; the record names it without inventing a URL. */
            char url[300];
            snprintf(url, sizeof url, "meta-media:%s", id);
            rc = dup_opt(url, &m->media[0].url);
            if (rc == 0)
                rc = dup_opt(cmn_json_get_string(part, "mime_type"), &m->media[0].content_type);
            m->n_media = 1;
        }
        return rc;
    }
    return 0;
}

static int parse_message(walk_t *w, json_object *value, json_object *msg, const char *to)
{
    wh_meta_batch_t *b = w->b;
    cmn_inbound_t *m = &b->messages[b->n_messages];
    const char *from = NULL, *id = NULL, *type = NULL;
    char e164[24];
    int rc;

    if (!json_object_is_type(msg, json_type_object))
        return fail(w, "", "must be an object");
    rc = req_str(w, msg, "from", &from);
    if (rc == 0)
        rc = req_str(w, msg, "id", &id);
    if (rc == 0 && strlen(id) > 256)
        rc = fail(w, "id", "is too long");
    if (rc == 0)
        rc = req_str(w, msg, "type", &type);
    if (rc != 0)
        return rc;
    if (strcmp(type, "system") == 0) {
        b->n_ignored++;
        return 0;
    }
    /* wa_id is the number's digits without the '+'. */
    snprintf(e164, sizeof e164, "+%s", from);
    if (strlen(from) > 15 || !wh_e164_ok(e164))
        return fail(w, "from", "must be a WhatsApp id (the digits of an E.164 number)");

    memset(m, 0, sizeof *m);
    b->n_messages++; /* counted now so that clearing the batch frees it */
    m->v = 1;
    m->channel = CMN_CHANNEL_WHATSAPP;
    rc = req_timestamp(w, msg, &m->received_at_ms);
    if (rc == 0)
        rc = dup_opt(w->tenant_id != NULL ? w->tenant_id : "default", &m->tenant_id);
    if (rc == 0)
        rc = dup_opt(WH_PROVIDER_META, &m->provider);
    if (rc == 0)
        rc = dup_opt(id, &m->provider_message_id);
    if (rc == 0)
        rc = dup_opt(e164, &m->from);
    if (rc == 0 && to != NULL) {
        char to164[24];
        snprintf(to164, sizeof to164, "+%s", to);
        rc = dup_opt(wh_e164_ok(to164) ? to164 : NULL, &m->to);
    }
    if (rc == 0)
        rc = dup_opt(profile_of(value, from), &m->profile_name);
    if (rc == 0)
        rc = message_content(w, msg, type, m);
    if (rc == 0)
        rc = cmn_inbound_set_event_id(m);
    return rc;
}

/* Counts the items first so the arrays are allocated once. */
static size_t count_items(json_object *entries, size_t *n_status, size_t *n_msg)
{
    *n_status = 0;
    *n_msg = 0;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        json_object *changes = cmn_json_get_array(json_object_array_get_idx(entries, i), "changes");
        for (size_t j = 0; changes != NULL && j < json_object_array_length(changes); j++) {
            json_object *value = cmn_json_get_object(json_object_array_get_idx(changes, j), "value");
            json_object *st = value != NULL ? cmn_json_get_array(value, "statuses") : NULL;
            json_object *ms = value != NULL ? cmn_json_get_array(value, "messages") : NULL;
            *n_status += st != NULL ? json_object_array_length(st) : 0;
            *n_msg += ms != NULL ? json_object_array_length(ms) : 0;
        }
    }
    return *n_status + *n_msg;
}

static int walk_change(walk_t *w, json_object *change, size_t plen)
{
    const char *field = NULL;
    if (!json_object_is_type(change, json_type_object))
        return fail(w, "", "must be an object");
    int rc = opt_str(w, change, "field", &field);
    if (rc != 0)
        return rc;
    /* Other subscriptions (account updates, template reviews) may share
     * the callback; they are not ours to read. */
    if (field == NULL || strcmp(field, "messages") != 0) {
        w->b->n_ignored++;
        return 0;
    }
    json_object *value = cmn_json_get_object(change, "value");
    if (value == NULL)
        return fail(w, "value", "is required and must be an object");
    const char *to = NULL;
    json_object *meta = cmn_json_get_object(value, "metadata");
    if (meta != NULL)
        to = cmn_json_get_string(meta, "display_phone_number");

    json_object *statuses = NULL, *messages = NULL;
    if (json_object_object_get_ex(value, "statuses", &statuses) && statuses != NULL &&
        !json_object_is_type(statuses, json_type_array))
        return fail(w, "value.statuses", "must be an array");
    if (json_object_object_get_ex(value, "messages", &messages) && messages != NULL &&
        !json_object_is_type(messages, json_type_array))
        return fail(w, "value.messages", "must be an array");
    for (size_t k = 0; rc == 0 && statuses != NULL && k < json_object_array_length(statuses); k++) {
        snprintf(w->path + plen, sizeof w->path - plen, ".value.statuses[%zu]", k);
        rc = parse_status(w, json_object_array_get_idx(statuses, k));
    }
    for (size_t k = 0; rc == 0 && messages != NULL && k < json_object_array_length(messages); k++) {
        snprintf(w->path + plen, sizeof w->path - plen, ".value.messages[%zu]", k);
        rc = parse_message(w, value, json_object_array_get_idx(messages, k), to);
    }
    return rc;
}

int wh_meta_parse(const char *body, size_t len, const char *tenant_id, wh_meta_batch_t *out, char *errstr,
                  size_t errlen)
{
    walk_t w = {.b = out, .tenant_id = tenant_id, .errstr = errstr, .errlen = errlen};
    size_t n_status = 0, n_msg = 0;
    char jerr[160];
    int rc = 0;

    if (out == NULL)
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->root = cmn_json_parse(body, len, jerr, sizeof jerr);
    if (out->root == NULL) {
        if (errstr != NULL && errlen > 0)
            snprintf(errstr, errlen, "body: not JSON (%s)", jerr);
        return CMN_ERR_INVALID;
    }
    if (!json_object_is_type(out->root, json_type_object)) {
        rc = fail(&w, "body", "must be a JSON object");
        goto out;
    }
    const char *object = NULL;
    rc = req_str(&w, out->root, "object", &object);
    if (rc != 0)
        goto out;
    if (strcmp(object, "whatsapp_business_account") != 0) {
        rc = fail(&w, "object", "must be whatsapp_business_account");
        goto out;
    }
    json_object *entries = cmn_json_get_array(out->root, "entry");
    if (entries == NULL) {
        rc = fail(&w, "entry", "is required and must be an array");
        goto out;
    }
    if (count_items(entries, &n_status, &n_msg) > WH_META_MAX_ITEMS) {
        rc = fail(&w, "entry", "holds more statuses and messages than one delivery may");
        goto out;
    }
    out->receipts = calloc(n_status + 1, sizeof *out->receipts);
    out->messages = calloc(n_msg + 1, sizeof *out->messages);
    if (out->receipts == NULL || out->messages == NULL) {
        rc = CMN_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < json_object_array_length(entries); i++) {
        json_object *entry = json_object_array_get_idx(entries, i);
        snprintf(w.path, sizeof w.path, "entry[%zu]", i);
        if (!json_object_is_type(entry, json_type_object)) {
            rc = fail(&w, "", "must be an object");
            break;
        }
        json_object *changes = cmn_json_get_array(entry, "changes");
        if (changes == NULL) {
            rc = fail(&w, "changes", "is required and must be an array");
            break;
        }
        for (size_t j = 0; rc == 0 && j < json_object_array_length(changes); j++) {
            int plen = snprintf(w.path, sizeof w.path, "entry[%zu].changes[%zu]", i, j);
            rc = walk_change(&w, json_object_array_get_idx(changes, j), (size_t)plen);
        }
    }
out:
    if (rc != 0)
        wh_meta_batch_clear(out);
    return rc;
}

void wh_meta_batch_clear(wh_meta_batch_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n_messages; i++)
        cmn_inbound_clear(&b->messages[i]);
    free(b->messages);
    free(b->receipts);
    json_object_put(b->root);
    memset(b, 0, sizeof *b);
}

int wh_meta_verify(const char *mode, const char *token, const char *challenge, const char *expected_token,
                   const char **challenge_out, const char **field)
{
    *challenge_out = NULL;
    *field = NULL;
    if (mode == NULL) {
        *field = "hub.mode";
        return 400;
    }
    if (token == NULL) {
        *field = "hub.verify_token";
        return 400;
    }
    if (challenge == NULL || challenge[0] == '\0' || strlen(challenge) > WH_META_CHALLENGE_MAX) {
        *field = "hub.challenge";
        return 400;
    }
    /* The challenge is echoed as the body: only printable ASCII is, so the
     * endpoint cannot be made to serve arbitrary content. */
    for (const char *p = challenge; *p != '\0'; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            *field = "hub.challenge";
            return 400;
        }
    }
    int token_ok = wh_sig_equal(token, expected_token);
    if (strcmp(mode, "subscribe") != 0 || !token_ok || expected_token == NULL || expected_token[0] == '\0')
        return 403;
    *challenge_out = challenge;
    return 200;
}
