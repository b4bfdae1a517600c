/* json.h - small typed accessors over json-c.
 *
 * All getters borrow: returned strings and objects belong to the json_object
 * they came from. They return NULL / the fallback when the key is missing or
 * has another type, so callers can tell "absent" from "wrong type" with
 * cmn_json_has(). */
#ifndef CRM_JSON_H
#define CRM_JSON_H

#include <json-c/json.h>
#include <stdint.h>

#include "crm/buf.h"

int cmn_json_has(const json_object *obj, const char *key);
const char *cmn_json_get_string(const json_object *obj, const char *key);   /* NULL unless a string */
json_object *cmn_json_get_object(const json_object *obj, const char *key);  /* NULL unless an object */
json_object *cmn_json_get_array(const json_object *obj, const char *key);   /* NULL unless an array */
/* Stores the integer in *out and returns 0, or CMN_ERR_NOTFOUND / CMN_ERR_INVALID. */
int cmn_json_get_int64(const json_object *obj, const char *key, int64_t *out);

/* Parses exactly len bytes (no NUL needed). Returns a new reference the caller
 * puts, or NULL with a message in errstr (position and reason). Rejects
 * trailing garbage and nesting deeper than 64. */
json_object *cmn_json_parse(const char *data, size_t len, char *errstr, size_t errlen);

/* Serialises compactly (no spaces, slashes unescaped) into out. */
int cmn_json_to_buf(json_object *obj, cmn_buf_t *out);

/* Adds key -> string (copied) to obj; a NULL value adds nothing. */
int cmn_json_add_string(json_object *obj, const char *key, const char *value);
int cmn_json_add_int64(json_object *obj, const char *key, int64_t value);

#endif
