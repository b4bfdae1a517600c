/* ingest_api.c - body parsing, validation and answers of POST /v1/communications.
 *
 * A submission is all or nothing: if any request of a batch is invalid, the
 * whole batch is refused with every bad field listed, so a client never has
 * to work out which half of its batch went through. */
#include "ingest_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/err.h"
#include "crm/json.h"
#include "ingest_prefs.h"

ingest_route_t ingest_api_route(const char *method, const char *path)
{
    char client[CMN_REQ_MAX_ID + 1];
    if (path == NULL)
        return INGEST_ROUTE_NOT_FOUND;
    if (strcmp(path, INGEST_PATH_COMMUNICATIONS) == 0) {
        if (method == NULL || strcmp(method, "POST") != 0)
            return INGEST_ROUTE_METHOD_NOT_ALLOWED;
        return INGEST_ROUTE_SUBMIT;
    }
    if (ingest_prefs_path(path, client, sizeof client)) {
        if (method != NULL && strcmp(method, "GET") == 0)
            return INGEST_ROUTE_PREFS_GET;
        if (method != NULL && strcmp(method, "PUT") == 0)
            return INGEST_ROUTE_PREFS_PUT;
        if (method != NULL && strcmp(method, "DELETE") == 0)
            return INGEST_ROUTE_PREFS_DELETE;
        return INGEST_ROUTE_METHOD_NOT_ALLOWED;
    }
    return INGEST_ROUTE_NOT_FOUND;
}

const char *ingest_api_allow(const char *path)
{
    char client[CMN_REQ_MAX_ID + 1];
    if (path == NULL)
        return NULL;
    if (strcmp(path, INGEST_PATH_COMMUNICATIONS) == 0)
        return INGEST_ALLOW_COMMUNICATIONS;
    if (ingest_prefs_path(path, client, sizeof client))
        return INGEST_ALLOW_PREFERENCES;
    return NULL;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

int ingest_api_content_type_ok(const char *ct)
{
    static const char json[] = "application/json";
    if (ct == NULL)
        return 0;
    ct = skip_ws(ct);
    if (strncasecmp(ct, json, sizeof json - 1) != 0)
        return 0;
    const char *p = skip_ws(ct + sizeof json - 1);
    /* Parameters: only charset matters, and JSON is UTF-8 (RFC 8259), so a
     * body declared in another charset would be misread: refuse it. */
    while (*p == ';') {
        p = skip_ws(p + 1);
        const char *name = p;
        while (*p != '\0' && *p != '=' && *p != ';')
            p++;
        size_t name_len = (size_t)(p - name);
        while (name_len > 0 && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
            name_len--;
        const char *value = "";
        size_t value_len = 0;
        if (*p == '=') {
            value = skip_ws(p + 1);
            p = value;
            while (*p != '\0' && *p != ';')
                p++;
            value_len = (size_t)(p - value);
            while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
                value_len--;
            if (value_len >= 2 && value[0] == '"' && value[value_len - 1] == '"') {
                value++;
                value_len -= 2;
            }
        }
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 &&
            !(value_len == 5 && strncasecmp(value, "utf-8", 5) == 0))
            return 0;
    }
    return *p == '\0';
}

static int is_lower_hex(const char *s, size_t n, int *all_zero)
{
    *all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
        if (s[i] != '0')
            *all_zero = 0;
    }
    return 1;
}

int ingest_api_traceparent_ok(const char *s)
{
    int zero = 0;
    if (s == NULL || strlen(s) != 55)
        return 0;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    /* Version ff is forbidden by W3C; other versions share the 00 layout. */
    if (!is_lower_hex(s, 2, &zero) || strncmp(s, "ff", 2) == 0)
        return 0;
    if (!is_lower_hex(s + 3, 32, &zero) || zero)
        return 0;
    if (!is_lower_hex(s + 36, 16, &zero) || zero)
        return 0;
    return is_lower_hex(s + 53, 2, &zero);
}

int ingest_problem_refuse(ingest_problem_t *problem, const char *title, const char *detail, json_object *errors)
{
    problem->status = 400;
    snprintf(problem->title, sizeof problem->title, "%s", title);
    snprintf(problem->detail, sizeof problem->detail, "%s", detail);
    json_object_put(problem->errors);
    problem->errors = errors;
    return CMN_ERR_INVALID;
}

int ingest_problem_add_error(json_object *errors, const char *field, const char *reason)
{
    json_object *e = json_object_new_object();
    if (e == NULL)
        return CMN_ERR_NOMEM;
    int rc = cmn_json_add_string(e, "field", field);
    if (rc == 0)
        rc = cmn_json_add_string(e, "reason", reason);
    if (rc == 0 && json_object_array_add(errors, e) != 0)
        rc = CMN_ERR_NOMEM;
    if (rc != 0)
        json_object_put(e);
    return rc;
}

/* Checks the {"requests":[...]} envelope itself; items are validated later.
 * Returns the number of items, or 0 after adding errors. */
static size_t check_batch_envelope(json_object *root, size_t max_batch, json_object *errors, int *rc)
{
    char reason[96];
    json_object *arr = NULL;
    json_object_object_get_ex(root, "requests", &arr);
    json_object_object_foreach(root, key, member)
    {
        (void)member;
        if (strcmp(key, "requests") != 0 && *rc == 0)
            *rc = ingest_problem_add_error(errors, key, "unknown field (a batch has only \"requests\")");
    }
    if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
        if (*rc == 0)
            *rc = ingest_problem_add_error(errors, "requests", "must be an array of CommunicationRequest objects");
        return 0;
    }
    size_t n = json_object_array_length(arr);
    if (n == 0) {
        if (*rc == 0)
            *rc = ingest_problem_add_error(errors, "requests", "must contain at least one request");
        return 0;
    }
    if (n > max_batch) {
        /* Validating thousands of items only to refuse them anyway would
         * spend CPU on a client that has to split its batch regardless. */
        snprintf(reason, sizeof reason, "must contain at most %zu requests", max_batch);
        if (*rc == 0)
            *rc = ingest_problem_add_error(errors, "requests", reason);
        return 0;
    }
    return json_object_array_length(errors) == 0 ? n : 0;
}

int ingest_api_parse(const char *body, size_t len, size_t max_batch, int64_t received_at_ms,
                     ingest_batch_t *batch, ingest_problem_t *problem)
{
    char err[256];
    char detail[256];
    int rc = 0;
    json_object *root = NULL;
    json_object *errors = NULL;
    json_object *items = NULL;
    size_t n = 0;

    if (batch == NULL || problem == NULL || max_batch == 0)
        return CMN_ERR_INVALID;
    root = cmn_json_parse(body, len, err, sizeof err);
    if (root == NULL) {
        rc = ingest_problem_refuse(problem, "Invalid JSON", err, NULL);
        goto cleanup;
    }
    errors = json_object_new_array();
    if (errors == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (!json_object_is_type(root, json_type_object)) {
        rc = ingest_problem_add_error(errors, "request",
                                      "must be a CommunicationRequest object or {\"requests\":[...]}");
        if (rc == 0) {
            rc = ingest_problem_refuse(problem, "Invalid request",
                                       "The body is not a JSON object; nothing was accepted.", errors);
            errors = NULL;
        }
        goto cleanup;
    }

    if (json_object_object_get_ex(root, "requests", &items)) {
        n = check_batch_envelope(root, max_batch, errors, &rc);
        if (rc != 0)
            goto cleanup;
        if (n == 0) {
            rc = ingest_problem_refuse(problem, "Invalid request",
                                       "The batch envelope is invalid; nothing was accepted.", errors);
            errors = NULL;
            goto cleanup;
        }
    } else {
        n = 1;
        items = NULL;
        batch->single = 1;
    }

    batch->requests = calloc(n, sizeof *batch->requests);
    if (batch->requests == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    batch->n = n;
    for (size_t i = 0; i < n; i++) {
        char prefix[32] = "";
        json_object *item = root;
        if (items != NULL) {
            snprintf(prefix, sizeof prefix, "requests[%zu].", i);
            item = json_object_array_get_idx(items, i);
        }
        int vrc = cmn_request_from_json(item, prefix, &batch->requests[i], errors);
        if (vrc == CMN_ERR_NOMEM) {
            rc = vrc;
            goto cleanup;
        }
        batch->requests[i].received_at_ms = received_at_ms;
    }
    if (json_object_array_length(errors) > 0) {
        size_t nerr = json_object_array_length(errors);
        snprintf(detail, sizeof detail, "%zu field%s failed validation; nothing was accepted.", nerr,
                 nerr == 1 ? "" : "s");
        rc = ingest_problem_refuse(problem, "Invalid request", detail, errors);
        errors = NULL;
        goto cleanup;
    }

cleanup:
    if (rc != 0)
        ingest_batch_clear(batch);
    json_object_put(errors);
    json_object_put(root);
    return rc;
}

int ingest_api_accepted_body(const ingest_batch_t *batch, cmn_buf_t *out)
{
    if (batch == NULL || out == NULL)
        return CMN_ERR_INVALID;
    int rc = cmn_buf_puts(out, "{\"communications\":[");
    for (size_t i = 0; rc == 0 && i < batch->n; i++) {
        const cmn_request_t *r = &batch->requests[i];
        rc = cmn_buf_puts(out, i > 0 ? ",{\"request_id\":" : "{\"request_id\":");
        if (rc == 0)
            rc = cmn_buf_put_json_string(out, r->request_id);
        if (rc == 0)
            rc = cmn_buf_puts(out, ",\"communication_id\":");
        if (rc == 0)
            rc = cmn_buf_put_json_string(out, r->communication_id);
        if (rc == 0)
            rc = cmn_buf_putc(out, '}');
    }
    if (rc == 0)
        rc = cmn_buf_putc(out, ']');
    /* The single form also answers the id at the top level, so the common
     * one-request client does not need to index into an array. */
    if (rc == 0 && batch->single && batch->n == 1) {
        rc = cmn_buf_puts(out, ",\"communication_id\":");
        if (rc == 0)
            rc = cmn_buf_put_json_string(out, batch->requests[0].communication_id);
    }
    if (rc == 0)
        rc = cmn_buf_putc(out, '}');
    return rc;
}

void ingest_batch_clear(ingest_batch_t *batch)
{
    if (batch == NULL)
        return;
    for (size_t i = 0; batch->requests != NULL && i < batch->n; i++)
        cmn_request_clear(&batch->requests[i]);
    free(batch->requests);
    memset(batch, 0, sizeof *batch);
}

void ingest_problem_clear(ingest_problem_t *problem)
{
    if (problem == NULL)
        return;
    json_object_put(problem->errors);
    memset(problem, 0, sizeof *problem);
}
