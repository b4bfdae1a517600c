/* mustache.c - Mustache renderer, spec v1.3 core (see crm/mustache.h).
 *
 * A template is compiled once into a flat array of tokens and then rendered by
 * walking that array. A section token records the index just past its body,
 * so rendering a section means rendering a sub-range of the same array; there
 * is no token tree to build or free. Compilation is iterative (an explicit
 * stack of open sections), so no template text can exhaust the C stack during
 * parsing. Rendering recurses once per active section or partial and is
 * bounded by max_depth, which is clamped to MUSTACHE_DEPTH_CEILING.
 *
 * Dialect decisions that the spec leaves to the implementation:
 *   - falsy values are JSON false, null, a missing name and the empty array;
 *     0 and "" are truthy (they are values the caller chose to send);
 *   - integers render without a decimal point; doubles render with the
 *     fewest significant digits (15 to 17) that read back as the same double,
 *     so 1.21 renders "1.21", not "1.2099999999999999";
 *   - arrays and objects interpolate as compact JSON (useful when previewing,
 *     never what a finished template should do);
 *   - HTML escaping covers & " < > (as the spec requires) and also ', because
 *     templates put values inside single-quoted attributes too;
 *   - template inheritance ({{<parent}}, {{$block}}) and lambdas are not
 *     supported; the inheritance sigils are rejected as template errors rather
 *     than silently treated as variable names. */
#include "crm/mustache.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* The default of the header contract, and the hard ceiling: each level of
 * nesting costs one render_range() frame on the C stack, so an arbitrarily
 * large caller-supplied limit could still crash the process. */
#define MUSTACHE_DEFAULT_DEPTH 64
#define MUSTACHE_DEPTH_CEILING 1024

typedef enum tok_type {
    TK_TEXT,     /* literal bytes */
    TK_VAR,      /* {{name}}: escaped when escape_html */
    TK_RAW,      /* {{{name}}} / {{&name}}: never escaped */
    TK_SECTION,  /* {{#name}} ... {{/name}} */
    TK_INVERTED, /* {{^name}} ... {{/name}} */
    TK_PARTIAL,  /* {{>name}} */
} tok_type_t;

typedef struct mtok {
    tok_type_t type;
    unsigned line;       /* 1-based line of the tag (for TK_TEXT: of the tag that follows it) */
    const char *text;    /* TK_TEXT: the bytes; tags: the name as written (for messages); borrowed from the source */
    size_t len;
    char *name;          /* owned; names with every '.' replaced by NUL, NULL for the implicit iterator "." */
    size_t nparts;       /* number of dotted parts in name; 0 for "." */
    size_t end;          /* TK_SECTION / TK_INVERTED: index of the first token after the body */
    const char *indent;  /* TK_PARTIAL: standalone indentation (borrowed from the source), NULL when inline */
    size_t indent_len;
} mtok_t;

/* A compiled template. Tokens borrow text from the source they were compiled
 * from, so the source must outlive the template. */
typedef struct mtpl {
    mtok_t *toks;
    size_t n;
    size_t cap;
} mtpl_t;

/* One compiled partial, keyed by name and indentation: a standalone partial is
 * indented before it is compiled, so each indentation is its own template. */
typedef struct partial_entry {
    char *name;       /* owned */
    char *indent;     /* owned, may be "" */
    char *source;     /* owned indented copy, or NULL when tpl borrows the loader's text */
    int missing;      /* the loader had no such partial: render nothing */
    mtpl_t tpl;
} partial_entry_t;

typedef struct renderer {
    int escape_html;
    cmn_mustache_partial_fn partial;
    void *partial_ctx;
    int max_depth;
    cmn_buf_t *out;
    json_object **stack;        /* context stack, borrowed values; [0] is the root data */
    size_t nstack;
    size_t stack_cap;
    int depth;                  /* active sections + partials */
    partial_entry_t **partials; /* entries are separately allocated so pointers survive growth */
    size_t npartials;
    size_t partials_cap;
    int partial_level;          /* how many partials deep rendering currently is */
    const char *partial_name;   /* innermost partial being rendered, for messages */
    unsigned root_line;         /* line in the caller's template of the tag being rendered */
    char *errstr;
    size_t errlen;
} renderer_t;

static void set_err(char *errstr, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* memmem without relying on the GNU extension; templates are short enough
 * that the naive scan is not worth improving. */
static const char *find_bytes(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
{
    if (needle_len == 0 || needle_len > hay_len)
        return NULL;
    for (size_t i = 0; i + needle_len <= hay_len; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, needle_len) == 0)
            return hay + i;
    }
    return NULL;
}

static unsigned count_newlines(const char *s, size_t from, size_t to)
{
    unsigned n = 0;
    for (size_t i = from; i < to; i++) {
        if (s[i] == '\n')
            n++;
    }
    return n;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*s)[*len - 1]))
        (*len)--;
}

static void tpl_free(mtpl_t *tpl)
{
    for (size_t i = 0; i < tpl->n; i++)
        free(tpl->toks[i].name);
    free(tpl->toks);
    tpl->toks = NULL;
    tpl->n = 0;
    tpl->cap = 0;
}

/* Appends a zeroed token and returns it through *out (owned by tpl). */
static int tpl_push(mtpl_t *tpl, tok_type_t type, unsigned line, mtok_t **out)
{
    if (tpl->n == tpl->cap) {
        size_t cap = tpl->cap ? tpl->cap * 2 : 32;
        mtok_t *toks = realloc(tpl->toks, cap * sizeof(*toks));
        if (toks == NULL)
            return CMN_ERR_NOMEM;
        tpl->toks = toks;
        tpl->cap = cap;
    }
    mtok_t *t = &tpl->toks[tpl->n++];
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->line = line;
    *out = t;
    return 0;
}

/* Validates a trimmed tag name and stores its dotted parts in t->name.
 * Returns 0, CMN_ERR_PARSE for a malformed name, or CMN_ERR_NOMEM. */
static int tok_set_name(mtok_t *t, const char *s, size_t len, int dotted)
{
    if (len == 0)
        return CMN_ERR_PARSE;
    for (size_t i = 0; i < len; i++) {
        if (is_space(s[i]) || s[i] == '\0')
            return CMN_ERR_PARSE;
    }
    t->text = s;
    t->len = len;
    if (dotted && len == 1 && s[0] == '.') {
        t->nparts = 0; /* implicit iterator: the top of the context stack */
        return 0;
    }
    /* "a..b", ".a" and "a." have an empty part that can never resolve;
     * rejecting them points the author at the typo. */
    if (dotted && (s[0] == '.' || s[len - 1] == '.' || find_bytes(s, len, "..", 2) != NULL))
        return CMN_ERR_PARSE;
    char *name = malloc(len + 1);
    if (name == NULL)
        return CMN_ERR_NOMEM;
    memcpy(name, s, len);
    name[len] = '\0';
    size_t parts = 1;
    for (size_t i = 0; dotted && i < len; i++) {
        if (name[i] == '.') {
            name[i] = '\0';
            parts++;
        }
    }
    t->name = name;
    t->nparts = parts;
    return 0;
}

/* Compiles src[0..len) into tpl (which must be empty). Returns 0, or
 * CMN_ERR_TEMPLATE with "line N: reason" in errstr, or CMN_ERR_NOMEM. The
 * compiled tokens borrow src. On failure tpl is left empty. */
static int tpl_compile(const char *src, size_t len, mtpl_t *tpl, char *errstr, size_t errlen)
{
    int rc = 0;
    size_t *open_stack = NULL; /* indices of sections waiting for their close tag */
    size_t nopen = 0, open_cap = 0;
    const char *odelim = "{{", *cdelim = "}}";
    size_t olen = 2, clen = 2;
    size_t text_start = 0;
    unsigned line = 1;           /* line number at position counted_to */
    size_t counted_to = 0;

    for (;;) {
        const char *hit = find_bytes(src + text_start, len - text_start, odelim, olen);
        if (hit == NULL) {
            if (text_start < len) {
                mtok_t *t;
                rc = tpl_push(tpl, TK_TEXT, line, &t);
                if (rc < 0)
                    goto cleanup;
                t->text = src + text_start;
                t->len = len - text_start;
            }
            break;
        }
        size_t tag_at = (size_t)(hit - src);
        line += count_newlines(src, counted_to, tag_at);
        counted_to = tag_at;
        unsigned tag_line = line;

        size_t body = tag_at + olen;
        char sigil = body < len ? src[body] : '\0';
        int kind;
        switch (sigil) {
        case '{': kind = '{'; break;
        case '&': kind = '&'; break;
        case '#': kind = '#'; break;
        case '^': kind = '^'; break;
        case '/': kind = '/'; break;
        case '>': kind = '>'; break;
        case '!': kind = '!'; break;
        case '=': kind = '='; break;
        case '<':
        case '$':
            set_err(errstr, errlen, "line %u: template inheritance ('%c' tags) is not supported", tag_line, sigil);
            rc = CMN_ERR_TEMPLATE;
            goto cleanup;
        default: kind = 0; break;
        }
        if (kind != 0)
            body++;

        /* Find where the tag's content ends. A triple mustache ends at '}'
         * plus the closing delimiter, a set-delimiter tag at '=' plus it, so
         * look for the delimiter and require the extra character before it. */
        size_t content_end = 0, tag_end = 0;
        int found = 0;
        size_t search = body;
        while (search <= len) {
            const char *c = find_bytes(src + search, len - search, cdelim, clen);
            if (c == NULL)
                break;
            size_t at = (size_t)(c - src);
            if (kind != '{' && kind != '=') {
                content_end = at;
                tag_end = at + clen;
                found = 1;
                break;
            }
            char want = kind == '{' ? '}' : '=';
            if (at > body && src[at - 1] == want) {
                content_end = at - 1;
                tag_end = at + clen;
                found = 1;
                break;
            }
            search = at + 1;
        }
        if (!found) {
            const char *extra = kind == '{' ? "}" : kind == '=' ? "=" : "";
            set_err(errstr, errlen, "line %u: unclosed tag: no closing '%s%.*s'", tag_line, extra, (int)clen, cdelim);
            rc = CMN_ERR_TEMPLATE;
            goto cleanup;
        }

        /* Section, inverted, close, partial, comment and set-delimiter tags
         * alone on their line take the whole line with them (spec
         * "standalone"); interpolations never do. Scanning the raw source is
         * enough: any other tag on the line shows up as non-blank bytes. */
        size_t lit_end = tag_at, next = tag_end;
        const char *indent = NULL;
        size_t indent_len = 0;
        if (kind != 0 && kind != '{' && kind != '&') {
            size_t b = tag_at;
            while (b > text_start && is_blank(src[b - 1]))
                b--;
            int starts_line = b == 0 || src[b - 1] == '\n';
            size_t f = tag_end;
            while (f < len && is_blank(src[f]))
                f++;
            size_t after = 0;
            int ends_line = 1;
            if (f == len)
                after = len;
            else if (src[f] == '\n')
                after = f + 1;
            else if (src[f] == '\r' && f + 1 < len && src[f + 1] == '\n')
                after = f + 2;
            else
                ends_line = 0;
            if (starts_line && ends_line) {
                lit_end = b;
                next = after;
                indent = src + b;
                indent_len = tag_at - b;
            }
        }

        if (lit_end > text_start) {
            mtok_t *t;
            rc = tpl_push(tpl, TK_TEXT, line, &t);
            if (rc < 0)
                goto cleanup;
            t->text = src + text_start;
            t->len = lit_end - text_start;
        }

        const char *content = src + body;
        size_t content_len = content_end - body;
        trim(&content, &content_len);

        if (kind == '/') {
            if (nopen == 0) {
                set_err(errstr, errlen, "line %u: closing tag '%.*s' without an open section", tag_line,
                        (int)content_len, content);
                rc = CMN_ERR_TEMPLATE;
                goto cleanup;
            }
            mtok_t *sec = &tpl->toks[open_stack[nopen - 1]];
            if (sec->len != content_len || memcmp(sec->text, content, content_len) != 0) {
                set_err(errstr, errlen, "line %u: closing tag '%.*s' does not match section '%.*s' opened on line %u",
                        tag_line, (int)content_len, content, (int)sec->len, sec->text, sec->line);
                rc = CMN_ERR_TEMPLATE;
                goto cleanup;
            }
            sec->end = tpl->n;
            nopen--;
        } else if (kind == '=') {
            /* Exactly two blank-separated delimiters; they point into src,
             * which outlives compilation. */
            size_t i = 0;
            while (i < content_len && !is_space(content[i]))
                i++;
            const char *no = content, *nc;
            size_t nolen = i, nclen;
            while (i < content_len && is_space(content[i]))
                i++;
            nc = content + i;
            while (i < content_len && !is_space(content[i]))
                i++;
            nclen = (size_t)(content + i - nc);
            if (nolen == 0 || nclen == 0 || i != content_len || memchr(no, '=', nolen) != NULL ||
                memchr(nc, '=', nclen) != NULL) {
                set_err(errstr, errlen, "line %u: bad set-delimiter tag: expected two delimiters without blanks or '='",
                        tag_line);
                rc = CMN_ERR_TEMPLATE;
                goto cleanup;
            }
            odelim = no;
            olen = nolen;
            cdelim = nc;
            clen = nclen;
        } else if (kind != '!') {
            tok_type_t type = TK_VAR;
            if (kind == '{' || kind == '&')
                type = TK_RAW;
            else if (kind == '#')
                type = TK_SECTION;
            else if (kind == '^')
                type = TK_INVERTED;
            else if (kind == '>')
                type = TK_PARTIAL;
            mtok_t *t;
            rc = tpl_push(tpl, type, tag_line, &t);
            if (rc < 0)
                goto cleanup;
            rc = tok_set_name(t, content, content_len, type != TK_PARTIAL);
            if (rc == CMN_ERR_PARSE) {
                set_err(errstr, errlen, "line %u: invalid name '%.*s' in tag", tag_line, (int)content_len, content);
                rc = CMN_ERR_TEMPLATE;
            }
            if (rc < 0)
                goto cleanup;
            if (type == TK_PARTIAL) {
                t->indent = indent;
                t->indent_len = indent_len;
            }
            if (type == TK_SECTION || type == TK_INVERTED) {
                if (nopen == open_cap) {
                    size_t cap = open_cap ? open_cap * 2 : 16;
                    size_t *grown = realloc(open_stack, cap * sizeof(*grown));
                    if (grown == NULL) {
                        rc = CMN_ERR_NOMEM;
                        goto cleanup;
                    }
                    open_stack = grown;
                    open_cap = cap;
                }
                open_stack[nopen++] = tpl->n - 1;
            }
        }
        text_start = next;
    }

    if (nopen > 0) {
        const mtok_t *sec = &tpl->toks[open_stack[nopen - 1]];
        set_err(errstr, errlen, "line %u: section '%.*s' is never closed", sec->line, (int)sec->len, sec->text);
        rc = CMN_ERR_TEMPLATE;
    }

cleanup:
    if (rc == CMN_ERR_NOMEM)
        set_err(errstr, errlen, "out of memory compiling template");
    if (rc < 0)
        tpl_free(tpl);
    free(open_stack);
    return rc;
}

/* Formats a render-time error. Inside a partial the message names the line of
 * the caller's template that led there and the line within the innermost
 * partial, so the prefix is always "line N:" of the template the caller gave. */
static int render_fail(renderer_t *r, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int render_fail(renderer_t *r, unsigned line, const char *fmt, ...)
{
    if (r->errstr == NULL || r->errlen == 0)
        return CMN_ERR_TEMPLATE;
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (r->partial_level == 0)
        snprintf(r->errstr, r->errlen, "line %u: %s", line, reason);
    else
        snprintf(r->errstr, r->errlen, "line %u: in partial '%s' line %u: %s", r->root_line, r->partial_name, line,
                 reason);
    return CMN_ERR_TEMPLATE;
}

static int stack_push(renderer_t *r, json_object *v)
{
    if (r->nstack == r->stack_cap) {
        size_t cap = r->stack_cap ? r->stack_cap * 2 : 16;
        json_object **grown = realloc(r->stack, cap * sizeof(*grown));
        if (grown == NULL)
            return CMN_ERR_NOMEM;
        r->stack = grown;
        r->stack_cap = cap;
    }
    r->stack[r->nstack++] = v;
    return 0;
}

/* Resolves a name against the context stack per the spec: the first part is
 * looked up from the innermost context outwards; the remaining parts must
 * then resolve inside that value, with no further fallback to outer contexts.
 * Returns 1 and the (borrowed, possibly NULL = JSON null) value, or 0. */
static int lookup(const renderer_t *r, const mtok_t *t, json_object **val)
{
    if (t->nparts == 0) {
        *val = r->stack[r->nstack - 1];
        return 1;
    }
    json_object *v = NULL;
    int found = 0;
    for (size_t i = r->nstack; i > 0 && !found; i--) {
        json_object *c = r->stack[i - 1];
        if (json_object_is_type(c, json_type_object))
            found = json_object_object_get_ex(c, t->name, &v);
    }
    if (!found)
        return 0;
    const char *part = t->name;
    for (size_t k = 1; k < t->nparts; k++) {
        part += strlen(part) + 1;
        if (!json_object_is_type(v, json_type_object))
            return 0;
        if (!json_object_object_get_ex(v, part, &v))
            return 0;
    }
    *val = v;
    return 1;
}

static int is_truthy(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return 0;
    case json_type_boolean:
        return json_object_get_boolean(v);
    case json_type_array:
        return json_object_array_length(v) > 0;
    default:
        return 1;
    }
}

static int put_escaped(cmn_buf_t *out, const char *s, size_t len, int escape)
{
    if (!escape)
        return cmn_buf_append(out, s, len);
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep == NULL)
            continue;
        int rc = cmn_buf_append(out, s + run, i - run);
        if (rc < 0)
            return rc;
        rc = cmn_buf_puts(out, rep);
        if (rc < 0)
            return rc;
        run = i + 1;
    }
    return cmn_buf_append(out, s + run, len - run);
}

/* The shortest of %.15g..%.17g that reads back as the same double: 15
 * digits never show binary noise for decimal literals, 17 always round-trip.
 * Relies on the C locale's '.' decimal point, which the services never change. */
static void format_double(double d, char *tmp, size_t tmplen)
{
    if (isnan(d)) {
        snprintf(tmp, tmplen, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(tmp, tmplen, "%s", d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, tmplen, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            return;
    }
}

static int interpolate(renderer_t *r, const mtok_t *t)
{
    json_object *v = NULL;
    if (!lookup(r, t, &v))
        return 0;
    int escape = t->type == TK_VAR && r->escape_html;
    char tmp[64];
    switch (json_object_get_type(v)) {
    case json_type_null:
        return 0;
    case json_type_string:
        return put_escaped(r->out, json_object_get_string(v), (size_t)json_object_get_string_len(v), escape);
    case json_type_boolean:
        return cmn_buf_puts(r->out, json_object_get_boolean(v) ? "true" : "false");
    case json_type_int: {
        int64_t i = json_object_get_int64(v);
        /* json-c saturates unsigned values above INT64_MAX; ask for them as uint64. */
        if (i == INT64_MAX)
            snprintf(tmp, sizeof(tmp), "%" PRIu64, json_object_get_uint64(v));
        else
            snprintf(tmp, sizeof(tmp), "%" PRId64, i);
        return cmn_buf_puts(r->out, tmp);
    }
    case json_type_double:
        format_double(json_object_get_double(v), tmp, sizeof(tmp));
        return cmn_buf_puts(r->out, tmp);
    case json_type_array:
    case json_type_object: {
        /* json-c caches the serialisation inside v; data must therefore not
         * be rendered from two threads at once (json-c's usual rule). */
        size_t n = 0;
        const char *s = json_object_to_json_string_length(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (s == NULL)
            return CMN_ERR_NOMEM;
        return put_escaped(r->out, s, n, escape);
    }
    }
    return 0;
}

static void partial_entry_free(partial_entry_t *e)
{
    if (e == NULL)
        return;
    tpl_free(&e->tpl);
    free(e->name);
    free(e->indent);
    free(e->source);
    free(e);
}

/* Copies text with indent inserted at the start of every line; a final
 * newline does not start a new line. Returns a malloc'd string or NULL. */
static char *indent_text(const char *text, size_t len, const char *indent, size_t ilen)
{
    size_t lines = 1;
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] == '\n')
            lines++;
    }
    char *copy = malloc(len + lines * ilen + 1);
    if (copy == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 0 || text[i - 1] == '\n') {
            memcpy(copy + o, indent, ilen);
            o += ilen;
        }
        copy[o++] = text[i];
    }
    if (len == 0) {
        memcpy(copy, indent, ilen);
        o = ilen;
    }
    copy[o] = '\0';
    return copy;
}

/* Finds or loads and compiles the partial a TK_PARTIAL token names. The entry
 * is owned by the renderer's cache. */
static int partial_get(renderer_t *r, const mtok_t *t, partial_entry_t **out)
{
    size_t ilen = t->indent != NULL ? t->indent_len : 0;
    for (size_t i = 0; i < r->npartials; i++) {
        partial_entry_t *e = r->partials[i];
        if (strcmp(e->name, t->name) == 0 && strlen(e->indent) == ilen &&
            (ilen == 0 || memcmp(e->indent, t->indent, ilen) == 0)) {
            *out = e;
            return 0;
        }
    }

    int rc = 0;
    partial_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    e->name = strdup(t->name);
    e->indent = malloc(ilen + 1);
    if (e->name == NULL || e->indent == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    if (ilen > 0)
        memcpy(e->indent, t->indent, ilen);
    e->indent[ilen] = '\0';

    const char *text = r->partial != NULL ? r->partial(r->partial_ctx, t->name) : NULL;
    if (text == NULL) {
        e->missing = 1;
    } else {
        const char *src = text;
        size_t len = strlen(text);
        if (ilen > 0) {
            e->source = indent_text(text, len, e->indent, ilen);
            if (e->source == NULL) {
                rc = CMN_ERR_NOMEM;
                goto cleanup;
            }
            src = e->source;
            len = strlen(e->source);
        }
        char why[256] = "";
        rc = tpl_compile(src, len, &e->tpl, why, sizeof(why));
        if (rc == CMN_ERR_TEMPLATE) {
            if (r->partial_level == 0)
                set_err(r->errstr, r->errlen, "line %u: in partial '%s' %s", t->line, t->name, why);
            else
                set_err(r->errstr, r->errlen, "line %u: in partial '%s' %s", r->root_line, t->name, why);
        }
        if (rc < 0)
            goto cleanup;
    }

    if (r->npartials == r->partials_cap) {
        size_t cap = r->partials_cap ? r->partials_cap * 2 : 8;
        partial_entry_t **grown = realloc(r->partials, cap * sizeof(*grown));
        if (grown == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        r->partials = grown;
        r->partials_cap = cap;
    }
    r->partials[r->npartials++] = e;
    *out = e;
    e = NULL;

cleanup:
    partial_entry_free(e);
    return rc;
}

static int render_range(renderer_t *r, const mtpl_t *tpl, size_t begin, size_t end);

static int enter(renderer_t *r, const mtok_t *t)
{
    if (r->depth >= r->max_depth)
        return render_fail(r, t->line, "'%.*s' nests sections and partials deeper than %d levels%s", (int)t->len,
                           t->text, r->max_depth, t->type == TK_PARTIAL ? " (recursive partial?)" : "");
    r->depth++;
    return 0;
}

static int render_section(renderer_t *r, const mtpl_t *tpl, size_t at)
{
    const mtok_t *t = &tpl->toks[at];
    json_object *v = NULL;
    int truthy = lookup(r, t, &v) && is_truthy(v);
    if (t->type == TK_INVERTED) {
        if (truthy)
            return 0;
        int rc = enter(r, t);
        if (rc < 0)
            return rc;
        rc = render_range(r, tpl, at + 1, t->end);
        r->depth--;
        return rc;
    }
    if (!truthy)
        return 0;
    int rc = enter(r, t);
    if (rc < 0)
        return rc;
    /* A list renders the body once per element; any other truthy value
     * renders it once with the value pushed as the innermost context. */
    size_t count = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
    for (size_t i = 0; i < count && rc == 0; i++) {
        json_object *item = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
        rc = stack_push(r, item);
        if (rc < 0)
            break;
        rc = render_range(r, tpl, at + 1, t->end);
        r->nstack--;
    }
    r->depth--;
    return rc;
}

static int render_partial(renderer_t *r, const mtok_t *t)
{
    partial_entry_t *e = NULL;
    int rc = partial_get(r, t, &e);
    if (rc < 0 || e->missing)
        return rc;
    rc = enter(r, t);
    if (rc < 0)
        return rc;
    const char *saved_name = r->partial_name;
    r->partial_name = e->name;
    r->partial_level++;
    rc = render_range(r, &e->tpl, 0, e->tpl.n);
    r->partial_level--;
    r->partial_name = saved_name;
    r->depth--;
    return rc;
}

static int render_range(renderer_t *r, const mtpl_t *tpl, size_t begin, size_t end)
{
    size_t i = begin;
    while (i < end) {
        const mtok_t *t = &tpl->toks[i];
        int rc = 0;
        if (r->partial_level == 0)
            r->root_line = t->line;
        switch (t->type) {
        case TK_TEXT:
            rc = cmn_buf_append(r->out, t->text, t->len);
            i++;
            break;
        case TK_VAR:
        case TK_RAW:
            rc = interpolate(r, t);
            i++;
            break;
        case TK_SECTION:
        case TK_INVERTED:
            rc = render_section(r, tpl, i);
            i = t->end;
            break;
        case TK_PARTIAL:
            rc = render_partial(r, t);
            i++;
            break;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cmn_mustache_render(const char *tmpl, size_t tmpl_len, json_object *data, const cmn_mustache_opts_t *opts,
                        cmn_buf_t *out, char *errstr, size_t errlen)
{
    static const cmn_mustache_opts_t defaults = {1, NULL, NULL, 0};
    int rc = 0;
    mtpl_t tpl = {0};
    renderer_t r = {0};
    size_t start_len = out != NULL ? out->len : 0;

    if (errstr != NULL && errlen > 0)
        errstr[0] = '\0';
    if (out == NULL || (tmpl == NULL && tmpl_len > 0)) {
        set_err(errstr, errlen, "cmn_mustache_render: NULL template or output buffer");
        return CMN_ERR_INVALID;
    }
    if (opts == NULL)
        opts = &defaults;
    if (opts->max_depth < 0) {
        set_err(errstr, errlen, "cmn_mustache_render: negative max_depth %d", opts->max_depth);
        return CMN_ERR_INVALID;
    }

    r.escape_html = opts->escape_html;
    r.partial = opts->partial;
    r.partial_ctx = opts->partial_ctx;
    r.max_depth = opts->max_depth == 0 ? MUSTACHE_DEFAULT_DEPTH : opts->max_depth;
    if (r.max_depth > MUSTACHE_DEPTH_CEILING)
        r.max_depth = MUSTACHE_DEPTH_CEILING;
    r.out = out;
    r.errstr = errstr;
    r.errlen = errlen;

    rc = tpl_compile(tmpl != NULL ? tmpl : "", tmpl_len, &tpl, errstr, errlen);
    if (rc < 0)
        goto cleanup;
    rc = stack_push(&r, data);
    if (rc < 0)
        goto cleanup;
    rc = render_range(&r, &tpl, 0, tpl.n);

cleanup:
    if (rc == CMN_ERR_NOMEM)
        set_err(errstr, errlen, "out of memory rendering template");
    if (rc < 0 && out->data != NULL) {
        /* Leave the caller's buffer as it was: half a message must never be
         * mistaken for a rendered one. */
        out->len = start_len;
        out->data[start_len] = '\0';
    }
    for (size_t i = 0; i < r.npartials; i++)
        partial_entry_free(r.partials[i]);
    free(r.partials);
    free(r.stack);
    tpl_free(&tpl);
    return rc;
}
