/*
 * base64: strict RFC 4648 coding for SMTP AUTH and POP3 AUTH
 * (include/base64.h).  Pure; never accepts whitespace, missing padding
 * or bytes outside the alphabet, and never writes past the given output
 * size.
 */
#include "base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	size_t o = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		unsigned long n;

		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[k] = val(in[i + k])) < 0)
				return -1;
		}
		n = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
		    ((unsigned long)v[2] << 6) | (unsigned long)v[3];
		if (o + 3 - (size_t)pad > outcap)
			return -1;
		out[o++] = (uint8_t)(n >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(n >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)n;
	}
	return (long)o;
}

size_t
base64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned long n = (unsigned long)in[i] << 16;

		if (i + 1 < len)
			n |= (unsigned long)in[i + 1] << 8;
		if (i + 2 < len)
			n |= in[i + 2];
		out[o++] = alphabet[(n >> 18) & 63];
		out[o++] = alphabet[(n >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(n >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? alphabet[n & 63] : '=';
	}
	out[o] = '\0';
	return o;
}
