/* router_config.h - the routing configuration: default channel orders.
 *
 * The file named by ROUTER_CHANNELS_FILE says, per message type, in which
 * order the router tries channels when a request names no channels itself and
 * the client has no preferred channels:
 *
 *   {"default": ["email", "sms", "whatsapp"],
 *    "message_types": {"appointment_reminder": ["sms", "email"], ...}}
 *
 * "default" is required; "message_types" is optional. The file is checked
 * strictly at start-up (unknown keys, unknown channel names, duplicate or
 * empty lists are errors naming the offending key), because a typo here would
 * otherwise silently route every message of a type through the global default.
 *
 * This module also parses ROUTER_ENABLED_CHANNELS, the comma list of channels
 * that have a configured provider. Everything here is pure apart from
 * router_config_load(), which reads one file. */
#ifndef ROUTER_CONFIG_H
#define ROUTER_CONFIG_H

#include <stddef.h>

#include "crm/channel.h"

/* Largest routing file accepted: it is a handful of short lists, so anything
 * bigger is a mistake (a wrong path pointing at a large file). */
#define ROUTER_CONFIG_MAX_BYTES (1024 * 1024)

/* An ordered list of distinct channels. */
typedef struct router_order {
    cmn_channel_t ch[CMN_CHANNEL__COUNT];
    size_t n;
} router_order_t;

/* Bit of channel c in an enabled-channels mask. */
#define ROUTER_CHANNEL_BIT(c) (1u << (unsigned)(c))

typedef struct router_config router_config_t;

/* Parses a routing document of len bytes (no NUL needed). Returns a new
 * configuration the caller frees with router_config_destroy(), or NULL with
 * one line in errstr naming the bad key, e.g.
 *   message_types.welcome[1]: unknown channel "fax" (expected email, sms or whatsapp) */
router_config_t *router_config_parse(const char *json, size_t len, char *errstr, size_t errlen);

/* Reads and parses the file at path (borrowed). Errors are prefixed with the
 * path. Returns a new configuration (caller destroys) or NULL. */
router_config_t *router_config_load(const char *path, char *errstr, size_t errlen);

void router_config_destroy(router_config_t *cfg);

/* The global default order (never empty). Borrowed from cfg. */
const router_order_t *router_config_default_order(const router_config_t *cfg);

/* The order configured for message_type, or NULL when the type has none (or
 * message_type is NULL). Borrowed from cfg. */
const router_order_t *router_config_type_order(const router_config_t *cfg, const char *message_type);

/* Number of message types with their own order. */
size_t router_config_type_count(const router_config_t *cfg);

/* Parses a comma-separated channel list such as "email,sms" (spaces around
 * names allowed) into a mask of ROUTER_CHANNEL_BIT()s. An empty list, an
 * empty item or an unknown name is CMN_ERR_CONFIG with the reason in errstr.
 * Returns 0 or CMN_ERR_CONFIG. */
int router_channels_parse_list(const char *list, unsigned *mask, char *errstr, size_t errlen);

#endif
