/* router_prefs.c - the preferences cache and its batched lookup (see
 * router_prefs.h). */
#include "router_prefs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "router_claims.h"

struct router_prefs_ref {
    atomic_int refs;
    cmn_preferences_t p;
};

const cmn_preferences_t *router_prefs_get(const router_prefs_ref_t *ref)
{
    return ref != NULL ? &ref->p : NULL;
}

router_prefs_ref_t *router_prefs_ref_new(cmn_preferences_t *p)
{
    router_prefs_ref_t *ref = calloc(1, sizeof *ref);
    if (ref == NULL) {
        cmn_preferences_clear(p);
        return NULL;
    }
    atomic_init(&ref->refs, 1);
    ref->p = *p;
    memset(p, 0, sizeof *p);
    return ref;
}

router_prefs_ref_t *router_prefs_ref_keep(router_prefs_ref_t *ref)
{
    if (ref != NULL) {
        atomic_fetch_add(&ref->refs, 1);
    }
    return ref;
}

void router_prefs_ref_release(router_prefs_ref_t *ref)
{
    if (ref == NULL) {
        return;
    }
    if (atomic_fetch_sub(&ref->refs, 1) == 1) {
        cmn_preferences_clear(&ref->p);
        free(ref);
    }
}

/* ------------------------------------------------------------------ cache */

typedef struct prefs_entry {
    char *tenant, *client;     /* owned */
    uint64_t hash;
    router_prefs_ref_t *ref;   /* one reference held by the cache; NULL: the client has none */
    int64_t loaded_ms;         /* monotonic time the entry was last confirmed */
    uint64_t mod_epoch;        /* epoch of the feed's last change to it; 0 for never */
    struct prefs_entry *hnext; /* bucket chain */
    struct prefs_entry *prev, *next; /* LRU list, most recent first */
} prefs_entry_t;

struct router_prefs_cache {
    pthread_mutex_t mu;
    prefs_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t size, capacity;
    int64_t ttl_ms;
    uint64_t epoch;
    prefs_entry_t *head, *tail;
};

/* FNV-1a over tenant, a separator no id contains, and client. */
static uint64_t key_hash(const char *tenant, const char *client)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)tenant; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    h = (h ^ 0x1fu) * 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)client; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    return h;
}

router_prefs_cache_t *router_prefs_cache_new(size_t capacity, int64_t ttl_ms)
{
    router_prefs_cache_t *c = NULL;
    if (capacity < 1 || ttl_ms < 1) {
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    /* About one entry per bucket when full. */
    c->nbuckets = 16;
    while (c->nbuckets < capacity && c->nbuckets < ((size_t)1 << 30)) {
        c->nbuckets <<= 1;
    }
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (c->buckets == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->buckets);
        free(c);
        return NULL;
    }
    c->capacity = capacity;
    c->ttl_ms = ttl_ms;
    return c;
}

static void entry_free(prefs_entry_t *e)
{
    router_prefs_ref_release(e->ref);
    free(e->tenant);
    free(e->client);
    free(e);
}

void router_prefs_cache_destroy(router_prefs_cache_t *c)
{
    if (c == NULL) {
        return;
    }
    prefs_entry_t *e = c->head;
    while (e != NULL) {
        prefs_entry_t *next = e->next;
        entry_free(e);
        e = next;
    }
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c);
}

static prefs_entry_t *find(router_prefs_cache_t *c, const char *tenant, const char *client, uint64_t h)
{
    for (prefs_entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->hnext) {
        if (e->hash == h && strcmp(e->tenant, tenant) == 0 && strcmp(e->client, client) == 0) {
            return e;
        }
    }
    return NULL;
}

static void lru_unlink(router_prefs_cache_t *c, prefs_entry_t *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        c->head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        c->tail = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void lru_push_front(router_prefs_cache_t *c, prefs_entry_t *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL) {
        c->head->prev = e;
    }
    c->head = e;
    if (c->tail == NULL) {
        c->tail = e;
    }
}

static void remove_entry(router_prefs_cache_t *c, prefs_entry_t *e)
{
    prefs_entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
    }
    lru_unlink(c, e);
    c->size--;
    entry_free(e);
}

/* Finds or creates the entry of a key, most recently used either way. A new
 * entry has no snapshot and loaded_ms 0 (expired); the caller fills it. When
 * the cache is full the least recently used entry makes room. (Evicting an
 * entry the feed changed a moment ago drops the protection against a racing
 * lookup for that key; it needs the key to be the least recently used one in
 * the few milliseconds of a query, and at worst leaves the entry stale for
 * one TTL.) */
static prefs_entry_t *upsert(router_prefs_cache_t *c, const char *tenant, const char *client)
{
    uint64_t h = key_hash(tenant, client);
    prefs_entry_t *e = find(c, tenant, client, h);
    if (e != NULL) {
        lru_unlink(c, e);
        lru_push_front(c, e);
        return e;
    }
    if (c->size >= c->capacity && c->tail != NULL) {
        remove_entry(c, c->tail);
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        return NULL;
    }
    e->tenant = strdup(tenant);
    e->client = strdup(client);
    if (e->tenant == NULL || e->client == NULL) {
        entry_free(e);
        return NULL;
    }
    e->hash = h;
    size_t b = h & (c->nbuckets - 1);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    lru_push_front(c, e);
    c->size++;
    return e;
}

static void set_ref(prefs_entry_t *e, router_prefs_ref_t *ref)
{
    router_prefs_ref_t *old = e->ref;
    e->ref = router_prefs_ref_keep(ref);
    router_prefs_ref_release(old);
}

int router_prefs_cache_get(router_prefs_cache_t *c, const char *tenant, const char *client, int64_t now_ms,
                           router_prefs_ref_t **out)
{
    int hit = 0;
    *out = NULL;
    if (c == NULL || tenant == NULL || client == NULL) {
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    prefs_entry_t *e = find(c, tenant, client, key_hash(tenant, client));
    if (e != NULL && e->loaded_ms > 0 && now_ms - e->loaded_ms < c->ttl_ms) {
        lru_unlink(c, e);
        lru_push_front(c, e);
        *out = router_prefs_ref_keep(e->ref);
        hit = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

uint64_t router_prefs_cache_epoch(router_prefs_cache_t *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t e = c->epoch;
    pthread_mutex_unlock(&c->mu);
    return e;
}

int router_prefs_cache_put_loaded(router_prefs_cache_t *c, const char *tenant, const char *client,
                                  router_prefs_ref_t *ref, uint64_t since, int64_t now_ms,
                                  router_prefs_ref_t **winner)
{
    int rc = CMN_OK;
    if (winner != NULL) {
        *winner = NULL;
    }
    pthread_mutex_lock(&c->mu);
    prefs_entry_t *e = upsert(c, tenant, client);
    if (e == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (e->mod_epoch > since) {
        /* The feed changed this client while the query ran: its record is at
         * least as new as the row, which the projector may not have had. */
        goto answer;
    }
    if (e->ref != NULL && ref != NULL && e->ref->p.updated_at_ms > ref->p.updated_at_ms) {
        e->loaded_ms = now_ms;
        goto answer;
    }
    set_ref(e, ref);
    e->loaded_ms = now_ms;

answer:
    if (winner != NULL) {
        *winner = router_prefs_ref_keep(e->ref);
    }
cleanup:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int router_prefs_cache_apply(router_prefs_cache_t *c, const char *tenant, const char *client,
                             router_prefs_ref_t *ref, int64_t now_ms)
{
    int rc = 1;
    if (ref != NULL) {
        tenant = ref->p.tenant_id;
        client = ref->p.client_id;
    }
    if (tenant == NULL || client == NULL) {
        return CMN_ERR_INVALID;
    }
    pthread_mutex_lock(&c->mu);
    prefs_entry_t *e = upsert(c, tenant, client);
    if (e == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    /* The projector keeps the newest updated_at; the cache agrees with it. */
    if (ref != NULL && e->ref != NULL && e->ref->p.updated_at_ms > ref->p.updated_at_ms) {
        rc = 0;
        goto cleanup;
    }
    set_ref(e, ref);
    e->loaded_ms = now_ms;
    e->mod_epoch = ++c->epoch;

cleanup:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

size_t router_prefs_cache_size(router_prefs_cache_t *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->size;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ----------------------------------------------------------------- lookup */

int router_prefs_parse(const char *json, size_t len, router_prefs_ref_t **out)
{
    char perr[128];
    cmn_preferences_t p;
    int rc;

    *out = NULL;
    memset(&p, 0, sizeof p);
    json_object *obj = cmn_json_parse(json, len, perr, sizeof perr);
    if (obj == NULL) {
        return CMN_ERR_INVALID;
    }
    rc = cmn_preferences_from_json(obj, "", &p, NULL);
    json_object_put(obj);
    if (rc != CMN_OK) {
        cmn_preferences_clear(&p);
        return rc == CMN_ERR_NOMEM ? CMN_ERR_NOMEM : CMN_ERR_INVALID;
    }
    *out = router_prefs_ref_new(&p);
    return *out != NULL ? CMN_OK : CMN_ERR_NOMEM;
}

router_prefs_ref_t *router_prefs_refuse_all(const char *tenant, const char *client)
{
    cmn_preferences_t p;
    memset(&p, 0, sizeof p);
    p.v = 1;
    p.tenant_id = strdup(tenant);
    p.client_id = strdup(client);
    if (p.tenant_id == NULL || p.client_id == NULL) {
        cmn_preferences_clear(&p);
        return NULL;
    }
    for (int ch = 0; ch < CMN_CHANNEL__COUNT; ch++) {
        p.opt_out[ch] = 1;
    }
    return router_prefs_ref_new(&p);
}

static const char SQL_LOAD[] =
    "SELECT p.tenant_id, p.client_id, p.snapshot::text FROM client_preferences p"
    " WHERE (p.tenant_id, p.client_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

static int cmp_key_ptr(const void *a, const void *b)
{
    const router_prefs_key_t *x = *(const router_prefs_key_t *const *)a;
    const router_prefs_key_t *y = *(const router_prefs_key_t *const *)b;
    int c = strcmp(x->tenant, y->tenant);
    return c != 0 ? c : strcmp(x->client, y->client);
}

int router_prefs_load(PGconn *conn, router_prefs_key_t *keys, size_t n, size_t *n_unreadable, char *errstr,
                      size_t errlen)
{
    cmn_buf_t tenants = CMN_BUF_INIT, clients = CMN_BUF_INIT;
    const char **tv = NULL, **cv = NULL;
    router_prefs_key_t **idx = NULL;
    PGresult *res = NULL;
    int rc = CMN_OK;

    *n_unreadable = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i].ref = NULL;
        keys[i].found = 0;
    }
    if (n == 0) {
        return CMN_OK;
    }
    if (conn == NULL) {
        snprintf(errstr, errlen, "preferences: no connection");
        return CMN_ERR_UNAVAILABLE;
    }
    tv = malloc(n * sizeof *tv);
    cv = malloc(n * sizeof *cv);
    idx = malloc(n * sizeof *idx);
    if (tv == NULL || cv == NULL || idx == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        tv[i] = keys[i].tenant;
        cv[i] = keys[i].client;
        idx[i] = &keys[i];
    }
    qsort(idx, n, sizeof *idx, cmp_key_ptr);
    rc = router_pg_text_array(&tenants, tv, n);
    if (rc == CMN_OK) {
        rc = router_pg_text_array(&clients, cv, n);
    }
    if (rc != CMN_OK) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    const char *params[2] = {tenants.data, clients.data};
    res = PQexecParams(conn, SQL_LOAD, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = PQstatus(conn) == CONNECTION_BAD ? CMN_ERR_UNAVAILABLE : CMN_ERR_DB;
        snprintf(errstr, errlen, "reading client preferences: %s", PQresultErrorMessage(res));
        for (char *p = errstr; *p != '\0'; p++) {
            if (*p == '\n') {
                *p = ' ';
            }
        }
        goto cleanup;
    }
    for (int row = 0; rc == CMN_OK && row < PQntuples(res); row++) {
        router_prefs_key_t probe = {.tenant = PQgetvalue(res, row, 0), .client = PQgetvalue(res, row, 1)};
        router_prefs_key_t *pp = &probe;
        router_prefs_key_t **hit = bsearch(&pp, idx, n, sizeof *idx, cmp_key_ptr);
        if (hit == NULL || (*hit)->found) {
            continue;
        }
        router_prefs_ref_t *ref = NULL;
        const char *snap = PQgetvalue(res, row, 2);
        rc = router_prefs_parse(snap, strlen(snap), &ref);
        if (rc == CMN_ERR_INVALID) {
            (*n_unreadable)++;
            ref = router_prefs_refuse_all((*hit)->tenant, (*hit)->client);
            rc = ref != NULL ? CMN_OK : CMN_ERR_NOMEM;
        }
        if (rc == CMN_OK) {
            (*hit)->ref = ref;
            (*hit)->found = 1;
        }
    }

cleanup:
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "reading client preferences: out of memory");
    }
    if (rc != CMN_OK) {
        for (size_t i = 0; i < n; i++) {
            router_prefs_ref_release(keys[i].ref);
            keys[i].ref = NULL;
            keys[i].found = 0;
        }
    }
    PQclear(res);
    cmn_buf_free(&tenants);
    cmn_buf_free(&clients);
    free(tv);
    free(cv);
    free(idx);
    return rc;
}
