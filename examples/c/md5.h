/* MD5 (RFC 1321), only for reader.c's --md5 check. */
#ifndef EXAMPLE_MD5_H
#define EXAMPLE_MD5_H
#include <stddef.h>
#include <stdint.h>

/* Writes the MD5 of `data` as 32 lower-case hex digits and a NUL. */
void md5_hex(const uint8_t *data, size_t len, char out[33]);
#endif
