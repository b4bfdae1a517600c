/* crmctl_kafka.h - the control protocol of `crmctl embedded-kafka`.
 *
 * With --control-port the embedded cluster serves a small HTTP API on
 * 127.0.0.1 for fault injection (docs/operations.md):
 *   GET  /status                                   brokers, pending and injected faults
 *   POST /faults/produce?count=N&error=NAME[&broker=ID]
 *   POST /faults/fetch?count=N&error=NAME[&broker=ID]
 *   POST /faults/clear                             drop queued errors, every broker up, rtt 0
 *   POST /brokers/ID/down | /brokers/ID/up
 *   POST /brokers/ID/rtt?ms=N
 * This header holds the pure request parser so it is unit-tested apart from
 * the server. */
#ifndef CRMCTL_KAFKA_H
#define CRMCTL_KAFKA_H

#include <stddef.h>

/* Kafka protocol API keys of the requests faults can be injected into. */
#define CRMCTL_API_PRODUCE 0
#define CRMCTL_API_FETCH 1

#define CRMCTL_FAULT_MAX_COUNT 100000
#define CRMCTL_FAULT_MAX_RTT_MS 60000

typedef enum crmctl_fault_op {
    CRMCTL_FAULT_STATUS,
    CRMCTL_FAULT_REQUEST_ERRORS, /* api, count, error, broker (0: whichever broker gets the request) */
    CRMCTL_FAULT_CLEAR,
    CRMCTL_FAULT_BROKER_DOWN,    /* broker */
    CRMCTL_FAULT_BROKER_UP,      /* broker */
    CRMCTL_FAULT_RTT             /* broker, rtt_ms */
} crmctl_fault_op_t;

typedef struct crmctl_fault {
    crmctl_fault_op_t op;
    int api;     /* CRMCTL_API_* */
    int broker;  /* 1..nbrokers, or 0 for the whole cluster */
    int count;
    int error;   /* a broker error code (rd_kafka_resp_err_t > 0) */
    int rtt_ms;
} crmctl_fault_t;

/* The query arguments a control request may carry; each NULL when absent. */
typedef struct crmctl_fault_args {
    const char *count;
    const char *error;
    const char *broker;
    const char *ms;
} crmctl_fault_args_t;

/* Turns one control request into a command for a cluster of nbrokers
 * brokers. Returns 0; CMN_ERR_NOTFOUND for an unknown path; CMN_ERR_STATE
 * for a known path with the wrong method; CMN_ERR_INVALID for a bad
 * argument, with *field naming it (a static string) and why saying what is
 * wrong. */
int crmctl_fault_parse(const char *method, const char *path, const crmctl_fault_args_t *args, int nbrokers,
                       crmctl_fault_t *out, const char **field, char *why, size_t whylen);

/* A broker error by name ("NOT_LEADER_FOR_PARTITION", also with librdkafka's
 * "ERR_" prefix, any case) or number ("6"). Only broker-side errors (code >
 * 0) are accepted: the mock answers requests with them. Returns 0 or
 * CMN_ERR_INVALID. */
int crmctl_fault_error_code(const char *s, int *code);

#endif
