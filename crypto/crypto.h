/* crypto: postern's key records and message envelopes (docs/formats.md, sections 2-4).
 * libsodium only. Secret buffers passed in or out are the caller's to wipe; everything this
 * module allocates for secrets is sodium_malloc'd and wiped on free. */
#ifndef POSTERN_CRYPTO_H
#define POSTERN_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

enum pc_status {
    PC_OK = 0,
    PC_EFORMAT,    /* malformed or unsupported bytes */
    PC_ESIG,       /* signature missing, forged, or by an unknown authority */
    PC_EADDR,      /* record is for another address */
    PC_EPASS,      /* wrong password (the wrapped key did not open) */
    PC_ENOMEM,     /* out of memory (also: Argon2id could not get its memory) */
    PC_EAUTH,      /* ciphertext tampered with */
    PC_ETRUNC,     /* ciphertext truncated */
    PC_EKEY,       /* sealed to another key */
    PC_ESINK,      /* the output callback failed */
    PC_EINVAL,     /* bad argument */
};
const char *pc_strerror(int status);

/* sodium_init(); returns PC_OK or PC_ENOMEM. Safe to call more than once. */
int pc_init(void);

/* ---- authority (Ed25519) ---- */
#define PC_AUTH_PK_BYTES 32
#define PC_AUTH_SEED_BYTES 32
#define PC_AUTH_SK_BYTES 64
#define PC_AUTH_KEYID_BYTES 8

/* New key pair: sk (64 bytes) should be sodium_malloc'd by the caller. */
int pc_authority_generate(uint8_t pk[PC_AUTH_PK_BYTES], uint8_t sk[PC_AUTH_SK_BYTES]);
/* Text lines of docs/formats.md section 4 (no newline); out needs >= 80 bytes. */
int pc_authority_pk_format(const uint8_t pk[PC_AUTH_PK_BYTES], char *out, size_t cap);
int pc_authority_pk_parse(const char *line, uint8_t pk[PC_AUTH_PK_BYTES]);
int pc_authority_sk_format(const uint8_t sk[PC_AUTH_SK_BYTES], char *out, size_t cap);
/* Rebuilds the 64-byte secret key (and the public key, if pk != NULL) from the seed line. */
int pc_authority_sk_parse(const char *line, uint8_t sk[PC_AUTH_SK_BYTES], uint8_t pk[PC_AUTH_PK_BYTES]);
void pc_authority_keyid(const uint8_t pk[PC_AUTH_PK_BYTES], uint8_t id[PC_AUTH_KEYID_BYTES]);
/* RFC 8315 cancel key for an article, derived from the authority seed; out gets base64 text,
 * cap >= 48. lock gets "sha256:<base64(SHA-256(cancel key))>" for the Cancel-Lock header. */
int pc_cancel_key(const uint8_t sk[PC_AUTH_SK_BYTES], const char *message_id, char *key, size_t keycap,
                  char *lock, size_t lockcap);

/* ---- user key records ---- */
#define PC_BOX_PK_BYTES 32
#define PC_BOX_SK_BYTES 32
#define PC_KEYID_BYTES 16
#define PC_SALT_BYTES 16
#define PC_ADDRESS_MAX 254
#define PC_KEYRECORD_MAX (244 + PC_ADDRESS_MAX)

typedef struct pc_keyrecord {
    char address[PC_ADDRESS_MAX + 1];
    uint8_t key_id[PC_KEYID_BYTES];
    uint32_t serial;
    uint64_t created;
    uint8_t box_pk[PC_BOX_PK_BYTES];
    uint64_t opslimit;
    uint64_t memlimit;
    uint8_t salt[PC_SALT_BYTES];
    uint8_t nonce[24];
    uint8_t wrapped_sk[48];
    uint8_t authority_id[PC_AUTH_KEYID_BYTES];
    uint8_t sig[64];
} pc_keyrecord;

/* Generates a user key pair, wraps the secret key under the password (Argon2id with the given
 * limits; pass 0, 0 for libsodium's INTERACTIVE), serial 1, created = now, and signs the
 * record with the authority key. sk_out (may be NULL) receives the secret key. */
int pc_keyrecord_create(const char *address, const char *password, size_t password_len,
                        uint64_t opslimit, uint64_t memlimit, const uint8_t authority_sk[PC_AUTH_SK_BYTES],
                        pc_keyrecord *rec, uint8_t sk_out[PC_BOX_SK_BYTES]);
/* Re-wraps the same key pair under a new password (fresh salt and nonce), serial + 1,
 * created = now, re-signed. sk must be the record's secret key (from pc_keyrecord_unlock). */
int pc_keyrecord_rewrap(pc_keyrecord *rec, const uint8_t sk[PC_BOX_SK_BYTES], const char *password,
                        size_t password_len, uint64_t opslimit, uint64_t memlimit,
                        const uint8_t authority_sk[PC_AUTH_SK_BYTES]);
/* Signs the record with another authority key (a rotation): authority id and signature
 * change, nothing else, so the same password opens it. */
int pc_keyrecord_resign(pc_keyrecord *rec, const uint8_t authority_sk[PC_AUTH_SK_BYTES]);
/* Serialises to the binary format; returns the length written, 0 if cap is too small. */
size_t pc_keyrecord_encode(const pc_keyrecord *rec, uint8_t *out, size_t cap);
/* Parses the binary format (no signature check): PC_OK or PC_EFORMAT. */
int pc_keyrecord_decode(const uint8_t *in, size_t len, pc_keyrecord *rec);
/* Checks the signature against one of n authority public keys and that the record is for
 * expected_address (canonical form): PC_OK, PC_ESIG, PC_EADDR or PC_EFORMAT. */
int pc_keyrecord_verify(const pc_keyrecord *rec, const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES],
                        size_t n_authorities, const char *expected_address);
/* Derives the wrapping key and opens the secret key: PC_OK, PC_EPASS or PC_ENOMEM.
 * Does not verify the signature: call pc_keyrecord_verify first. */
int pc_keyrecord_unlock(const pc_keyrecord *rec, const char *password, size_t password_len,
                        uint8_t sk_out[PC_BOX_SK_BYTES]);

/* ---- writers: the hosts that post mail, certified by the authority (writer.c,
 * docs/formats.md section 4a) ---- */
#define PC_WRITER_CERT_BYTES 160
#define PC_WRITER_PK_BYTES 32
#define PC_WRITER_SK_BYTES 64
#define PC_WRITER_NAME_MAX 32
#define PC_WRITER_ID_TEXT 17 /* 16 hex digits and NUL */
#define PC_WRITER_FILE_MAX 320
enum { PC_ROLE_DELIVERY = 1, PC_ROLE_GATEWAY = 2 };

typedef struct pc_writer_cert {
    int role;
    uint8_t pk[PC_WRITER_PK_BYTES];
    int64_t not_before, not_after; /* Unix seconds: the arrival times it may sign */
    char name[PC_WRITER_NAME_MAX + 1];
    char id[PC_WRITER_ID_TEXT]; /* hex of BLAKE2b-8(pk): what a revocation names */
} pc_writer_cert;

/* A new writer key pair and its certificate, signed by the authority. name: 1..32 visible
 * ASCII characters (the host, for logs). */
int pc_writer_issue(const uint8_t authority_sk[PC_AUTH_SK_BYTES], const char *name, int role, int64_t not_before,
                    int64_t not_after, uint8_t cert[PC_WRITER_CERT_BYTES], uint8_t sk[PC_WRITER_SK_BYTES]);
/* PC_OK and out filled if the certificate is well formed and signed by one of the
 * authorities; PC_EFORMAT, PC_ESIG. */
int pc_writer_cert_verify(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES],
                          size_t n_authorities, pc_writer_cert *out);
void pc_writer_id(const uint8_t pk[PC_WRITER_PK_BYTES], char out[PC_WRITER_ID_TEXT]);
/* Whether a verified writer may have written mail that arrived at `arrival`: not revoked
 * (ids as pc_writer_id gives them) and, for a delivery host, inside its validity (a
 * gateway seals the date an APPEND gave). PC_OK or PC_ESIG. */
int pc_writer_allows(const pc_writer_cert *w, int64_t arrival, const char (*revoked)[PC_WRITER_ID_TEXT],
                     size_t n_revoked);
/* The writer key file: two text lines (certificate, secret seed); out needs
 * PC_WRITER_FILE_MAX. parse: PC_OK, PC_EFORMAT, or PC_EKEY (the seed is not the
 * certificate's key; sk is zeroed on failure). Does not check the authority's signature. */
int pc_writer_format(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t sk[PC_WRITER_SK_BYTES], char *out,
                     size_t cap);
int pc_writer_parse(const char *text, uint8_t cert[PC_WRITER_CERT_BYTES], uint8_t sk[PC_WRITER_SK_BYTES]);

/* ---- message envelopes ---- */
#define PC_MSG_PREFIX_BYTES 196 /* magic .. secretstream header: everything before the chunks */
#define PC_TAG_BYTES 32
#define PC_DELIVERY_SECRET_BYTES 32

typedef int (*pc_sink_fn)(void *arg, const uint8_t *data, size_t len); /* 0 = ok */

typedef struct pc_msg_meta {
    int64_t arrival;        /* Unix seconds */
    int16_t tz_minutes;     /* arrival zone, minutes east of UTC */
    uint64_t raw_size;      /* R */
    uint64_t crlf_size;     /* N */
    uint64_t padded_size;   /* P */
    uint8_t tag[PC_TAG_BYTES];
} pc_msg_meta;

uint64_t pc_padme(uint64_t len);
/* Streaming size of the binary envelope for a padded size P (prefix + all chunks). */
uint64_t pc_envelope_size(uint64_t padded_size);
/* BLAKE2b-32 content hash is computed by pc_seal; this turns it into the message tag. The
 * recipient's key id is in it: a message sealed to another key pair of the address (after
 * user del + user add) is another article, never a "duplicate" of one INN remembers. */
void pc_message_tag(const uint8_t delivery_secret[PC_DELIVERY_SECRET_BYTES], const char *address,
                    const uint8_t key_id[PC_KEYID_BYTES], const uint8_t content_hash[32], uint8_t tag[PC_TAG_BYTES]);

typedef struct pc_seal pc_seal;
/* Starts sealing to a recipient; the stream's chunks go to sink as they are produced,
 * so memory stays at about two chunks whatever the message size. */
pc_seal *pc_seal_begin(const uint8_t box_pk[PC_BOX_PK_BYTES], const uint8_t key_id[PC_KEYID_BYTES],
                       int64_t arrival, int16_t tz_minutes, pc_sink_fn sink, void *arg);
int pc_seal_update(pc_seal *s, const uint8_t *plain, size_t len);
/* Pads, writes the final chunk, and hands back the content hash (BLAKE2b-32 of the raw
 * message) and the sizes. */
int pc_seal_finish(pc_seal *s, uint8_t content_hash[32], pc_msg_meta *meta);
/* After finish: the 196-byte prefix, which goes BEFORE the chunks in the envelope. */
int pc_seal_prefix(pc_seal *s, const uint8_t tag[PC_TAG_BYTES], uint8_t prefix[PC_MSG_PREFIX_BYTES]);
/* After finish: BLAKE2b-32 of every stream chunk as written (what a signature covers). */
int pc_seal_chunks_hash(const pc_seal *s, uint8_t out[32]);
void pc_seal_free(pc_seal *s);

/* A version-2 envelope ends in a trailer: the writer's certificate and its signature over
 * the group, the Message-ID, the prefix, the chunks' hash and the certificate. */
#define PC_MAIL_TRAILER_BYTES (PC_WRITER_CERT_BYTES + 64)
int pc_mail_sign(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t sk[PC_WRITER_SK_BYTES], const char *group,
                 const char *msgid, const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t chunks_hash[32],
                 uint8_t trailer[PC_MAIL_TRAILER_BYTES]);
/* PC_OK and who filled if the trailer's certificate is the authority's and its signature
 * holds for this group and Message-ID; PC_ESIG otherwise (also for a version-1 envelope,
 * which has none); who is meaningful only on PC_OK. The caller then asks pc_writer_allows
 * about the sealed arrival time. */
int pc_mail_verify(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t chunks_hash[32],
                   const uint8_t trailer[PC_MAIL_TRAILER_BYTES], const char *group, const char *msgid,
                   const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES], size_t n_authorities, pc_writer_cert *who);
/* The same for a whole envelope in memory (PC_ETRUNC if too short for a trailer). */
int pc_envelope_verify(const uint8_t *envelope, size_t len, const char *group, const char *msgid,
                       const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES], size_t n_authorities, pc_writer_cert *who);

typedef struct pc_open pc_open;
/* Opens the prefix with the recipient's key pair: meta is filled in. Errors: PC_EFORMAT,
 * PC_EKEY (other key id, or the sealed box does not open), PC_ENOMEM. */
pc_open *pc_open_begin(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t box_pk[PC_BOX_PK_BYTES],
                       const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta, pc_sink_fn sink,
                       void *arg, int *status);
/* Feeds ciphertext in any slicing; raw message bytes (no padding) go to sink. */
int pc_open_update(pc_open *o, const uint8_t *cipher, size_t len);
/* PC_OK only if the final chunk was seen and the sizes add up (and, for a version-2
 * envelope, its whole trailer); PC_ETRUNC otherwise. */
int pc_open_finish(pc_open *o);
/* After a finish that returned PC_OK: the chunks' hash and the trailer, for pc_mail_verify;
 * PC_ESIG for a version-1 envelope. */
int pc_open_signed_parts(const pc_open *o, uint8_t chunks_hash[32], uint8_t trailer[PC_MAIL_TRAILER_BYTES]);
void pc_open_free(pc_open *o);
/* Split opening, for a process that holds the private key (the gateway's vault) and one that
 * decrypts the stream (its network process):
 * pc_envelope_open_meta opens only the sealed metadata of a prefix, fills meta and hands back
 * the message's secretstream key (a secret: wipe it). Errors as pc_open_begin.
 * pc_open_begin_key starts an opener from that key and meta (only raw_size and padded_size are
 * used; they must be consistent, else PC_EINVAL) without the private key. A wrong key shows up
 * as PC_EAUTH from pc_open_update. pc_open_begin is exactly these two calls. */
#define PC_STREAM_KEY_BYTES 32
int pc_envelope_open_meta(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t box_pk[PC_BOX_PK_BYTES],
                          const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta,
                          uint8_t stream_key[PC_STREAM_KEY_BYTES]);
pc_open *pc_open_begin_key(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t stream_key[PC_STREAM_KEY_BYTES],
                           const pc_msg_meta *meta, pc_sink_fn sink, void *arg, int *status);
/* Reads only the key id from a prefix (no key needed): PC_OK or PC_EFORMAT. */
int pc_envelope_key_id(const uint8_t *prefix, size_t len, uint8_t key_id[PC_KEYID_BYTES]);

/* ---- RFC 8315 Cancel-Lock of a mail article (cancel.c, docs/formats.md section 3) ---- */
#define PC_CANCEL_KEY_BYTES 32
#define PC_CANCEL_TEXT_MAX 64 /* "sha256:" and 44 base64 characters, with NUL */
/* The owner's key: from the message's stream key, which only the recipient's vault unseals.
 * The admin's: from the delivery secret. */
void pc_cancel_owner_key(const uint8_t stream_key[PC_STREAM_KEY_BYTES], const char *msgid,
                         uint8_t out[PC_CANCEL_KEY_BYTES]);
void pc_cancel_admin_key(const uint8_t delivery_secret[PC_DELIVERY_SECRET_BYTES], const char *msgid,
                         uint8_t out[PC_CANCEL_KEY_BYTES]);
/* "sha256:<c-key>" for a cancel's Cancel-Key header (a secret until it is posted), and
 * "sha256:<c-lock>" for the article's Cancel-Lock: c-key = base64(K), c-lock =
 * base64(SHA-256(c-key)) (RFC 8315 section 4). */
void pc_cancel_key_text(const uint8_t key[PC_CANCEL_KEY_BYTES], char out[PC_CANCEL_TEXT_MAX]);
void pc_cancel_lock_text(const uint8_t key[PC_CANCEL_KEY_BYTES], char out[PC_CANCEL_TEXT_MAX]);
/* After pc_seal_finish: the owner's cancel key of the sealed message, named msgid. */
int pc_seal_cancel_key(const pc_seal *s, const char *msgid, uint8_t out[PC_CANCEL_KEY_BYTES]);

/* ---- base64 article bodies: 76-character lines (docs/formats.md) ---- */
typedef struct pc_armor pc_armor;
/* Encoder: binary in, text lines ending in CRLF out. */
pc_armor *pc_armor_encoder(pc_sink_fn sink, void *arg);
/* Decoder: text in (any slicing, CRLF or LF, blank lines ignored), binary out. */
pc_armor *pc_armor_decoder(pc_sink_fn sink, void *arg);
int pc_armor_update(pc_armor *a, const uint8_t *in, size_t len);
int pc_armor_finish(pc_armor *a); /* flushes; PC_EFORMAT on bad base64 */
void pc_armor_free(pc_armor *a);
uint64_t pc_armor_encoded_size(uint64_t binary_len); /* with CRLF line ends */

#endif
