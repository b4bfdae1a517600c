/* buf.h - a growable byte buffer, always NUL-terminated.
 *
 * A cmn_buf_t lives by value (on the stack or in a struct); cmn_buf_free()
 * releases its storage. The NUL terminator is not counted in len. */
#ifndef CRM_BUF_H
#define CRM_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct cmn_buf {
    char *data;   /* NULL until the first append; owned by the buffer */
    size_t len;
    size_t cap;
} cmn_buf_t;

#define CMN_BUF_INIT {NULL, 0, 0}

int cmn_buf_append(cmn_buf_t *b, const void *data, size_t len);
int cmn_buf_puts(cmn_buf_t *b, const char *s);
int cmn_buf_putc(cmn_buf_t *b, char c);
int cmn_buf_printf(cmn_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cmn_buf_vprintf(cmn_buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
int cmn_buf_put_json_string(cmn_buf_t *b, const char *s);
void cmn_buf_reset(cmn_buf_t *b);          /* len = 0, keeps storage */
/* Hands the storage to the caller (who frees it) and leaves b empty. Never NULL on success. */
char *cmn_buf_steal(cmn_buf_t *b);
void cmn_buf_free(cmn_buf_t *b);

#endif
