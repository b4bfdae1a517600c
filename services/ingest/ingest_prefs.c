/* ingest_prefs.c - path, target and body validation of the preferences
 * resource (see ingest_prefs.h). */
#include "ingest_prefs.h"

#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/time.h"

#define ID_RULE "must be 1-128 printable ASCII characters without spaces"
#define TENANT_RULE "must be 1-128 printable ASCII characters without spaces or ':'"

int ingest_prefs_path(const char *path, char *client, size_t clientlen)
{
    static const char prefix[] = INGEST_PATH_CLIENTS_PREFIX;
    static const char suffix[] = INGEST_PATH_PREFERENCES_SUFFIX;
    size_t plen = sizeof prefix - 1, slen = sizeof suffix - 1;
    if (client != NULL && clientlen > 0)
        client[0] = '\0';
    if (path == NULL)
        return 0;
    size_t len = strlen(path);
    if (len <= plen + slen || strncmp(path, prefix, plen) != 0 || strcmp(path + len - slen, suffix) != 0)
        return 0;
    /* The server has already percent-decoded the path, so a client id with
     * an encoded '/' (%2F) arrives here as "a/b": everything between the
     * prefix and the suffix is the id. */
    size_t idlen = len - plen - slen;
    if (client != NULL && idlen < clientlen) {
        memcpy(client, path + plen, idlen);
        client[idlen] = '\0';
    }
    return 1;
}

/* The tenant of a query argument, validated; adds an error when it is bad. */
static int check_query_tenant(const char *query_tenant, json_object *errors)
{
    if (query_tenant == NULL)
        return 0;
    if (!cmn_valid_id(query_tenant, CMN_REQ_MAX_ID) || strchr(query_tenant, ':') != NULL)
        return ingest_problem_add_error(errors, "tenant_id", "in the query: " TENANT_RULE);
    return 0;
}

static int check_path_client(const char *path_client, json_object *errors)
{
    if (path_client == NULL || !cmn_valid_id(path_client, CMN_REQ_MAX_ID))
        return ingest_problem_add_error(errors, "client_id", "in the path: " ID_RULE);
    return 0;
}

/* Refuses with every error collected so far (taking errors over). */
static int refuse_fields(ingest_problem_t *problem, json_object **errors)
{
    char detail[128];
    size_t n = json_object_array_length(*errors);
    snprintf(detail, sizeof detail, "%zu field%s failed validation; nothing was stored.", n, n == 1 ? "" : "s");
    int rc = ingest_problem_refuse(problem, "Invalid request", detail, *errors);
    *errors = NULL;
    return rc;
}

int ingest_prefs_target(const char *path_client, const char *query_tenant, ingest_prefs_target_t *target,
                        ingest_problem_t *problem)
{
    int rc = 0;
    json_object *errors = NULL;
    if (target == NULL || problem == NULL)
        return CMN_ERR_INVALID;
    memset(target, 0, sizeof *target);
    errors = json_object_new_array();
    if (errors == NULL)
        return CMN_ERR_NOMEM;
    rc = check_path_client(path_client, errors);
    if (rc == 0)
        rc = check_query_tenant(query_tenant, errors);
    if (rc != 0)
        goto cleanup;
    if (json_object_array_length(errors) > 0) {
        rc = refuse_fields(problem, &errors);
        goto cleanup;
    }
    snprintf(target->client_id, sizeof target->client_id, "%s", path_client);
    snprintf(target->tenant_id, sizeof target->tenant_id, "%s", query_tenant != NULL ? query_tenant : "default");
cleanup:
    json_object_put(errors);
    return rc;
}

/* Sets obj[key] to the string s, replacing what was there. */
static int set_string(json_object *obj, const char *key, const char *s)
{
    json_object *v = json_object_new_string(s);
    if (v == NULL || json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return CMN_ERR_NOMEM;
    }
    return 0;
}

/* The body's members that the path, the query and the server's clock
 * decide. Adds an error for each conflict and rewrites root so that
 * cmn_preferences_from_json() sees the effective values. */
static int merge_identity(json_object *root, const char *path_client, const char *query_tenant, int64_t stamp,
                          json_object *errors)
{
    char when[40];
    int rc = 0;
    json_object *v = NULL;

    if (json_object_object_get_ex(root, "client_id", &v) && v != NULL) {
        if (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), path_client) != 0)
            rc = ingest_problem_add_error(errors, "client_id",
                                          "must be absent or equal to the client id in the path");
    }
    v = NULL;
    if (rc == 0 && query_tenant != NULL && json_object_object_get_ex(root, "tenant_id", &v) && v != NULL) {
        /* A mismatch between two places naming the tenant is the caller's
         * bug; guessing which one it meant would write the wrong client. */
        if (json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), query_tenant) != 0)
            rc = ingest_problem_add_error(errors, "tenant_id", "must equal the tenant_id query parameter");
    }
    if (rc == 0 && query_tenant != NULL && (!json_object_object_get_ex(root, "tenant_id", &v) || v == NULL))
        rc = set_string(root, "tenant_id", query_tenant);
    if (rc == 0)
        rc = set_string(root, "client_id", path_client);
    if (rc == 0)
        rc = cmn_time_format_rfc3339(stamp, when, sizeof when) == 0 ? 0 : CMN_ERR_INVALID;
    if (rc == 0)
        rc = set_string(root, "updated_at", when);
    return rc;
}

int ingest_prefs_parse(const char *body, size_t len, const char *path_client, const char *query_tenant,
                       int64_t updated_at_ms, cmn_preferences_t *out, ingest_problem_t *problem)
{
    char err[256];
    int rc = 0;
    json_object *root = NULL;
    json_object *errors = NULL;

    if (out == NULL || problem == NULL)
        return CMN_ERR_INVALID;
    errors = json_object_new_array();
    if (errors == NULL)
        return CMN_ERR_NOMEM;
    /* The path and the query are checked first: with a bad client id every
     * other answer about the body would be beside the point. */
    rc = check_path_client(path_client, errors);
    if (rc == 0)
        rc = check_query_tenant(query_tenant, errors);
    if (rc != 0)
        goto cleanup;
    if (json_object_array_length(errors) > 0) {
        rc = refuse_fields(problem, &errors);
        goto cleanup;
    }

    root = cmn_json_parse(body, len, err, sizeof err);
    if (root == NULL) {
        rc = ingest_problem_refuse(problem, "Invalid JSON", err, NULL);
        goto cleanup;
    }
    if (!json_object_is_type(root, json_type_object)) {
        rc = ingest_problem_add_error(errors, "preferences", "must be a ClientPreferences JSON object");
        if (rc == 0)
            rc = refuse_fields(problem, &errors);
        goto cleanup;
    }
    rc = merge_identity(root, path_client, query_tenant, updated_at_ms, errors);
    if (rc != 0)
        goto cleanup;
    rc = cmn_preferences_from_json(root, "", out, errors);
    if (rc == CMN_ERR_NOMEM)
        goto cleanup;
    rc = 0;
    if (json_object_array_length(errors) > 0) {
        rc = refuse_fields(problem, &errors);
        goto cleanup;
    }

cleanup:
    if (rc != 0)
        cmn_preferences_clear(out);
    json_object_put(errors);
    json_object_put(root);
    return rc;
}

int64_t ingest_prefs_next_stamp(int64_t last_ms, int64_t now_ms)
{
    return now_ms > last_ms ? now_ms : last_ms + 1;
}
