/* wh_optout.c - opt-out and opt-in snapshots. */
#include "wh_optout.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/preferences.h"

int wh_optout_is_all(const char *body)
{
    if (body == NULL)
        return 0;
    size_t len = strlen(body), start = 0;
    while (start < len && (isspace((unsigned char)body[start]) || ispunct((unsigned char)body[start])))
        start++;
    while (len > start && (isspace((unsigned char)body[len - 1]) || ispunct((unsigned char)body[len - 1])))
        len--;
    return len - start == 7 && strncasecmp(body + start, "stopall", 7) == 0;
}

int wh_optout_apply(const char *stored_json, const char *tenant_id, const char *client_id,
                    const wh_optout_change_t *change, int64_t now_ms, cmn_buf_t *out, int *stored_ok)
{
    cmn_preferences_t p;
    json_object *obj = NULL;
    char key[CMN_PREFS_KEY_MAX];
    int rc = 0;

    memset(&p, 0, sizeof p);
    if (stored_ok != NULL)
        *stored_ok = 0;
    if (change == NULL || out == NULL || change->channel < 0 || change->channel >= CMN_CHANNEL__COUNT ||
        cmn_preferences_key(tenant_id, client_id, key, sizeof key) != 0)
        return CMN_ERR_INVALID;

    if (stored_json != NULL) {
        obj = cmn_json_parse(stored_json, strlen(stored_json), NULL, 0);
        if (obj != NULL && cmn_preferences_from_json(obj, "", &p, NULL) == 0 && p.client_id != NULL &&
            strcmp(p.client_id, client_id) == 0) {
            if (stored_ok != NULL)
                *stored_ok = 1;
        } else {
            cmn_preferences_clear(&p);
        }
    }
    if (p.client_id == NULL) {
        p.v = 1;
        p.tenant_id = strdup(tenant_id != NULL ? tenant_id : "default");
        p.client_id = strdup(client_id);
        if (p.tenant_id == NULL || p.client_id == NULL) {
            rc = CMN_ERR_NOMEM;
            goto out;
        }
    }
    if (change->opt_out && change->all_channels) {
        for (int c = 0; c < CMN_CHANNEL__COUNT; c++)
            p.opt_out[c] = 1;
    } else {
        p.opt_out[change->channel] = change->opt_out ? 1 : 0;
    }
    p.updated_at_ms = p.updated_at_ms >= now_ms ? p.updated_at_ms + 1 : now_ms;
    rc = cmn_preferences_to_json(&p, out);
out:
    json_object_put(obj);
    cmn_preferences_clear(&p);
    return rc;
}
