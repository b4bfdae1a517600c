/* mustache.h - a Mustache renderer (spec v1.3 core: interpolation, sections,
 * inverted sections, comments, set delimiters, partials with standalone
 * indentation).
 *
 * Data is a json-c value. Rendering is pure: no I/O except through the
 * partial loader the caller supplies. */
#ifndef CRM_MUSTACHE_H
#define CRM_MUSTACHE_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/buf.h"

/* Returns the partial's template text (caller of the loader keeps ownership
 * semantics below) or NULL when there is no such partial (renders as empty).
 * The returned string must stay valid until rendering ends; the renderer
 * never frees it. */
typedef const char *(*cmn_mustache_partial_fn)(void *ctx, const char *name);

typedef struct cmn_mustache_opts {
    int escape_html;                 /* 1: {{x}} HTML-escapes (spec); 0: plain text (subjects, SMS) */
    cmn_mustache_partial_fn partial; /* may be NULL: every partial is empty */
    void *partial_ctx;
    int max_depth;                   /* partial/section nesting limit; 0 means 64 */
} cmn_mustache_opts_t;

/* Renders template with data into out (appended). On a template error
 * (unclosed tag, mismatched section, bad delimiter) returns CMN_ERR_TEMPLATE
 * and writes "line N: reason" into errstr. */
int cmn_mustache_render(const char *tmpl, size_t tmpl_len, json_object *data, const cmn_mustache_opts_t *opts,
                        cmn_buf_t *out, char *errstr, size_t errlen);

#endif
