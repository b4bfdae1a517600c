/* ingest_api.h - the pure part of POST /v1/communications, and the routing
 * of every ingest path (the preferences resource is in ingest_prefs.h).
 *
 * Everything here is a function of its inputs: no sockets, no Kafka, no
 * clock, no logging. ingest_server.c is the adapter that feeds it HTTP
 * requests and produces what it returns. Keeping the decisions here means
 * every 4xx answer and every accepted batch is unit-tested without I/O. */
#ifndef INGEST_API_H
#define INGEST_API_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/request.h"

#define INGEST_PATH_COMMUNICATIONS "/v1/communications"
#define INGEST_ALLOW_COMMUNICATIONS "POST"

/* Where a request goes, decided from method and path only. */
typedef enum ingest_route {
    INGEST_ROUTE_SUBMIT = 0,          /* POST /v1/communications */
    INGEST_ROUTE_PREFS_GET,           /* GET /v1/clients/{client_id}/preferences */
    INGEST_ROUTE_PREFS_PUT,           /* PUT /v1/clients/{client_id}/preferences */
    INGEST_ROUTE_PREFS_DELETE,        /* DELETE /v1/clients/{client_id}/preferences */
    INGEST_ROUTE_METHOD_NOT_ALLOWED,  /* the path exists, the method does not: 405 + Allow */
    INGEST_ROUTE_NOT_FOUND            /* 404 */
} ingest_route_t;

ingest_route_t ingest_api_route(const char *method, const char *path);

/* The Allow header value of an existing path ("POST", "GET, PUT, DELETE"),
 * or NULL for a path that does not exist. Static storage. */
const char *ingest_api_allow(const char *path);

/* 1 when the Content-Type header value is JSON we accept: application/json,
 * case-insensitive, optionally with "; charset=utf-8". Any other charset,
 * media type or a missing header is 0 (the caller answers 415). */
int ingest_api_content_type_ok(const char *content_type);

/* 1 when s is a valid W3C traceparent (version 00 form:
 * 00-<32 lower hex, not all zero>-<16 lower hex, not all zero>-<2 hex>). */
int ingest_api_traceparent_ok(const char *s);

/* A parsed, validated submission. */
typedef struct ingest_batch {
    cmn_request_t *requests; /* owned array of n normalised requests */
    size_t n;
    int single;              /* 1: the body was one request, not {"requests":[...]} */
} ingest_batch_t;

/* Why a submission was refused (client error). */
typedef struct ingest_problem {
    int status;              /* 400 */
    char title[64];
    char detail[256];
    json_object *errors;     /* owned array of {"field","reason"}, or NULL */
} ingest_problem_t;

/* Parses and validates a request body: either one CommunicationRequest or
 * {"requests":[...]} with 1..max_batch items. Every valid request gets
 * received_at_ms (the caller's clock; ingest is the first to accept it).
 * Returns 0 with batch filled, CMN_ERR_INVALID with problem filled (nothing
 * in batch), or CMN_ERR_NOMEM. batch and problem must be zeroed; always call
 * ingest_batch_clear() and ingest_problem_clear(). body need not be
 * NUL-terminated; it is borrowed. */
int ingest_api_parse(const char *body, size_t len, size_t max_batch, int64_t received_at_ms,
                     ingest_batch_t *batch, ingest_problem_t *problem);

/* Appends the 202 body: {"communications":[{"request_id","communication_id"},...]},
 * plus a top-level "communication_id" for the single-request form. */
int ingest_api_accepted_body(const ingest_batch_t *batch, cmn_buf_t *out);

/* Fills problem for a 400 with title and detail, takes over errors (a json-c
 * array of {"field","reason"}, may be NULL) and returns CMN_ERR_INVALID. */
int ingest_problem_refuse(ingest_problem_t *problem, const char *title, const char *detail, json_object *errors);

/* Appends {"field": field, "reason": reason} to errors (borrowed strings,
 * copied). Returns 0 or CMN_ERR_NOMEM. */
int ingest_problem_add_error(json_object *errors, const char *field, const char *reason);

void ingest_batch_clear(ingest_batch_t *batch);
void ingest_problem_clear(ingest_problem_t *problem);

#endif
