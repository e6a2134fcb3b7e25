/* crypto: base64 article bodies (RFC 4648 with padding, 76-character lines, CRLF), streamed
 * in both directions. Armor carries ciphertext and signed records, nothing secret, so plain
 * malloc is fine here. */
#include <stdlib.h>
#include <string.h>

#include "crypto/internal.h"

#define LINE_BIN 57  /* bytes per full line */
#define LINE_TXT 76  /* characters per full line */
#define OUT_LINES 64 /* encoder: lines batched per sink call */
#define DEC_TXT 4096 /* decoder: text buffered before decoding */

struct pc_armor {
    int decode;
    int err;         /* sticky */
    int finished;
    int padded;      /* decoder: '=' seen, only line ends may follow */
    pc_sink_fn sink;
    void *arg;
    size_t fill;     /* encoder: bytes in part; decoder: bytes in txt */
    size_t out_fill; /* bytes in out */
    uint8_t part[LINE_BIN];
    char line[LINE_TXT + 1]; /* sodium_bin2base64 writes a NUL */
    char txt[DEC_TXT];
    uint8_t out[OUT_LINES * (LINE_TXT + 2)];
};

uint64_t pc_armor_encoded_size(uint64_t binary_len)
{
    return (binary_len + 2) / 3 * 4 + (binary_len + LINE_BIN - 1) / LINE_BIN * 2;
}

static pc_armor *armor_new(int decode, pc_sink_fn sink, void *arg)
{
    if (!sink)
        return NULL;
    pc_armor *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->decode = decode;
    a->sink = sink;
    a->arg = arg;
    return a;
}

pc_armor *pc_armor_encoder(pc_sink_fn sink, void *arg)
{
    return armor_new(0, sink, arg);
}

pc_armor *pc_armor_decoder(pc_sink_fn sink, void *arg)
{
    return armor_new(1, sink, arg);
}

static int flush_out(pc_armor *a)
{
    if (a->out_fill > 0 && a->sink(a->arg, a->out, a->out_fill) != 0)
        return a->err = PC_ESINK;
    a->out_fill = 0;
    return PC_OK;
}

/* Encodes one line of at most 57 bytes into the output batch. */
static int put_line(pc_armor *a, const uint8_t *bin, size_t len)
{
    if (a->out_fill + LINE_TXT + 2 > sizeof a->out && flush_out(a) != PC_OK)
        return a->err;
    sodium_bin2base64(a->line, sizeof a->line, bin, len, sodium_base64_VARIANT_ORIGINAL);
    size_t n = strlen(a->line);
    memcpy(a->out + a->out_fill, a->line, n);
    memcpy(a->out + a->out_fill + n, "\r\n", 2);
    a->out_fill += n + 2;
    return PC_OK;
}

static int encode_update(pc_armor *a, const uint8_t *in, size_t len)
{
    if (a->fill > 0) {
        size_t n = LINE_BIN - a->fill < len ? LINE_BIN - a->fill : len;
        memcpy(a->part + a->fill, in, n);
        a->fill += n;
        in += n;
        len -= n;
        if (a->fill < LINE_BIN)
            return PC_OK;
        a->fill = 0;
        if (put_line(a, a->part, LINE_BIN) != PC_OK)
            return a->err;
    }
    for (; len >= LINE_BIN; in += LINE_BIN, len -= LINE_BIN)
        if (put_line(a, in, LINE_BIN) != PC_OK)
            return a->err;
    memcpy(a->part, in, len);
    a->fill = len;
    return PC_OK;
}

/* The value of a base64 character, BAD for anything else. A table rather than libsodium's
 * constant-time decoder: armor is public ciphertext, and the constant-time loop was a third
 * of the gateway's CPU when serving mail. */
#define BAD 0xff
static const uint8_t b64_value[256] = {
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,  62, BAD, BAD, BAD,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, BAD, BAD, BAD, BAD, BAD,
    BAD,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
};
#undef BAD

/* Decodes n characters (whole 4-character groups, no line ends) to the sink. Padding ('=')
 * may only end the last group of the stream, with the unused bits zero (RFC 4648 3.5): one
 * spelling per byte string. */
static int decode_groups(pc_armor *a, const uint8_t *txt, size_t n)
{
    if (n > 0 && a->padded)
        return a->err = PC_EFORMAT; /* data after the padding of an earlier group */
    uint8_t bin[DEC_TXT / 4 * 3];
    while (n > 0) {
        size_t chunk = n < DEC_TXT ? n : DEC_TXT, got = 0;
        for (size_t i = 0; i < chunk; i += 4) {
            const uint8_t *q = txt + i;
            uint32_t v0 = b64_value[q[0]], v1 = b64_value[q[1]], v2 = b64_value[q[2]], v3 = b64_value[q[3]];
            if ((v0 | v1 | v2 | v3) < 64) {
                bin[got++] = (uint8_t)(v0 << 2 | v1 >> 4);
                bin[got++] = (uint8_t)(v1 << 4 | v2 >> 2);
                bin[got++] = (uint8_t)(v2 << 6 | v3);
                continue;
            }
            if (i + 4 != n || (v0 | v1) >= 64 || q[3] != '=')
                return a->err = PC_EFORMAT;
            if (q[2] == '=' && (v1 & 0x0f) == 0) {
                bin[got++] = (uint8_t)(v0 << 2 | v1 >> 4);
            } else if (v2 < 64 && (v2 & 0x03) == 0) {
                bin[got++] = (uint8_t)(v0 << 2 | v1 >> 4);
                bin[got++] = (uint8_t)(v1 << 4 | v2 >> 2);
            } else {
                return a->err = PC_EFORMAT;
            }
            a->padded = 1;
        }
        if (got > 0 && a->sink(a->arg, bin, got) != 0)
            return a->err = PC_ESINK;
        txt += chunk;
        n -= chunk;
    }
    return PC_OK;
}

/* Drops the line ends from txt, decodes the whole groups and keeps the rest for the next
 * round. */
static int decode_buffer(pc_armor *a)
{
    size_t chars = 0;
    for (size_t i = 0; i < a->fill; i++)
        if (a->txt[i] != '\r' && a->txt[i] != '\n')
            a->txt[chars++] = a->txt[i];
    size_t whole = chars / 4 * 4;
    if (decode_groups(a, (const uint8_t *)a->txt, whole) != PC_OK)
        return a->err;
    if (chars > whole && a->padded)
        return a->err = PC_EFORMAT;
    memmove(a->txt, a->txt + whole, chars - whole);
    a->fill = chars - whole;
    return PC_OK;
}

static int decode_update(pc_armor *a, const uint8_t *in, size_t len)
{
    /* The usual call is one armor line: decoded in place unless a group spans calls. */
    if (a->fill == 0 && len % 4 == 0 && !memchr(in, '\n', len) && !memchr(in, '\r', len))
        return decode_groups(a, in, len);
    while (len > 0) {
        size_t n = DEC_TXT - a->fill < len ? DEC_TXT - a->fill : len;
        memcpy(a->txt + a->fill, in, n);
        a->fill += n;
        in += n;
        len -= n;
        if (a->fill == DEC_TXT && decode_buffer(a) != PC_OK)
            return a->err;
    }
    return PC_OK;
}

int pc_armor_update(pc_armor *a, const uint8_t *in, size_t len)
{
    if (!a || (!in && len))
        return PC_EINVAL;
    if (a->err)
        return a->err;
    if (a->finished)
        return PC_EINVAL;
    return a->decode ? decode_update(a, in, len) : encode_update(a, in, len);
}

int pc_armor_finish(pc_armor *a)
{
    if (!a)
        return PC_EINVAL;
    if (a->err)
        return a->err;
    if (a->finished)
        return PC_EINVAL;
    a->finished = 1;
    if (a->decode) {
        if (decode_buffer(a) != PC_OK)
            return a->err;
        /* Leftover characters are an incomplete group: padding is mandatory. */
        return a->fill == 0 ? PC_OK : (a->err = PC_EFORMAT);
    }
    if (a->fill > 0 && put_line(a, a->part, a->fill) != PC_OK)
        return a->err;
    a->fill = 0;
    return flush_out(a);
}

void pc_armor_free(pc_armor *a)
{
    free(a);
}
