/* ingest_prefs.h - the pure part of /v1/clients/{client_id}/preferences.
 *
 * PUT validates a ClientPreferences snapshot whose client id comes from the
 * path and whose updated_at comes from ingest's clock; GET and DELETE only
 * need the path and the tenant. Everything here is a function of its
 * inputs (no sockets, Kafka, PostgreSQL or clock); ingest_server.c feeds it
 * HTTP requests and does the I/O. */
#ifndef INGEST_PREFS_H
#define INGEST_PREFS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/preferences.h"
#include "crm/request.h"
#include "ingest_api.h"

#define INGEST_PATH_CLIENTS_PREFIX "/v1/clients/"
#define INGEST_PATH_PREFERENCES_SUFFIX "/preferences"
#define INGEST_ALLOW_PREFERENCES "GET, PUT, DELETE"

/* 1 when path is "/v1/clients/<something non-empty>/preferences"; the
 * <something> (the client id as the server decoded it, unvalidated) is
 * copied into client when it fits in clientlen, else client gets "" (the id
 * is too long to be valid anyway). 0 for any other path; NULL is 0. */
int ingest_prefs_path(const char *path, char *client, size_t clientlen);

/* The tenant and client a preferences request addresses. */
typedef struct ingest_prefs_target {
    char tenant_id[CMN_REQ_MAX_ID + 1];
    char client_id[CMN_REQ_MAX_ID + 1];
} ingest_prefs_target_t;

/* Validates the path's client id and the optional tenant_id query argument
 * (NULL: "default") into target. Returns 0, or CMN_ERR_INVALID with
 * problem filled (400, every bad field named: "client_id" for the path,
 * "tenant_id" for the query), or CMN_ERR_NOMEM. problem must be zeroed;
 * always call ingest_problem_clear(). */
int ingest_prefs_target(const char *path_client, const char *query_tenant, ingest_prefs_target_t *target,
                        ingest_problem_t *problem);

/* Parses and validates a PUT body for the client of the path into out
 * (which must be zeroed; always cmn_preferences_clear() it).
 *  - client_id comes from the path; a body client_id must be absent, null or
 *    the same id (so a GET answer can be edited and PUT back);
 *  - tenant_id comes from the body, else from the query, else "default";
 *    when both are given they must be equal;
 *  - updated_at is set to updated_at_ms (the server's clock); a body value
 *    is replaced, not validated, for the same round-trip reason;
 *  - everything else is validated by cmn_preferences_from_json(), every
 *    problem listed.
 * path_client and query_tenant (may be NULL) are as for ingest_prefs_target.
 * body (len bytes, no NUL needed) is borrowed. Returns 0, CMN_ERR_INVALID
 * with problem filled (400), or CMN_ERR_NOMEM. */
int ingest_prefs_parse(const char *body, size_t len, const char *path_client, const char *query_tenant,
                       int64_t updated_at_ms, cmn_preferences_t *out, ingest_problem_t *problem);

/* The updated_at of the next snapshot a process stamps: now_ms, or one
 * millisecond after the last one when the clock has not moved past it (two
 * PUTs in the same millisecond, or a clock stepped back), so the snapshots
 * of one process strictly increase and the projector keeps the later one. */
int64_t ingest_prefs_next_stamp(int64_t last_ms, int64_t now_ms);

#endif
