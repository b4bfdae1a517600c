/* router_claims.c - batched request claims (see router_claims.h). */
#include "router_claims.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* The whole batch goes to PostgreSQL as parallel arrays and comes back
 * through unnest(), so a batch of 500 requests costs two round trips, not a
 * thousand. */
static const char SQL_INSERT[] =
    "INSERT INTO request_claims (tenant_id, request_id, communication_id, state, claimed_at,"
    " source_topic, source_partition, source_offset, output_fence)"
    " SELECT u.tenant_id, u.request_id, u.communication_id, 'claimed', now(),"
    " u.source_topic, u.source_partition, u.source_offset, $7::jsonb"
    " FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int[], $6::bigint[])"
    " AS u(tenant_id, request_id, communication_id, source_topic, source_partition, source_offset)"
    " ON CONFLICT (tenant_id, request_id) DO NOTHING"
    " RETURNING tenant_id, request_id";

/* Takes a deferred claim back for the record that carries its sequence
 * number. The WHERE makes it atomic: of several copies of one deferred
 * record, only the first UPDATE finds the claim still 'deferred'. */
static const char SQL_RETURN[] =
    "UPDATE request_claims AS c SET state = 'claimed', claimed_at = now(), done_at = NULL,"
    " source_topic = u.source_topic, source_partition = u.source_partition, source_offset = u.source_offset,"
    " output_fence = $7::jsonb"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::bigint[])"
    " AS u(tenant_id, request_id, seq, source_topic, source_partition, source_offset)"
    " WHERE c.tenant_id = u.tenant_id AND c.request_id = u.request_id AND c.state = 'deferred'"
    " AND c.deferral_seq = u.seq"
    " RETURNING c.tenant_id, c.request_id, c.deferral_seq";

static const char SQL_SELECT[] =
    "SELECT c.tenant_id, c.request_id, c.state, c.source_topic, c.source_partition, c.source_offset,"
    " c.output_fence::text, c.deferral_seq"
    " FROM request_claims c"
    " WHERE (c.tenant_id, c.request_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

/* Only 'claimed' rows move: a row already 'done' (by a concurrent zombie, say)
 * keeps its first done_at. The new sequence is given explicitly (not
 * deferral_seq + 1) so it is exactly the number the deferred record carries. */
static const char SQL_FINISH[] =
    "UPDATE request_claims AS c SET state = u.state,"
    " done_at = CASE WHEN u.state = 'done' THEN now() END,"
    " deferral_seq = u.seq,"
    " deferred_until = CASE WHEN u.state = 'deferred' THEN to_timestamp(u.until_ms / 1000.0) END"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])"
    " AS u(tenant_id, request_id, state, seq, until_ms)"
    " WHERE c.tenant_id = u.tenant_id AND c.request_id = u.request_id AND c.state = 'claimed'";

const char *router_claim_state_name(router_claim_state_t s)
{
    switch (s) {
    case ROUTER_CLAIM_UNKNOWN:
        return "unknown";
    case ROUTER_CLAIM_NEW:
        return "new";
    case ROUTER_CLAIM_RESUME:
        return "resume";
    case ROUTER_CLAIM_DONE:
        return "done";
    case ROUTER_CLAIM_OWNED:
        return "owned";
    case ROUTER_CLAIM_BATCH_DUP:
        return "batch_duplicate";
    case ROUTER_CLAIM_RETURN:
        return "return";
    case ROUTER_CLAIM_DEFERRED:
        return "deferred";
    case ROUTER_CLAIM_FOUND:
        return "found";
    case ROUTER_CLAIM_ABSENT:
        return "absent";
    }
    return "";
}

/* ------------------------------------------------------------ pure helpers */

static int cmp_key(const char *t1, const char *r1, const char *t2, const char *r2)
{
    int c = strcmp(t1, t2);
    return c != 0 ? c : strcmp(r1, r2);
}

/* Sort order for the in-memory duplicate scan: by key, then by position, so
 * the first record of a run of equal keys is the earliest one. */
static int cmp_claim_ptr(const void *a, const void *b)
{
    const router_claim_t *x = *(const router_claim_t *const *)a;
    const router_claim_t *y = *(const router_claim_t *const *)b;
    int c = cmp_key(x->tenant_id, x->request_id, y->tenant_id, y->request_id);
    if (c != 0) {
        return c;
    }
    return (x > y) - (x < y);
}

/* The same, with the deferral number between the key and the position. */
static int cmp_claim_dup(const void *a, const void *b)
{
    const router_claim_t *x = *(const router_claim_t *const *)a;
    const router_claim_t *y = *(const router_claim_t *const *)b;
    int c = cmp_key(x->tenant_id, x->request_id, y->tenant_id, y->request_id);
    if (c != 0) {
        return c;
    }
    if (x->deferral != y->deferral) {
        return x->deferral < y->deferral ? -1 : 1;
    }
    return (x > y) - (x < y);
}

int router_deferral_parse(const void *value, size_t len, int64_t *n)
{
    const char *s = value;
    int64_t v = 0;
    *n = 0;
    if (s == NULL || len == 0 || len > 10 || s[0] == '0') {
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return CMN_ERR_INVALID;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v > ROUTER_DEFERRAL_MAX) {
        return CMN_ERR_INVALID;
    }
    *n = v;
    return CMN_OK;
}

/* Returns a new array of pointers to the keys, sorted by cmp_claim_ptr. */
static router_claim_t **sorted_index(router_claim_t *keys, size_t n)
{
    router_claim_t **idx = malloc((n > 0 ? n : 1) * sizeof *idx);
    if (idx == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        idx[i] = &keys[i];
    }
    qsort(idx, n, sizeof *idx, cmp_claim_ptr);
    return idx;
}

/* First index in the sorted idx whose key is >= (tenant, request). */
static size_t lower_bound(router_claim_t *const *idx, size_t n, const char *tenant, const char *request)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(idx[mid]->tenant_id, idx[mid]->request_id, tenant, request) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int router_claims_mark_batch_duplicates(router_claim_t *keys, size_t n)
{
    router_claim_t **idx = sorted_index(keys, n);
    if (idx == NULL) {
        return CMN_ERR_NOMEM;
    }
    qsort(idx, n, sizeof *idx, cmp_claim_dup);
    const router_claim_t *first = NULL;
    for (size_t i = 0; i < n; i++) {
        router_claim_t *k = idx[i];
        if (k->lookup_only) {
            continue;
        }
        if (first != NULL && cmp_key(first->tenant_id, first->request_id, k->tenant_id, k->request_id) == 0 &&
            first->deferral == k->deferral) {
            k->state = ROUTER_CLAIM_BATCH_DUP;
        } else {
            first = k;
        }
    }
    free(idx);
    return CMN_OK;
}

static int append_text_elem(cmn_buf_t *out, const char *s, int first)
{
    int rc = first ? CMN_OK : cmn_buf_putc(out, ',');
    if (rc != CMN_OK) {
        return rc;
    }
    /* Quoting every element keeps empty strings, spaces, commas and braces
     * literal; only '"' and '\' need a backslash inside quotes. */
    rc = cmn_buf_putc(out, '"');
    for (const char *p = s; rc == CMN_OK && *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            rc = cmn_buf_putc(out, '\\');
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_putc(out, *p);
        }
    }
    if (rc == CMN_OK) {
        rc = cmn_buf_putc(out, '"');
    }
    return rc;
}

int router_pg_text_array(cmn_buf_t *out, const char *const *items, size_t n)
{
    int rc = cmn_buf_putc(out, '{');
    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        rc = append_text_elem(out, items[i], i == 0);
    }
    if (rc == CMN_OK) {
        rc = cmn_buf_putc(out, '}');
    }
    return rc;
}

/* ------------------------------------------------------------------- SQL */

/* Which keys a statement carries. */
typedef int (*key_pred_fn)(const router_claim_t *k);

static int pred_to_insert(const router_claim_t *k)
{
    return !k->lookup_only && k->state == ROUTER_CLAIM_UNKNOWN;
}

static int pred_to_return(const router_claim_t *k)
{
    return !k->lookup_only && k->state == ROUTER_CLAIM_UNKNOWN && k->deferral > 0;
}

static int pred_to_select(const router_claim_t *k)
{
    return k->lookup_only || k->state == ROUTER_CLAIM_UNKNOWN;
}

static int pred_to_finish(const router_claim_t *k)
{
    return k->state == ROUTER_CLAIM_NEW || k->state == ROUTER_CLAIM_RESUME || k->state == ROUTER_CLAIM_RETURN;
}

/* The parallel arrays of one statement, as PostgreSQL literals. state,
 * seq and until are filled only for the finishing UPDATE, deferral only
 * for the taking back. */
typedef struct key_arrays {
    cmn_buf_t tenant, request, comm, topic, partition, offset, deferral, state, seq, until;
    size_t count;
} key_arrays_t;

static void key_arrays_free(key_arrays_t *a)
{
    cmn_buf_free(&a->tenant);
    cmn_buf_free(&a->request);
    cmn_buf_free(&a->comm);
    cmn_buf_free(&a->topic);
    cmn_buf_free(&a->partition);
    cmn_buf_free(&a->offset);
    cmn_buf_free(&a->deferral);
    cmn_buf_free(&a->state);
    cmn_buf_free(&a->seq);
    cmn_buf_free(&a->until);
}

static int key_arrays_build(key_arrays_t *a, const router_claim_t *keys, size_t n, key_pred_fn pred)
{
    int rc = CMN_OK;
    memset(a, 0, sizeof *a);
    cmn_buf_t *all[] = {&a->tenant, &a->request, &a->comm,  &a->topic, &a->partition,
                        &a->offset, &a->deferral, &a->state, &a->seq,   &a->until};
    for (size_t j = 0; rc == CMN_OK && j < sizeof all / sizeof all[0]; j++) {
        rc = cmn_buf_putc(all[j], '{');
    }
    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        const router_claim_t *k = &keys[i];
        if (!pred(k)) {
            continue;
        }
        int first = a->count == 0;
        rc = append_text_elem(&a->tenant, k->tenant_id, first);
        if (rc == CMN_OK) {
            rc = append_text_elem(&a->request, k->request_id, first);
        }
        if (rc == CMN_OK) {
            rc = append_text_elem(&a->comm, k->communication_id, first);
        }
        if (rc == CMN_OK) {
            rc = append_text_elem(&a->topic, k->source_topic != NULL ? k->source_topic : "", first);
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&a->partition, "%s%" PRId32, first ? "" : ",", k->source_partition);
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&a->offset, "%s%" PRId64, first ? "" : ",", k->source_offset);
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&a->deferral, "%s%" PRId64, first ? "" : ",", k->deferral);
        }
        if (rc == CMN_OK) {
            rc = append_text_elem(&a->state, k->defer ? "deferred" : "done", first);
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&a->seq, "%s%" PRId64, first ? "" : ",", k->defer ? k->seq + 1 : k->seq);
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&a->until, "%s%" PRId64, first ? "" : ",", k->defer ? k->defer_until_ms : 0);
        }
        a->count++;
    }
    for (size_t j = 0; rc == CMN_OK && j < sizeof all / sizeof all[0]; j++) {
        rc = cmn_buf_putc(all[j], '}');
    }
    return rc == CMN_OK ? CMN_OK : CMN_ERR_NOMEM;
}

/* Turns a failed result into an error code and message. A broken connection
 * is UNAVAILABLE so the caller reconnects rather than retrying on it. */
static int result_error(PGconn *conn, const PGresult *res, const char *what, char *errstr, size_t errlen)
{
    int rc = PQstatus(conn) == CONNECTION_BAD ? CMN_ERR_UNAVAILABLE : CMN_ERR_DB;
    if (errstr == NULL || errlen == 0) {
        return rc;
    }
    const char *msg = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    if (msg == NULL || msg[0] == '\0') {
        msg = PQerrorMessage(conn);
    }
    int n = snprintf(errstr, errlen, "%s: %s", what, msg);
    /* libpq's messages span lines; a log line must not. */
    size_t len = n < 0 ? 0 : ((size_t)n < errlen ? (size_t)n : errlen - 1);
    for (size_t i = 0; i < len; i++) {
        if (errstr[i] == '\n' || errstr[i] == '\t' || errstr[i] == '\r') {
            errstr[i] = ' ';
        }
    }
    while (len > 0 && errstr[len - 1] == ' ') {
        errstr[--len] = '\0';
    }
    return rc;
}

static int run_insert(PGconn *conn, router_claim_t *keys, size_t n, router_claim_t *const *idx,
                      const char *fence_json, char *errstr, size_t errlen)
{
    key_arrays_t a;
    PGresult *res = NULL;
    int rc = key_arrays_build(&a, keys, n, pred_to_insert);
    if (rc != CMN_OK || a.count == 0) {
        goto cleanup;
    }
    const char *params[7] = {a.tenant.data, a.request.data, a.comm.data, a.topic.data,
                             a.partition.data, a.offset.data, fence_json};
    res = PQexecParams(conn, SQL_INSERT, 7, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(conn, res, "claiming requests", errstr, errlen);
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        const char *tenant = PQgetvalue(res, row, 0);
        const char *request = PQgetvalue(res, row, 1);
        size_t i = lower_bound(idx, n, tenant, request);
        /* Several keys can share the value (a batch duplicate, a lookup key);
         * only the one this INSERT carried became NEW. */
        for (; i < n && cmp_key(idx[i]->tenant_id, idx[i]->request_id, tenant, request) == 0; i++) {
            if (pred_to_insert(idx[i])) {
                idx[i]->state = ROUTER_CLAIM_NEW;
                break;
            }
        }
    }

cleanup:
    PQclear(res);
    key_arrays_free(&a);
    return rc;
}

static int run_return(PGconn *conn, router_claim_t *keys, size_t n, router_claim_t *const *idx,
                      const char *fence_json, char *errstr, size_t errlen)
{
    key_arrays_t a;
    PGresult *res = NULL;
    int rc = key_arrays_build(&a, keys, n, pred_to_return);
    if (rc != CMN_OK || a.count == 0) {
        goto cleanup;
    }
    const char *params[7] = {a.tenant.data, a.request.data, a.deferral.data, a.topic.data,
                             a.partition.data, a.offset.data, fence_json};
    res = PQexecParams(conn, SQL_RETURN, 7, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(conn, res, "taking back deferred claims", errstr, errlen);
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        const char *tenant = PQgetvalue(res, row, 0);
        const char *request = PQgetvalue(res, row, 1);
        int64_t seq = strtoll(PQgetvalue(res, row, 2), NULL, 10);
        /* Batch duplicates were marked, so at most one waiting key of this
         * request carries this sequence. */
        for (size_t i = lower_bound(idx, n, tenant, request);
             i < n && cmp_key(idx[i]->tenant_id, idx[i]->request_id, tenant, request) == 0; i++) {
            if (pred_to_return(idx[i]) && idx[i]->deferral == seq) {
                idx[i]->state = ROUTER_CLAIM_RETURN;
                idx[i]->seq = seq;
                break;
            }
        }
    }

cleanup:
    PQclear(res);
    key_arrays_free(&a);
    return rc;
}

static int same_source(const router_claim_t *k, const PGresult *res, int row)
{
    if (PQgetisnull(res, row, 3)) {
        return -1; /* unknown origin */
    }
    return strcmp(PQgetvalue(res, row, 3), k->source_topic != NULL ? k->source_topic : "") == 0 &&
           strtoll(PQgetvalue(res, row, 4), NULL, 10) == (long long)k->source_partition &&
           strtoll(PQgetvalue(res, row, 5), NULL, 10) == (long long)k->source_offset;
}

static int apply_existing(router_claim_t *k, const PGresult *res, int row)
{
    if (k->lookup_only) {
        k->state = ROUTER_CLAIM_FOUND;
        return CMN_OK;
    }
    if (k->state != ROUTER_CLAIM_UNKNOWN) {
        return CMN_OK;
    }
    const char *state = PQgetvalue(res, row, 2);
    if (strcmp(state, "done") == 0) {
        k->state = ROUTER_CLAIM_DONE;
        return CMN_OK;
    }
    if (strcmp(state, "deferred") == 0) {
        /* The returning copy took the claim back in SQL_RETURN before this
         * SELECT, or it is not this record. A record carrying the very
         * sequence that is still deferred here means the claim changed
         * between the two statements (a zombie replica): do not guess. */
        if (k->deferral > 0 && k->deferral == strtoll(PQgetvalue(res, row, 7), NULL, 10)) {
            return CMN_ERR_DB;
        }
        k->state = ROUTER_CLAIM_DEFERRED;
        return CMN_OK;
    }
    /* 'claimed'. A claim without a recorded source (written by hand, or by
     * an older router) has no owner that will come back for it; resuming it
     * is the choice that cannot lose the request, and the read-back (with no
     * fence: from the start of the topics) keeps it from being sent twice. */
    if (same_source(k, res, row) == 0) {
        k->state = ROUTER_CLAIM_OWNED;
        return CMN_OK;
    }
    k->state = ROUTER_CLAIM_RESUME;
    k->seq = strtoll(PQgetvalue(res, row, 7), NULL, 10);
    if (!PQgetisnull(res, row, 6)) {
        k->fence = strdup(PQgetvalue(res, row, 6));
        if (k->fence == NULL) {
            return CMN_ERR_NOMEM;
        }
    }
    return CMN_OK;
}

static int run_select(PGconn *conn, router_claim_t *keys, size_t n, router_claim_t *const *idx,
                      char *errstr, size_t errlen)
{
    key_arrays_t a;
    PGresult *res = NULL;
    int rc = key_arrays_build(&a, keys, n, pred_to_select);
    if (rc != CMN_OK || a.count == 0) {
        goto cleanup;
    }
    const char *params[2] = {a.tenant.data, a.request.data};
    res = PQexecParams(conn, SQL_SELECT, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = result_error(conn, res, "reading request claims", errstr, errlen);
        goto cleanup;
    }
    for (int row = 0; rc == CMN_OK && row < PQntuples(res); row++) {
        const char *tenant = PQgetvalue(res, row, 0);
        const char *request = PQgetvalue(res, row, 1);
        for (size_t i = lower_bound(idx, n, tenant, request);
             rc == CMN_OK && i < n && cmp_key(idx[i]->tenant_id, idx[i]->request_id, tenant, request) == 0;
             i++) {
            rc = apply_existing(idx[i], res, row);
        }
    }
    if (rc == CMN_ERR_DB) {
        snprintf(errstr, errlen, "reading request claims: a deferred claim changed while being read; retrying");
    }
    /* Lookup keys the SELECT did not return have no claim. */
    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        if (keys[i].lookup_only && keys[i].state == ROUTER_CLAIM_UNKNOWN) {
            keys[i].state = ROUTER_CLAIM_ABSENT;
        }
    }

cleanup:
    PQclear(res);
    key_arrays_free(&a);
    return rc;
}

int router_claims_acquire(PGconn *conn, router_claim_t *keys, size_t n, const char *fence_json,
                          char *errstr, size_t errlen)
{
    router_claim_t **idx = NULL;
    int rc = CMN_OK;

    if (conn == NULL || (keys == NULL && n > 0)) {
        snprintf(errstr, errlen, "claims: no connection");
        return conn == NULL ? CMN_ERR_UNAVAILABLE : CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i].state = ROUTER_CLAIM_UNKNOWN;
        keys[i].fence = NULL;
        keys[i].seq = 0;
    }
    rc = router_claims_mark_batch_duplicates(keys, n);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    idx = sorted_index(keys, n);
    if (idx == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    rc = run_insert(conn, keys, n, idx, fence_json, errstr, errlen);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    rc = run_return(conn, keys, n, idx, fence_json, errstr, errlen);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    rc = run_select(conn, keys, n, idx, errstr, errlen);

cleanup:
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "claims: out of memory");
    }
    free(idx);
    return rc;
}

int router_claims_finish(PGconn *conn, const router_claim_t *keys, size_t n, char *errstr, size_t errlen)
{
    key_arrays_t a;
    PGresult *res = NULL;
    int rc = key_arrays_build(&a, keys, n, pred_to_finish);
    if (rc != CMN_OK) {
        snprintf(errstr, errlen, "claims: out of memory");
        goto cleanup;
    }
    if (a.count == 0) {
        goto cleanup;
    }
    if (conn == NULL) {
        snprintf(errstr, errlen, "claims: no connection");
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }
    const char *params[5] = {a.tenant.data, a.request.data, a.state.data, a.seq.data, a.until.data};
    res = PQexecParams(conn, SQL_FINISH, 5, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = result_error(conn, res, "finishing request claims", errstr, errlen);
    }

cleanup:
    PQclear(res);
    key_arrays_free(&a);
    return rc;
}

void router_claims_release(router_claim_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i].fence);
        keys[i].fence = NULL;
        keys[i].state = ROUTER_CLAIM_UNKNOWN;
        keys[i].seq = 0;
    }
}
