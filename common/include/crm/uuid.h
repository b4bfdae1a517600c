/* uuid.h - RFC 4122 / 9562 UUIDs.
 *
 * communication_id = UUIDv5(CMN_UUID_NS_COMMUNICATION, tenant_id ":" request_id),
 * so the same request always maps to the same communication. */
#ifndef CRM_UUID_H
#define CRM_UUID_H

#include <stddef.h>
#include <stdint.h>

#define CMN_UUID_STR_LEN 36 /* without the NUL */

/* The project's namespaces (fixed forever: changing them changes every id). */
extern const uint8_t CMN_UUID_NS_COMMUNICATION[16]; /* 6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01 */
extern const uint8_t CMN_UUID_NS_EVENT[16];         /* 6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a02 */

/* Writes the canonical lower-case form of UUIDv5(ns, name) into out (37 bytes). */
int cmn_uuid_v5(const uint8_t ns[16], const void *name, size_t name_len, char out[CMN_UUID_STR_LEN + 1]);
/* Random UUIDv4 from OpenSSL's CSPRNG. */
int cmn_uuid_v4(char out[CMN_UUID_STR_LEN + 1]);
/* The communication id of (tenant_id, request_id). */
int cmn_uuid_communication_id(const char *tenant_id, const char *request_id, char out[CMN_UUID_STR_LEN + 1]);
/* 1 if s is a canonical UUID string (any version), else 0. */
int cmn_uuid_is_valid(const char *s);

#endif
