/* time.h - clocks and RFC 3339 timestamps. */
#ifndef CRM_TIME_H
#define CRM_TIME_H

#include <stddef.h>
#include <stdint.h>

int64_t cmn_now_ms(void);          /* wall clock, epoch milliseconds */
int64_t cmn_monotonic_ms(void);    /* monotonic clock, milliseconds */
/* Formats epoch ms as 2026-11-22T01:02:03.456Z into out (at least 25 bytes). */
int cmn_time_format_rfc3339(int64_t epoch_ms, char *out, size_t outlen);
/* Parses RFC 3339 (Z or +hh:mm offset, optional fraction) into epoch ms. */
int cmn_time_parse_rfc3339(const char *s, int64_t *epoch_ms);

#endif
