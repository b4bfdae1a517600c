/* ingest_pool.c - PostgreSQL connections shared by the HTTP threads (see
 * ingest_pool.h). */
#include "ingest_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/pg.h"

struct ingest_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed; /* signalled whenever a slot is given back */
    char *url;            /* owned */
    size_t size;
    PGconn **conns;       /* owned; NULL until first used */
    unsigned char *busy;  /* 1 while lent out */
};

ingest_pool_t *ingest_pool_new(const char *url, size_t size, char *errstr, size_t errlen)
{
    ingest_pool_t *p = NULL;
    ingest_pool_t *result = NULL;
    pthread_condattr_t ca;
    int ca_init = 0, cond_init = 0;

    if (url == NULL || size == 0) {
        snprintf(errstr, errlen, "pool: a URL and at least one connection are required");
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL)
        goto cleanup;
    p->url = strdup(url);
    p->conns = calloc(size, sizeof *p->conns);
    p->busy = calloc(size, 1);
    if (p->url == NULL || p->conns == NULL || p->busy == NULL)
        goto cleanup;
    p->size = size;
    /* Timed waits use the monotonic clock, so a wall-clock step does not
     * stretch or cut a request's wait. */
    if (pthread_condattr_init(&ca) != 0)
        goto cleanup;
    ca_init = 1;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&p->freed, &ca) != 0)
        goto cleanup;
    cond_init = 1;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto cleanup;
    result = p;
    p = NULL;

cleanup:
    if (ca_init)
        pthread_condattr_destroy(&ca);
    if (p != NULL) {
        if (cond_init)
            pthread_cond_destroy(&p->freed);
        free(p->url);
        free(p->conns);
        free(p->busy);
        free(p);
    }
    if (result == NULL)
        snprintf(errstr, errlen, "pool: out of memory");
    return result;
}

int ingest_pool_acquire(ingest_pool_t *p, int timeout_ms, ingest_pool_lease_t *lease, char *errstr,
                        size_t errlen)
{
    struct timespec deadline;
    size_t slot = 0;
    int found = 0;

    if (p == NULL || lease == NULL)
        return CMN_ERR_INVALID;
    memset(lease, 0, sizeof *lease);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* Prefer a slot that is already connected: opening one costs a
         * round trip and a server process. */
        for (size_t i = 0; i < p->size && !found; i++) {
            if (!p->busy[i] && p->conns[i] != NULL) {
                slot = i;
                found = 1;
            }
        }
        for (size_t i = 0; i < p->size && !found; i++) {
            if (!p->busy[i]) {
                slot = i;
                found = 1;
            }
        }
        if (found)
            break;
        if (pthread_cond_timedwait(&p->freed, &p->mu, &deadline) == ETIMEDOUT)
            break;
    }
    if (found)
        p->busy[slot] = 1;
    pthread_mutex_unlock(&p->mu);
    if (!found) {
        snprintf(errstr, errlen, "every PostgreSQL connection stayed busy");
        return CMN_ERR_TIMEOUT;
    }

    /* The slot is ours alone now, so the (slow) connect happens unlocked. */
    int rc = cmn_pg_ensure(&p->conns[slot], p->url, timeout_ms, errstr, errlen);
    if (rc != 0) {
        ingest_pool_lease_t back = {NULL, slot};
        ingest_pool_release(p, &back);
        return rc;
    }
    lease->conn = p->conns[slot];
    lease->slot = slot;
    return 0;
}

void ingest_pool_release(ingest_pool_t *p, ingest_pool_lease_t *lease)
{
    if (p == NULL || lease == NULL || lease->slot >= p->size)
        return;
    pthread_mutex_lock(&p->mu);
    p->busy[lease->slot] = 0;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
    memset(lease, 0, sizeof *lease);
}

void ingest_pool_destroy(ingest_pool_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->size; i++)
        PQfinish(p->conns[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->freed);
    free(p->url);
    free(p->conns);
    free(p->busy);
    free(p);
}
