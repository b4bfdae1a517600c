/* msbx_webhook.c - status webhooks of the Meta sandbox. See msbx_webhook.h. */
#include "msbx_webhook.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"

#define ERROR_HREF "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = s != NULL ? strlen(s) : 0, sl = strlen(suffix);
    return n > sl && strcmp(s + n - sl, suffix) == 0;
}

size_t msbx_receipts_for(const char *to, msbx_receipt_t out[MSBX_RECEIPTS_MAX])
{
    size_t k = 0;
    if (ends_with(to, "131026")) {
        out[k++] = (msbx_receipt_t){"failed", 131026, "Message undeliverable", "Message Undeliverable."};
    } else if (ends_with(to, "00000")) {
        out[k++] = (msbx_receipt_t){"sent", 0, NULL, NULL};
    } else {
        out[k++] = (msbx_receipt_t){"sent", 0, NULL, NULL};
        out[k++] = (msbx_receipt_t){"delivered", 0, NULL, NULL};
        out[k++] = (msbx_receipt_t){"read", 0, NULL, NULL};
    }
    return k;
}

/* Adds the conversation and pricing members Meta sends with sent and
 * delivered; the conversation id is derived from the wamid so every status
 * of one message names the same conversation. */
static int add_conversation(json_object *st, const char *wamid)
{
    char conv_id[33];
    size_t k = 0;
    for (const char *p = wamid; *p != '\0' && k < 32; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F'))
            conv_id[k++] = (char)(*p >= 'A' ? *p - 'A' + 'a' : *p);
    }
    conv_id[k] = '\0';
    json_object *conv = json_object_new_object();
    json_object *origin = json_object_new_object();
    json_object *pricing = json_object_new_object();
    if (conv == NULL || origin == NULL || pricing == NULL) {
        json_object_put(conv);
        json_object_put(origin);
        json_object_put(pricing);
        return CMN_ERR_NOMEM;
    }
    cmn_json_add_string(conv, "id", conv_id);
    cmn_json_add_string(origin, "type", "utility");
    json_object_object_add(conv, "origin", origin);
    json_object_object_add(st, "conversation", conv);
    json_object_object_add(pricing, "billable", json_object_new_boolean(1));
    cmn_json_add_string(pricing, "pricing_model", "PMP");
    cmn_json_add_string(pricing, "category", "utility");
    json_object_object_add(st, "pricing", pricing);
    return 0;
}

static int add_errors(json_object *st, const msbx_receipt_t *r)
{
    json_object *arr = json_object_new_array();
    json_object *e = json_object_new_object();
    json_object *data = json_object_new_object();
    if (arr == NULL || e == NULL || data == NULL) {
        json_object_put(arr);
        json_object_put(e);
        json_object_put(data);
        return CMN_ERR_NOMEM;
    }
    cmn_json_add_int64(e, "code", r->error);
    cmn_json_add_string(e, "title", r->title != NULL ? r->title : "Error");
    cmn_json_add_string(e, "message", r->title != NULL ? r->title : "Error");
    cmn_json_add_string(data, "details", r->details != NULL ? r->details : "");
    json_object_object_add(e, "error_data", data);
    cmn_json_add_string(e, "href", ERROR_HREF);
    json_object_array_add(arr, e);
    json_object_object_add(st, "errors", arr);
    return 0;
}

int msbx_status_payload(const msbx_status_in_t *in, cmn_buf_t *out)
{
    if (in == NULL || out == NULL || in->receipt == NULL || in->receipt->status == NULL || in->wamid == NULL ||
        in->recipient_id == NULL || in->waba_id == NULL || in->phone_number_id == NULL ||
        in->display_phone_number == NULL)
        return CMN_ERR_INVALID;
    int rc = CMN_ERR_NOMEM;
    char ts[24];
    json_object *root = json_object_new_object();
    json_object *entries = json_object_new_array();
    json_object *entry = json_object_new_object();
    json_object *changes = json_object_new_array();
    json_object *change = json_object_new_object();
    json_object *value = json_object_new_object();
    json_object *metadata = json_object_new_object();
    json_object *statuses = json_object_new_array();
    json_object *st = json_object_new_object();
    if (root == NULL || entries == NULL || entry == NULL || changes == NULL || change == NULL || value == NULL ||
        metadata == NULL || statuses == NULL || st == NULL) {
        json_object_put(entries);
        json_object_put(entry);
        json_object_put(changes);
        json_object_put(change);
        json_object_put(value);
        json_object_put(metadata);
        json_object_put(statuses);
        json_object_put(st);
        goto cleanup;
    }
    /* Assembled inside out, so from here on root owns every piece. */
    cmn_json_add_string(root, "object", "whatsapp_business_account");
    json_object_object_add(root, "entry", entries);
    json_object_array_add(entries, entry);
    cmn_json_add_string(entry, "id", in->waba_id);
    json_object_object_add(entry, "changes", changes);
    json_object_array_add(changes, change);
    json_object_object_add(change, "value", value);
    cmn_json_add_string(change, "field", "messages");
    cmn_json_add_string(value, "messaging_product", "whatsapp");
    cmn_json_add_string(metadata, "display_phone_number", in->display_phone_number);
    cmn_json_add_string(metadata, "phone_number_id", in->phone_number_id);
    json_object_object_add(value, "metadata", metadata);
    json_object_object_add(value, "statuses", statuses);
    json_object_array_add(statuses, st);
    snprintf(ts, sizeof ts, "%lld", (long long)in->timestamp_s);
    cmn_json_add_string(st, "id", in->wamid);
    cmn_json_add_string(st, "status", in->receipt->status);
    cmn_json_add_string(st, "timestamp", ts);
    cmn_json_add_string(st, "recipient_id", in->recipient_id);
    if (in->biz_opaque != NULL && in->biz_opaque[0] != '\0')
        cmn_json_add_string(st, "biz_opaque_callback_data", in->biz_opaque);
    if (strcmp(in->receipt->status, "sent") == 0 || strcmp(in->receipt->status, "delivered") == 0) {
        if (add_conversation(st, in->wamid) != 0)
            goto cleanup;
    }
    if (strcmp(in->receipt->status, "failed") == 0 && add_errors(st, in->receipt) != 0)
        goto cleanup;
    rc = cmn_json_to_buf(root, out);
cleanup:
    json_object_put(root);
    return rc;
}

int msbx_sign(const char *secret, const char *body, size_t len, char out[MSBX_SIGNATURE_LEN])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    static const char HEX[] = "0123456789abcdef";
    if (secret == NULL || secret[0] == '\0' || (body == NULL && len > 0))
        return CMN_ERR_INVALID;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)(body != NULL ? body : ""), len, mac,
             &maclen) == NULL ||
        maclen != 32)
        return CMN_ERR_INVALID;
    memcpy(out, "sha256=", 7);
    for (unsigned int i = 0; i < maclen; i++) {
        out[7 + 2 * i] = HEX[mac[i] >> 4];
        out[7 + 2 * i + 1] = HEX[mac[i] & 15];
    }
    out[7 + 2 * maclen] = '\0';
    return 0;
}
