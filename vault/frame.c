/* vault: the frames of the vault protocol. Every field is bounded and every length is checked
 * against the datagram length, so a frame decodes completely or not at all. */
#include <string.h>

#include <sodium.h>

#include "vault/internal.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | p[i];
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static size_t header(uint8_t *out, uint8_t type, uint32_t id, size_t body)
{
    out[0] = VF_VERSION;
    out[1] = type;
    put16(out + 2, (uint16_t)body);
    put32(out + 4, id);
    return VF_HEADER + body;
}

/* Checks the header against the datagram; returns the body length or -1. */
static long check_header(const uint8_t *buf, size_t len)
{
    if (!buf || len < VF_HEADER || len > VF_MAX || buf[0] != VF_VERSION)
        return -1;
    size_t body = get16(buf + 2);
    if (body != len - VF_HEADER || get32(buf + 4) == 0) /* id 0 is never sent */
        return -1;
    return (long)body;
}

int vf_decode_request(const uint8_t *buf, size_t len, vf_request *rq)
{
    long n = check_header(buf, len);
    if (n < 0 || !rq)
        return -1;
    memset(rq, 0, sizeof *rq);
    rq->type = buf[1];
    rq->id = get32(buf + 4);
    const uint8_t *p = buf + VF_HEADER;
    size_t body = (size_t)n;
    switch (rq->type) {
    case VF_LOGIN: {
        /* A, address, ip, R, record, P, password: each length read only where it is in bounds */
        if (body < 1)
            return -1;
        size_t a = p[0], off = 1;
        if (a < 1 || a > PC_ADDRESS_MAX || body < off + a + VAULT_IP_BYTES + 2 || memchr(p + off, 0, a))
            return -1;
        memcpy(rq->address, p + off, a);
        off += a;
        memcpy(rq->ip, p + off, VAULT_IP_BYTES);
        off += VAULT_IP_BYTES;
        size_t r = get16(p + off);
        off += 2;
        if (r > PC_KEYRECORD_MAX || body < off + r + 2) /* 0: no such user (answered as a wrong password) */
            return -1;
        rq->record = p + off;
        rq->record_len = r;
        off += r;
        size_t pw = get16(p + off);
        off += 2;
        if (pw > VAULT_PASSWORD_MAX || body != off + pw)
            return -1;
        rq->password = (const char *)(p + off);
        rq->password_len = pw;
        return 0;
    }
    case VF_OPEN:
        if (body != 8 + PC_MSG_PREFIX_BYTES)
            return -1;
        rq->session = get64(p);
        rq->prefix = p + 8;
        return 0;
    case VF_LOGOUT:
        if (body != 8)
            return -1;
        rq->session = get64(p);
        return 0;
    case VF_STATS:
        return body == 0 ? 0 : -1;
    default:
        return -1;
    }
}

int vf_decode_reply(const uint8_t *buf, size_t len, vault_reply *r)
{
    long n = check_header(buf, len);
    if (n < 0 || !r)
        return -1;
    memset(r, 0, sizeof *r);
    r->id = get32(buf + 4);
    const uint8_t *p = buf + VF_HEADER;
    size_t body = (size_t)n;
    switch (buf[1]) {
    case VF_R_LOGIN:
        if (body != VF_R_LOGIN_BODY || get64(p) == 0)
            return -1;
        r->type = VAULT_REPLY_LOGIN;
        r->u.login.session = get64(p);
        memcpy(r->u.login.key_id, p + 8, PC_KEYID_BYTES);
        memcpy(r->u.login.box_pk, p + 8 + PC_KEYID_BYTES, PC_BOX_PK_BYTES);
        memcpy(r->u.login.state_key, p + 8 + PC_KEYID_BYTES + PC_BOX_PK_BYTES, VAULT_STATE_KEY_BYTES);
        return 0;
    case VF_R_OPEN: {
        if (body != VF_R_OPEN_BODY)
            return -1;
        pc_msg_meta *m = &r->u.open.meta;
        r->type = VAULT_REPLY_OPEN;
        m->arrival = (int64_t)get64(p);
        m->tz_minutes = (int16_t)get16(p + 8);
        m->raw_size = get64(p + 10);
        m->crlf_size = get64(p + 18);
        m->padded_size = get64(p + 26);
        memcpy(m->tag, p + 34, PC_TAG_BYTES);
        memcpy(r->u.open.stream_key, p + 34 + PC_TAG_BYTES, PC_STREAM_KEY_BYTES);
        /* the vault checked these when it opened the metadata; a reply breaking them is corrupt */
        if (m->crlf_size < m->raw_size || m->padded_size == 0 || m->padded_size < m->raw_size)
            return -1;
        return 0;
    }
    case VF_R_LOGOUT:
        r->type = VAULT_REPLY_LOGOUT;
        return body == 0 ? 0 : -1;
    case VF_R_STATS: {
        if (body != VF_R_STATS_BODY)
            return -1;
        r->type = VAULT_REPLY_STATS;
        uint64_t *f[VAULT_STATS_FIELDS] = {
            &r->u.stats.kdf_runs,   &r->u.stats.kdf_running,   &r->u.stats.kdf_queued, &r->u.stats.kdf_peak,
            &r->u.stats.pool_size,  &r->u.stats.cache_hits,    &r->u.stats.logins_ok,  &r->u.stats.logins_failed,
            &r->u.stats.throttled,  &r->u.stats.busy,          &r->u.stats.bad_records, &r->u.stats.opens,
            &r->u.stats.entries,    &r->u.stats.sessions,      &r->u.stats.wipes,
        };
        for (size_t i = 0; i < VAULT_STATS_FIELDS; i++)
            *f[i] = get64(p + 8 * i);
        return 0;
    }
    case VF_R_FAIL:
        if (body != 1 || p[0] < VAULT_FAIL_PASSWORD || p[0] > VAULT_FAIL_ENVELOPE)
            return -1;
        r->type = VAULT_REPLY_FAIL;
        r->reason = (enum vault_fail)p[0];
        return 0;
    default:
        return -1;
    }
}

size_t vf_encode_login(uint8_t *out, uint32_t id, const char *address, size_t address_len, const uint8_t *ip,
                       const uint8_t *record, size_t record_len, const char *password, size_t password_len)
{
    uint8_t *p = out + VF_HEADER;
    size_t off = 0;
    p[off++] = (uint8_t)address_len;
    memcpy(p + off, address, address_len);
    off += address_len;
    if (ip)
        memcpy(p + off, ip, VAULT_IP_BYTES);
    else
        memset(p + off, 0, VAULT_IP_BYTES);
    off += VAULT_IP_BYTES;
    put16(p + off, (uint16_t)record_len);
    off += 2;
    if (record_len)
        memcpy(p + off, record, record_len);
    off += record_len;
    put16(p + off, (uint16_t)password_len);
    off += 2;
    if (password_len)
        memcpy(p + off, password, password_len);
    off += password_len;
    return header(out, VF_LOGIN, id, off);
}

size_t vf_encode_session(uint8_t *out, uint8_t type, uint32_t id, uint64_t session, const uint8_t *prefix)
{
    put64(out + VF_HEADER, session);
    if (prefix)
        memcpy(out + VF_HEADER + 8, prefix, PC_MSG_PREFIX_BYTES);
    return header(out, type, id, 8 + (prefix ? PC_MSG_PREFIX_BYTES : 0));
}

size_t vf_encode_empty(uint8_t *out, uint8_t type, uint32_t id)
{
    return header(out, type, id, 0);
}

size_t vf_encode_login_ok(uint8_t *out, uint32_t id, uint64_t session, const uint8_t *key_id, const uint8_t *box_pk,
                          const uint8_t *state_key)
{
    uint8_t *p = out + VF_HEADER;
    put64(p, session);
    memcpy(p + 8, key_id, PC_KEYID_BYTES);
    memcpy(p + 8 + PC_KEYID_BYTES, box_pk, PC_BOX_PK_BYTES);
    memcpy(p + 8 + PC_KEYID_BYTES + PC_BOX_PK_BYTES, state_key, VAULT_STATE_KEY_BYTES);
    return header(out, VF_R_LOGIN, id, VF_R_LOGIN_BODY);
}

size_t vf_encode_open_ok(uint8_t *out, uint32_t id, const pc_msg_meta *m, const uint8_t *stream_key)
{
    uint8_t *p = out + VF_HEADER;
    put64(p, (uint64_t)m->arrival);
    put16(p + 8, (uint16_t)m->tz_minutes);
    put64(p + 10, m->raw_size);
    put64(p + 18, m->crlf_size);
    put64(p + 26, m->padded_size);
    memcpy(p + 34, m->tag, PC_TAG_BYTES);
    memcpy(p + 34 + PC_TAG_BYTES, stream_key, PC_STREAM_KEY_BYTES);
    return header(out, VF_R_OPEN, id, VF_R_OPEN_BODY);
}

size_t vf_encode_stats(uint8_t *out, uint32_t id, const vault_stats *st)
{
    const uint64_t f[VAULT_STATS_FIELDS] = {
        st->kdf_runs,  st->kdf_running, st->kdf_queued,  st->kdf_peak,       st->pool_size,
        st->cache_hits, st->logins_ok,  st->logins_failed, st->throttled,    st->busy,
        st->bad_records, st->opens,     st->entries,     st->sessions,       st->wipes,
    };
    for (size_t i = 0; i < VAULT_STATS_FIELDS; i++)
        put64(out + VF_HEADER + 8 * i, f[i]);
    return header(out, VF_R_STATS, id, VF_R_STATS_BODY);
}

size_t vf_encode_fail(uint8_t *out, uint32_t id, enum vault_fail reason)
{
    out[VF_HEADER] = (uint8_t)reason;
    return header(out, VF_R_FAIL, id, 1);
}

int vault_frame_check_request(const uint8_t *buf, size_t len)
{
    vf_request rq;
    int rc = vf_decode_request(buf, len, &rq);
    sodium_memzero(&rq, sizeof rq);
    return rc;
}

int vault_frame_check_reply(const uint8_t *buf, size_t len)
{
    vault_reply r;
    int rc = vf_decode_reply(buf, len, &r);
    sodium_memzero(&r, sizeof r);
    return rc;
}

const char *vault_fail_str(int reason)
{
    switch (reason) {
    case VAULT_FAIL_PASSWORD:
        return "wrong password";
    case VAULT_FAIL_RECORD:
        return "bad key record";
    case VAULT_FAIL_NOMEM:
        return "out of memory";
    case VAULT_FAIL_THROTTLED:
        return "too many failed logins";
    case VAULT_FAIL_BUSY:
        return "busy";
    case VAULT_FAIL_SESSION:
        return "unknown session";
    case VAULT_FAIL_ENVELOPE:
        return "bad envelope";
    default:
        return "unknown reason";
    }
}
