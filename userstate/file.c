/* userstate: the encrypted state file (docs/formats.md 5.1) — naming, loading, atomic
 * saving and the administrator's reset. The plaintext serialisation only ever lives in
 * sodium_malloc'd memory, which sodium_free wipes. */
#include "userstate/userstate_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "article/article.h"
#include "util/util.h"

/* v2 names are keyed with the state key, so a new key pair for an address (user del, then
 * user add) gets a new file and never meets the old key's state; v1 names hashed the address
 * alone and are only read, to migrate them (docs/formats.md 5.1). */
static const char name_context[] = "postern userstate v2"; /* hashed with its NUL */
static const char legacy_context[] = "postern userstate v1";

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

/* File name hash, users/ directory and file path of an address. The name is a hash so
 * that a listing of state_dir does not reveal who has mail there. */
static int locate(const char *state_dir, const char *address, const uint8_t *key, uint8_t hash[US_NAME_HASH_BYTES],
                  char **dir, char **path, char *err, size_t errlen)
{
    char canon[PA_ADDRESS_MAX + 1], why[160];
    if (!state_dir || !*state_dir || !address) {
        set_err(err, errlen, "userstate: no state directory or address");
        return US_EINVAL;
    }
    if (pa_address_canonical(address, canon, sizeof canon, why, sizeof why) != 0) {
        set_err(err, errlen, "userstate: %s", why);
        return US_EINVAL;
    }
    crypto_generichash_state h;
    /* key NULL: the legacy v1 name */
    crypto_generichash_init(&h, key, key ? US_KEY_BYTES : 0, US_NAME_HASH_BYTES);
    if (key)
        crypto_generichash_update(&h, (const unsigned char *)name_context, sizeof name_context);
    else
        crypto_generichash_update(&h, (const unsigned char *)legacy_context, sizeof legacy_context);
    crypto_generichash_update(&h, (const unsigned char *)canon, strlen(canon));
    crypto_generichash_final(&h, hash, US_NAME_HASH_BYTES);
    char hex[2 * US_NAME_HASH_BYTES + 1];
    pu_hex(hash, US_NAME_HASH_BYTES, hex);
    *dir = join(state_dir, "/", "users");
    *path = *dir ? join(*dir, "/", hex) : NULL;
    char *full = *path ? join(*path, ".state", "") : NULL;
    free(*path);
    *path = full;
    if (!*dir || !*path) {
        free(*dir);
        free(*path);
        *dir = *path = NULL;
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    return US_OK;
}

int userstate_path(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES], char *out,
                   size_t cap, char *err, size_t errlen)
{
    uint8_t hash[US_NAME_HASH_BYTES];
    char *dir, *path;
    int rc = locate(state_dir, address, state_key, hash, &dir, &path, err, errlen);
    if (rc != US_OK)
        return rc;
    if (!out || strlen(path) >= cap) {
        set_err(err, errlen, "userstate: path buffer too small");
        rc = US_EINVAL;
    } else {
        memcpy(out, path, strlen(path) + 1);
    }
    free(dir);
    free(path);
    return rc;
}

static void make_ad(const userstate *st, unsigned version, uint8_t ad[US_AD_BYTES])
{
    memcpy(ad, US_MAGIC, 4);
    ad[4] = (uint8_t)version;
    memcpy(ad + 5, st->name_hash, US_NAME_HASH_BYTES);
}

static int read_all(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got == n ? 0 : 1;
}

/* *found: whether the file exists (a missing file is an empty state). */
static int load(userstate *st, int *found, char *err, size_t errlen)
{
    *found = 0;
    int fd = open(st->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return US_OK; /* no state yet: empty */
        set_err(err, errlen, "userstate: cannot open %s: %s", st->path, strerror(errno));
        return US_EIO;
    }
    *found = 1;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_err(err, errlen, "userstate: %s is not a regular file", st->path);
        close(fd);
        return US_EIO;
    }
    if ((uint64_t)sb.st_size > US_FILE_MAX) {
        set_err(err, errlen, "userstate: %s is larger than %llu bytes", st->path, (unsigned long long)US_FILE_MAX);
        close(fd);
        return US_EFORMAT;
    }
    size_t size = (size_t)sb.st_size;
    if (size < US_HEADER_BYTES + US_MAC_BYTES) {
        set_err(err, errlen, "userstate: %s is truncated (%zu bytes)", st->path, size);
        close(fd);
        return US_EFORMAT;
    }
    uint8_t *buf = malloc(size);
    if (!buf) {
        close(fd);
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    int r = read_all(fd, buf, size);
    int e = errno;
    close(fd);
    if (r != 0) {
        free(buf);
        if (r < 0)
            errno = e;
        set_err(err, errlen, "userstate: cannot read %s: %s", st->path, r < 0 ? strerror(e) : "file shrank");
        return r < 0 ? US_EIO : US_EFORMAT;
    }
    if (memcmp(buf, US_MAGIC, 4) != 0 || buf[4] < 1 || buf[4] > US_VERSION) {
        set_err(err, errlen, "userstate: %s: %s", st->path,
                memcmp(buf, US_MAGIC, 4) != 0 ? "not a postern state file" : "unsupported version");
        free(buf);
        return US_EFORMAT;
    }
    uint8_t ad[US_AD_BYTES];
    make_ad(st, buf[4], ad);
    size_t plen = size - US_HEADER_BYTES - US_MAC_BYTES;
    uint8_t *plain = sodium_malloc(plen ? plen : 1);
    if (!plain) {
        free(buf);
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    unsigned long long got;
    int rc = US_OK;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &got, NULL, buf + US_HEADER_BYTES, size - US_HEADER_BYTES,
                                                   ad, sizeof ad, buf + 5, st->key) != 0) {
        set_err(err, errlen, "userstate: %s does not open (wrong key, tampered with, truncated, or another user's)",
                st->path);
        rc = US_EAUTH;
    } else if ((rc = us_parse(st, plain, plen, buf[4])) != US_OK) {
        set_err(err, errlen, "userstate: %s: %s", st->path,
                rc == US_ENOMEM ? "out of memory" : "contents are malformed");
    }
    sodium_free(plain);
    free(buf);
    st->dirty = 0;
    return rc;
}

static int replace_file(const char *dir, const char *path, const uint8_t *data, size_t len, char *err,
                        size_t errlen);

/* No v2 file: a v1 file of the address is this key's state from before v2 names (loaded,
 * written under the v2 name, removed), or a previous key's (the address was deleted and
 * added again): nobody can open that one any more; it is renamed to .stale and the state
 * starts empty, with a warning for the log. */
static int migrate_legacy(userstate *st, const char *state_dir, const char *address, char *err, size_t errlen)
{
    uint8_t hash[US_NAME_HASH_BYTES], v2_hash[US_NAME_HASH_BYTES];
    char *dir, *legacy;
    int rc = locate(state_dir, address, NULL, hash, &dir, &legacy, err, errlen);
    if (rc != US_OK)
        return rc;
    free(dir);
    char *v2_path = st->path;
    memcpy(v2_hash, st->name_hash, sizeof v2_hash);
    memcpy(st->name_hash, hash, sizeof hash); /* the v1 file's associated data */
    st->path = legacy;
    int found;
    char why[512];
    rc = load(st, &found, why, sizeof why);
    st->path = v2_path;
    memcpy(st->name_hash, v2_hash, sizeof v2_hash);
    if (rc == US_OK && found) {
        st->dirty = 1;
        rc = userstate_save(st, err, errlen);
        if (rc == US_OK)
            unlink(legacy);
    } else if (rc == US_EAUTH) { /* nothing was parsed: st is still empty */
        char *stale = join(legacy, ".stale", "");
        if (!stale || rename(legacy, stale) != 0) {
            set_err(err, errlen, "userstate: cannot rename %s out of the way: %s", legacy,
                    stale ? strerror(errno) : "out of memory");
            rc = US_EIO;
        } else {
            snprintf(st->warning, sizeof st->warning,
                     "an old state file of this address does not open with its current key (the address was "
                     "deleted and added again?); kept as %s, starting with an empty state",
                     stale);
            rc = US_OK;
        }
        free(stale);
    } else if (rc != US_OK) {
        set_err(err, errlen, "%s", why);
    }
    free(legacy);
    return rc;
}

const char *userstate_warning(const userstate *st)
{
    return st && st->warning[0] ? st->warning : NULL;
}

int userstate_open(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES],
                   userstate **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!out || !state_key) {
        set_err(err, errlen, "userstate: no key or result pointer");
        return US_EINVAL;
    }
    userstate *st = sodium_init() < 0 ? NULL : us_new();
    if (!st) {
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    int rc = locate(state_dir, address, state_key, st->name_hash, &st->dir, &st->path, err, errlen);
    if (rc == US_OK) {
        st->key = sodium_malloc(US_KEY_BYTES);
        if (!st->key) {
            set_err(err, errlen, "userstate: out of memory");
            rc = US_ENOMEM;
        }
    }
    int found = 0;
    if (rc == US_OK) {
        memcpy(st->key, state_key, US_KEY_BYTES);
        rc = load(st, &found, err, errlen);
    }
    if (rc == US_OK && !found)
        rc = migrate_legacy(st, state_dir, address, err, errlen);
    if (rc != US_OK) {
        us_free(st);
        return rc;
    }
    *out = st;
    return US_OK;
}

void userstate_close(userstate *st)
{
    us_free(st);
}

/* A rename is durable only once the directory holding it is. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return chmod(dir, 0700); /* whatever the umask */
    return errno == EEXIST ? 0 : -1;
}

/* Writes file bytes to path via path.tmp. The temp name is fixed: one process owns a
 * user's state and writes it from one place at a time (the gateway holds the account while
 * a write is in flight), and a temp left by a crash is simply overwritten by the next save. */
static int replace_file(const char *dir, const char *path, const uint8_t *data, size_t len, char *err,
                        size_t errlen)
{
    char *tmp = join(path, ".tmp", "");
    if (!tmp) {
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    const char *step = "create";
    int fd = -1;
    if (ensure_dir(dir) != 0) {
        step = "create the directory for";
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    step = "write";
    if (fchmod(fd, 0600) != 0 || pu_write_all(fd, data, len) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "close";
    int c = close(fd);
    fd = -1;
    if (c != 0)
        goto fail;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    free(tmp);
    if (fsync_dir(dir) != 0) {
        set_err(err, errlen, "userstate: cannot fsync %s: %s", dir, strerror(errno));
        return US_EIO;
    }
    return US_OK;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    set_err(err, errlen, "userstate: cannot %s %s: %s", step, tmp, strerror(e));
    free(tmp);
    errno = e;
    return US_EIO;
}

struct userstate_sealed {
    char *dir, *path;
    uint8_t *file; /* ciphertext: the file's bytes */
    size_t len;
};

void userstate_sealed_free(userstate_sealed *s)
{
    if (!s)
        return;
    free(s->dir);
    free(s->path);
    free(s->file);
    free(s);
}

int userstate_seal(userstate *st, userstate_sealed **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!st || !st->path || !st->key) {
        set_err(err, errlen, "userstate: not a state opened from a file");
        return US_EINVAL;
    }
    if (!st->dirty)
        return US_OK;
    size_t plen = us_serialized_size(st);
    if (plen > US_FILE_MAX - US_HEADER_BYTES - US_MAC_BYTES) {
        set_err(err, errlen, "userstate: the state would exceed %llu bytes", (unsigned long long)US_FILE_MAX);
        return US_ELIMIT; /* a file that big could never be loaded again */
    }
    userstate_sealed *s = calloc(1, sizeof *s);
    uint8_t *plain = sodium_malloc(plen ? plen : 1);
    if (s) {
        s->len = US_HEADER_BYTES + plen + US_MAC_BYTES;
        s->file = malloc(s->len);
        s->dir = join(st->dir, "", "");
        s->path = join(st->path, "", "");
    }
    if (!s || !plain || !s->file || !s->dir || !s->path) {
        if (plain)
            sodium_free(plain);
        userstate_sealed_free(s);
        set_err(err, errlen, "userstate: out of memory");
        return US_ENOMEM;
    }
    us_serialize(st, plain);
    memcpy(s->file, US_MAGIC, 4);
    s->file[4] = US_VERSION;
    randombytes_buf(s->file + 5, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES); /* fresh every save */
    uint8_t ad[US_AD_BYTES];
    make_ad(st, US_VERSION, ad);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(s->file + US_HEADER_BYTES, &clen, plain, plen, ad, sizeof ad, NULL,
                                               s->file + 5, st->key);
    sodium_free(plain);
    st->dirty = 0; /* as of this snapshot; a failed write marks it dirty again */
    *out = s;
    return US_OK;
}

int userstate_sealed_write(const userstate_sealed *s, char *err, size_t errlen)
{
    return replace_file(s->dir, s->path, s->file, s->len, err, errlen);
}

void userstate_mark_dirty(userstate *st)
{
    if (st)
        st->dirty = 1;
}

int userstate_save(userstate *st, char *err, size_t errlen)
{
    userstate_sealed *s = NULL;
    int rc = userstate_seal(st, &s, err, errlen);
    if (rc != US_OK || !s)
        return rc;
    rc = userstate_sealed_write(s, err, errlen);
    userstate_sealed_free(s);
    if (rc != US_OK)
        st->dirty = 1; /* a later save tries again */
    return rc;
}

int userstate_reset(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES], char *err,
                    size_t errlen)
{
    uint8_t hash[US_NAME_HASH_BYTES];
    char *dir, *path;
    int rc = locate(state_dir, address, state_key, hash, &dir, &path, err, errlen);
    if (rc != US_OK)
        return rc;
    char *tmp = join(path, ".tmp", "");
    if (!tmp) {
        rc = US_ENOMEM;
        set_err(err, errlen, "userstate: out of memory");
    } else if (unlink(path) != 0 && errno != ENOENT) {
        rc = US_EIO;
        set_err(err, errlen, "userstate: cannot delete %s: %s", path, strerror(errno));
    } else {
        unlink(tmp); /* a crashed save's leftover, if any */
        if (fsync_dir(dir) != 0 && errno != ENOENT) {
            rc = US_EIO;
            set_err(err, errlen, "userstate: cannot fsync %s: %s", dir, strerror(errno));
        }
    }
    free(tmp);
    free(dir);
    free(path);
    return rc;
}
