/* router_readback.h - finding the router's own earlier Dispatches in Kafka.
 *
 * Why this exists: the router's outputs go to Kafka and its claims to
 * PostgreSQL, and no commit spans both. A router killed while a batch's
 * produces were in flight leaves claims in state 'claimed' while some of
 * their Dispatches may already be in the log. Producing them again would send
 * those messages twice; skipping them would lose the others. So on resuming
 * such a claim the router looks: it reads the send topics from the claim's
 * output fence to their current end and finds which of the resumed
 * communications already have their first Dispatch (hop 0).
 *
 * The output fence is the end offset of every partition of every send topic,
 * taken before the batch's first produce and stored with its claims: no
 * output of that batch can sit below it, so the read-back never scans more
 * than what was written since the fence (the service refreshes the fence
 * about once a second, which bounds that to roughly a second of traffic plus
 * the time the router was down).
 *
 * Fence format (stored as jsonb): {"crm.send.email":[12,0,7,...]}, the array
 * index being the partition. This module talks to Kafka with its own
 * librdkafka consumer handle (no group, nothing committed), used only here. */
#ifndef ROUTER_READBACK_H
#define ROUTER_READBACK_H

#include <stddef.h>

#include "crm/channel.h"
#include "crm/log.h"

typedef struct router_readback router_readback_t;

/* brokers and log are borrowed (log must outlive the handle); extra is a
 * NULL-terminated list of "key=value" librdkafka properties or NULL. Returns
 * a handle the caller destroys, or NULL with the reason in errstr. */
router_readback_t *router_readback_new(const char *brokers, const char *const *extra, const cmn_log_t *log,
                                       char *errstr, size_t errlen);
void router_readback_destroy(router_readback_t *rb);

/* Takes a fence over the ntopics topics: *out_json receives a new string the
 * caller frees. Returns 0, CMN_ERR_KAFKA/CMN_ERR_TIMEOUT (errstr says why)
 * or CMN_ERR_NOMEM. */
int router_readback_fence(router_readback_t *rb, const char *const *topics, size_t ntopics, int timeout_ms,
                          char **out_json, char *errstr, size_t errlen);

typedef struct router_readback_query {
    const char *communication_id; /* borrowed */
    const char *fence;            /* borrowed fence JSON, or NULL: unknown, read the send topics from their start */
    cmn_channel_t found;          /* out: channel of the hop-0 Dispatch found, or CMN_CHANNEL_NONE */
} router_readback_query_t;

/* Looks for a hop-0 Dispatch of each query's communication above its fence,
 * up to the end of each partition as it is when the call starts. A query
 * without a fence is searched for in every topic of all_topics (borrowed,
 * ntopics long) from the beginning. Must not run while this process still
 * has produces of these communications in flight. Returns 0 (every query
 * answered), CMN_ERR_TIMEOUT (not all partitions read in time: the answers
 * are incomplete and must not be used), CMN_ERR_PARSE (a stored fence is not
 * valid), CMN_ERR_KAFKA or CMN_ERR_NOMEM. */
int router_readback_find(router_readback_t *rb, router_readback_query_t *q, size_t n,
                         const char *const *all_topics, size_t ntopics, int timeout_ms, char *errstr,
                         size_t errlen);

#endif
