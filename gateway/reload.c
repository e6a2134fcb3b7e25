/* gateway: SIGHUP. The parent reads postern.conf again; what the network process can take
 * while it runs (timeouts, connection limits, the key-record cache, the UID claim delay, the
 * certificate) is passed to it in a "CFG1" frame on the control socket and applies to new
 * connections and the next timers; everything else that changed is named in the log as
 * needing a restart, and left as it runs (listeners, users, sites, state_dir, the vault's
 * KDF pool are set up once, before privileges are dropped). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw.h"

/* The reloadable settings, in frame order. */
#define FIELDS(X)                                                                                              \
    X(pop3_timeout) X(idle_timeout) X(preauth_timeout) X(preauth_deadline) X(login_grace) X(max_connections)  \
        X(max_connections_per_ip) X(keyrecord_cache) X(uid_claim_delay)

#define COUNT_ONE(f) +1
enum { N_FIELDS = 0 FIELDS(COUNT_ONE) };
#define GW_RELOAD_FRAME (8 + 4 * N_FIELDS)

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int gw_reload_send(int fd, const pn_gateway *g)
{
    uint8_t f[GW_RELOAD_FRAME] = {'C', 'F', 'G', '1'};
    put32(f + 4, N_FIELDS);
    size_t k = 8;
#define PUT(name) put32(f + k, (uint32_t)g->name), k += 4;
    FIELDS(PUT)
#undef PUT
    return pu_write_all(fd, f, sizeof f);
}

int gw_reload_parse(const uint8_t *buf, size_t len, pn_gateway *g, size_t *frame_len)
{
    if (len < 8)
        return memcmp(buf, "CFG1", len < 4 ? len : 4) == 0 ? 0 : -1;
    if (memcmp(buf, "CFG1", 4) != 0 || get32(buf + 4) != N_FIELDS)
        return -1;
    if (len < GW_RELOAD_FRAME)
        return 0;
    size_t k = 8;
#define GET(name) g->name = get32(buf + k), k += 4;
    FIELDS(GET)
#undef GET
    *frame_len = GW_RELOAD_FRAME;
    return 1;
}

void gw_reload_apply(pn_gateway *run, const pn_gateway *fresh)
{
#define COPY(name) run->name = fresh->name;
    FIELDS(COPY)
#undef COPY
}

/* Appends "name old -> new" for each reloadable setting that differs, and takes it over. */
static void take_reloadable(pn_gateway *run, const pn_gateway *fresh, pu_buf *said)
{
#define TAKE(name)                                                                                             \
    if (run->name != fresh->name) {                                                                            \
        pu_buf_printf(said, "%s%s %u -> %u", said->len ? ", " : "", #name, (unsigned)run->name,                 \
                      (unsigned)fresh->name);                                                                  \
        run->name = fresh->name;                                                                               \
    }
    FIELDS(TAKE)
#undef TAKE
    if (strcmp(run->tls_cert, fresh->tls_cert) != 0 || strcmp(run->tls_key, fresh->tls_key) != 0) {
        pu_buf_printf(said, "%stls_cert/tls_key", said->len ? ", " : "");
        memcpy(run->tls_cert, fresh->tls_cert, sizeof run->tls_cert);
        memcpy(run->tls_key, fresh->tls_key, sizeof run->tls_key);
    }
}

/* The setting lines of pn_config_write (every setting, "[section]" kept per line). */
static char *settings_text(const pn_config *cfg, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    pn_config_write(cfg, 1, f);
    fclose(f);
    return text;
}

/* One setting line with the section it is in ("site 2" for the second [site]). */
typedef struct setting {
    char section[48];
    const char *line;
    size_t len, key_len;
} setting;

/* Splits text (modified: none) into its setting lines; *n of them, malloc'd. */
static setting *settings_of(const char *text, size_t *n)
{
    size_t cap = 16, k = 0;
    setting *v = malloc(cap * sizeof *v);
    char section[48] = "";
    char names[16][32];
    unsigned seen[16] = {0};
    size_t nnames = 0;
    for (const char *p = text; v && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 2 && p[0] == '[') {
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)(len - 2), p + 1);
            size_t i = 0;
            while (i < nnames && strcmp(names[i], name) != 0)
                i++;
            if (i == nnames && nnames < 16)
                snprintf(names[nnames++], sizeof names[0], "%s", name);
            unsigned ord = i < 16 ? ++seen[i] : 0;
            if (ord > 1)
                snprintf(section, sizeof section, "%s %u", name, ord);
            else
                snprintf(section, sizeof section, "%s", name);
        } else if (len) {
            if (k == cap) {
                setting *t = realloc(v, (cap *= 2) * sizeof *v);
                if (!t) {
                    free(v);
                    return NULL;
                }
                v = t;
            }
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t)(eq - p) : len;
            while (kl && p[kl - 1] == ' ')
                kl--;
            memcpy(v[k].section, section, sizeof section);
            v[k].line = p, v[k].len = len, v[k].key_len = kl;
            k++;
        }
        p += len + (end != NULL);
    }
    *n = k;
    return v;
}

static bool has(const setting *v, size_t n, const setting *s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].len == s->len && memcmp(v[i].line, s->line, s->len) == 0 && strcmp(v[i].section, s->section) == 0)
            return true;
    return false;
}

/* Keys whose lines differ between the two texts, as "section key", once each. */
static int differing_keys(const char *a, const char *b, pu_buf *out)
{
    size_t na = 0, nb = 0;
    setting *va = settings_of(a, &na), *vb = settings_of(b, &nb);
    if (!va || !vb) {
        free(va), free(vb);
        return -1;
    }
    for (int t = 0; t < 2; t++) {
        const setting *x = t ? vb : va, *y = t ? va : vb;
        size_t nx = t ? nb : na, ny = t ? na : nb;
        for (size_t i = 0; i < nx; i++) {
            if (has(y, ny, &x[i]))
                continue;
            char item[128];
            snprintf(item, sizeof item, "%s %.*s", x[i].section, (int)x[i].key_len, x[i].line);
            if (!out->data || !strstr(out->data, item))
                pu_buf_printf(out, "%s%s", out->len ? ", " : "", item);
        }
    }
    free(va);
    free(vb);
    return 0;
}

int gw_reload_config(pn_config *run, const char *path, pu_buf *changed, pu_buf *restart, char *err, size_t errlen)
{
    pn_config *fresh = malloc(sizeof *fresh);
    if (!fresh) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pn_config_load(path, fresh, err, errlen) != 0) {
        pn_config_free(fresh);
        free(fresh);
        return -1;
    }
    take_reloadable(&run->gateway, &fresh->gateway, changed);
    size_t la = 0, lb = 0;
    char *a = settings_text(run, &la), *b = settings_text(fresh, &lb);
    if (!a || !b || differing_keys(a, b, restart) != 0)
        pu_buf_addstr(restart, "(could not compare the rest: out of memory)");
    free(a);
    free(b);
    pn_config_free(fresh);
    free(fresh);
    return 0;
}
