"""The tricky-message corpus (tests/data/mime/, see DOVECOT.md there) through the whole chain:
`postern deliver` -> INN -> the gateway -> IMAP FETCH.

The corpus holds the shapes an MTA accepts and a failover store must keep: no header at all,
bare LF, bare CR, mixed line ends, NUL, raw 8-bit, over-long lines, the empty message. Each is
delivered (`deliver` refuses nothing but size) and served in its IMAP form (served() below:
bare LF -> CRLF, NUL -> 0x80 as Dovecot does, a CRLF added when the message does not end in
one; docs/formats.md section 3).

For every corpus message:
- BODY[] is the served form byte for byte, RFC822.SIZE is its length, HEADER + TEXT is it;
- POP3 LIST gives the same size and RETR the same bytes (dot-stuffing undone);
- ENVELOPE and BODYSTRUCTURE are byte-identical to NAME.envelope / NAME.bodystructure (the
  values the mime module's writers must produce, checked against Dovecot);
- BODY is BODYSTRUCTURE without extension data;
- every section (each part, its MIME header, HEADER/TEXT/HEADER.FIELDS of each message/rfc822
  part, and parts inside those) equals what an independent RFC 2046 splitter below cuts out
  of the raw message, and leaf sizes and line counts in BODYSTRUCTURE match those bytes;
- every FETCH response parses (imaplib, and a strict RFC 3501 parser below: balanced lists,
  quoted strings 7-bit without CR/LF, literal lengths exact).

All corpus mail is delivered before the gateway's first login (see test_imap_clients.py's
docstring for why)."""
import email.parser
import email.policy
import imaplib
import poplib
import re
from pathlib import Path

import time

import pytest

from conftest import _free_port
from imapdate import imap_date_time

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mime"
NAMES = sorted(p.stem for p in CORPUS.glob("*.eml"))
USER = "corpus.reader@example.org"
PASSWORD = "corpus password 3"
MBOX_FROM = {"blank_first"}


def served(raw):
    """What IMAP BODY[] and POP3 RETR serve for the raw message (docs/formats.md section 3)."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", raw).replace(b"\0", b"\x80")
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


# ------------------------------------------------------------------ strict response parser

class ParseError(Exception):
    pass


class Lit(bytes):
    """A string that came as a literal (kept apart only to tell it from a quoted string)."""


def parse_value(buf, pos):
    """One RFC 3501 value at buf[pos:] -> (value, end). Lists are Python lists, NIL is None,
    numbers are ints, strings bytes."""
    c = buf[pos:pos + 1]
    if c == b"(":
        out, pos = [], pos + 1
        while True:
            if buf[pos:pos + 1] == b")":
                return out, pos + 1
            if out:
                # list elements are separated by SP, except that bodies of a multipart and
                # addresses of an address list follow each other directly: ")("
                if buf[pos:pos + 1] == b"(" and isinstance(out[-1], list):
                    pass
                elif buf[pos:pos + 1] != b" ":
                    raise ParseError("expected SP or ) at %d: %r" % (pos, buf[pos:pos + 40]))
                else:
                    pos += 1
            v, pos = parse_value(buf, pos)
            out.append(v)
    if c == b'"':
        out, pos = bytearray(), pos + 1
        while True:
            ch = buf[pos:pos + 1]
            if not ch:
                raise ParseError("unterminated quoted string")
            if ch == b'"':
                return bytes(out), pos + 1
            if ch == b"\\":
                nxt = buf[pos + 1:pos + 2]
                if nxt not in (b'"', b"\\"):
                    raise ParseError("bad escape %r at %d" % (nxt, pos))
                out += nxt
                pos += 2
                continue
            if ch in (b"\r", b"\n", b"\0") or ch[0] > 0x7F:
                raise ParseError("quoted string holds %r at %d (must be a literal)" % (ch, pos))
            out += ch
            pos += 1
    if c == b"{":
        m = re.compile(rb"\{(\d+)\}\r\n").match(buf, pos)
        if not m:
            raise ParseError("bad literal at %d: %r" % (pos, buf[pos:pos + 20]))
        n = int(m.group(1))
        if m.end() + n > len(buf):
            raise ParseError("literal of %d runs past the response" % n)
        return Lit(buf[m.end():m.end() + n]), m.end() + n
    # an atom, or a flag (\Seen, \Recent: flag-fetch, RFC 3501 section 9)
    m = re.compile(rb"\\?[^\s()\"{}\[\]%*\\]+").match(buf, pos)
    if not m:
        raise ParseError("unexpected %r at %d" % (buf[pos:pos + 20], pos))
    atom = m.group(0)
    if atom == b"NIL":
        return None, m.end()
    if atom.isdigit():
        return int(atom), m.end()
    return atom, m.end()


def parse_fetch(buf):
    """'N (KEY value KEY value ...)' -> (N, {KEY: (value, (start, end))})."""
    m = re.match(rb"(\d+) \(", buf)
    if not m:
        raise ParseError("not a FETCH response: %r" % buf[:60])
    pos, items = m.end(), {}
    while True:
        if buf[pos:pos + 1] == b")":
            pos += 1
            break
        if items:
            if buf[pos:pos + 1] != b" ":
                raise ParseError("expected SP at %d: %r" % (pos, buf[pos:pos + 40]))
            pos += 1
        k = re.compile(rb"[A-Z0-9.]+(\[[^\]]*\](<\d+>)?)?").match(buf, pos)
        if not k or buf[k.end():k.end() + 1] != b" ":
            raise ParseError("bad item name at %d: %r" % (pos, buf[pos:pos + 40]))
        key, pos = k.group(0).decode(), k.end() + 1
        start = pos
        val, pos = parse_value(buf, pos)
        if key in items:
            raise ParseError("item %s twice" % key)
        items[key] = (val, (start, pos))
    if pos != len(buf):
        raise ParseError("trailing data %r" % buf[pos:pos + 40])
    return int(m.group(1)), items


def raw_fetch_responses(data):
    """imaplib's FETCH data -> the raw responses (literals put back in place)."""
    out, cur = [], None
    for d in data:
        if d is None:
            continue
        if isinstance(d, tuple):
            head, lit = d
            if cur is None or re.match(rb"\d+ \(", head):
                if cur is not None:
                    out.append(cur)
                cur = b""
            cur += head + b"\r\n" + lit
        else:
            if cur is None or re.match(rb"\d+ \(", d):
                if cur is not None:
                    out.append(cur)
                cur = b""
            cur += d
    if cur is not None:
        out.append(cur)
    return out


# ------------------------------------------------------------- BODYSTRUCTURE as a tree

def is_multipart(body):
    return isinstance(body, list) and body and isinstance(body[0], list)


def first_non_list(body):
    for i, x in enumerate(body):
        if not isinstance(x, list):
            return i
    return len(body)


def bs_children(body):
    return body[:first_non_list(body)]


def bs_type(body):
    if is_multipart(body):
        return "multipart/" + body[first_non_list(body)].decode().lower()
    return ("%s/%s" % (body[0].decode(), body[1].decode())).lower()


def strip_ext(body):
    """BODYSTRUCTURE -> BODY: extension data dropped (RFC 3501 body-type-* without body-ext-*)."""
    if is_multipart(body):
        k = first_non_list(body)
        return [strip_ext(p) for p in body[:k]] + [body[k]]
    t = bs_type(body)
    if t == "message/rfc822":
        return body[:7] + [body[7], strip_ext(body[8]), body[9]]
    if t.startswith("text/"):
        return body[:8]
    return body[:7]


# --------------------------------------------------------- an independent RFC 2046 splitter

HP = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def split_header(entity):
    """(header including the empty line, body). No empty line: all of it is header."""
    if entity.startswith(b"\r\n"):
        return b"\r\n", entity[2:]
    i = entity.find(b"\r\n\r\n")
    if i < 0:
        return entity, b""
    return entity[:i + 4], entity[i + 4:]


def content_type(header, default):
    msg = HP.parsebytes(header)
    if default != "text/plain":
        msg.set_default_type(default)
    ct = msg.get_content_type()
    if msg.get("Content-Type") is not None and not re.fullmatch(r"[^/\s]+/[^/\s]+", ct):
        ct = "text/plain"  # RFC 2045 5.2: an invalid Content-Type means the default
    return ct, msg.get_param("boundary")


def split_multipart(body, boundary):
    """The parts between delimiter lines; the CRLF before a delimiter belongs to it; a part
    cut off by the end of the message runs to the end."""
    dash = b"--" + boundary.encode()
    delims = []
    starts = [0] + [m.end() for m in re.finditer(rb"\r\n", body)]
    for s in starts:
        if not body.startswith(dash, s):
            continue
        e = body.find(b"\r\n", s)
        line_end, after = (len(body), len(body)) if e < 0 else (e, e + 2)
        rest = body[s + len(dash):line_end]
        close = rest.startswith(b"--")
        if close:
            rest = rest[2:]
        if rest.strip(b" \t"):
            continue  # "--boundaryX": not a delimiter
        delims.append((s, after, close))
    parts = []
    for k, (s, after, close) in enumerate(delims):
        if close:
            break
        if k + 1 < len(delims):
            nxt = delims[k + 1][0]
            parts.append(body[after:max(after, nxt - 2)])
        else:
            parts.append(body[after:])
    return parts


class Entity:
    """A MIME entity cut out of the raw bytes: header, body, type and sub-entities."""

    def __init__(self, raw, default="text/plain"):
        self.raw = raw
        self.header, self.body = split_header(raw)
        self.type, boundary = content_type(self.header, default)
        self.parts, self.inner = [], None
        if self.type.startswith("multipart/"):
            child_default = "message/rfc822" if self.type == "multipart/digest" else "text/plain"
            if boundary:
                self.parts = [Entity(p, child_default) for p in split_multipart(self.body, boundary)]
        elif self.type == "message/rfc822":
            self.inner = Entity(self.body)


def header_fields(header, names, negate=False):
    """HEADER.FIELDS[.NOT]: the matching fields in header order (with their continuation
    lines), then an empty line."""
    lines = header.split(b"\r\n")
    fields, cur = [], None
    for ln in lines:
        if ln[:1] in (b" ", b"\t") and cur is not None:
            cur.append(ln)
        elif ln:
            cur = [ln]
            fields.append(cur)
        else:
            cur = None
    want = {n.lower() for n in names}
    out = b""
    for f in fields:
        name = f[0].split(b":", 1)[0].strip().lower().decode(errors="replace")
        if (name in want) != negate:
            out += b"\r\n".join(f) + b"\r\n"
    return out + b"\r\n"


def expected_sections(msg):
    """section spec -> bytes, for the message and every part in it."""
    exp = {"": msg.raw, "HEADER": msg.header, "TEXT": msg.body,
           "HEADER.FIELDS (Subject From)": header_fields(msg.header, ["subject", "from"]),
           "HEADER.FIELDS.NOT (Subject From Received)":
               header_fields(msg.header, ["subject", "from", "received"], negate=True)}

    def message_children(m, prefix):
        if m.type.startswith("multipart/"):
            for i, p in enumerate(m.parts, 1):
                part(p, prefix + str(i))
            exp[prefix + str(len(m.parts) + 1)] = b""  # no such part: served empty
        else:
            exp[prefix + "1"] = m.body
            if m.type == "message/rfc822":
                sub = m.inner
                exp[prefix + "1.HEADER"] = sub.header
                exp[prefix + "1.TEXT"] = sub.body
            exp[prefix + "2"] = b""

    def part(p, path):
        exp[path] = p.body
        exp[path + ".MIME"] = p.header
        if p.type.startswith("multipart/"):
            for i, c in enumerate(p.parts, 1):
                part(c, "%s.%d" % (path, i))
        elif p.type == "message/rfc822":
            m = p.inner
            exp[path + ".HEADER"] = m.header
            exp[path + ".TEXT"] = m.body
            exp[path + ".HEADER.FIELDS (Subject)"] = header_fields(m.header, ["subject"])
            message_children(m, path + ".")
        else:
            exp[path + ".TEXT"] = b""    # HEADER/TEXT only exist for message parts
            exp[path + ".HEADER"] = b""

    message_children(msg, "")
    if not msg.type.startswith("multipart/"):
        exp["1.MIME"] = msg.header  # a single-part message's part 1: its header (as Dovecot)
    return exp


def compare_tree(bs, ent, path="", top=True):
    """The gateway's BODYSTRUCTURE has the shape and types the splitter found. Returns the
    leaves (path, body) to check sizes on."""
    leaves = []
    t = bs_type(bs)
    assert t == ent.type, (path, t, ent.type)
    if is_multipart(bs):
        kids = bs_children(bs)
        if not ent.parts:
            # an empty (or boundary-less) multipart shows one empty text/plain part (Dovecot)
            assert len(kids) == 1 and bs_type(kids[0]) == "text/plain" and kids[0][6] == 0, bs
            return leaves
        assert len(kids) == len(ent.parts), (path, len(kids), len(ent.parts))
        for i, (k, e) in enumerate(zip(kids, ent.parts), 1):
            leaves += compare_tree(k, e, "%s%d" % (path + "." if path else "", i), top=False)
        return leaves
    leaves.append((path or "1", bs, ent))
    if t == "message/rfc822" and not top:
        inner_bs, inner = bs[8], ent.inner
        if is_multipart(inner_bs):
            leaves += [x for x in compare_tree(inner_bs, inner, path, top=False)]
        else:
            assert bs_type(inner_bs) == inner.type, (path, bs_type(inner_bs), inner.type)
            leaves.append((path + ".1", inner_bs, None))
    return leaves


# ------------------------------------------------------------------------------- fixtures

corpus_delivered_between = []


@pytest.fixture(scope="module")
def corpus(postern_env):
    r = postern_env(["user", "add", USER, "--password-stdin"], input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    delivered, refused = {}, {}
    start = int(time.time())
    for name in NAMES:
        raw = (CORPUS / (name + ".eml")).read_bytes()
        # imaptest's mailboxes (sort-arrival, thread-orderedsubject ...) are mbox files with
        # header-less messages: delivered with the mbox envelope line, which deliver drops
        envelope = b"From user@domain  Fri Feb 22 00:00:00 2008\n" if name in MBOX_FROM else b""
        r = postern_env(["deliver", "--to", USER], input=envelope + raw)
        if r.returncode == 0:
            delivered[name] = raw
        else:
            refused[name] = (r.returncode, r.stderr.decode(errors="replace"))
    corpus_delivered_between[:] = [start, int(time.time()) + 1]
    return delivered, refused


@pytest.fixture(scope="module")
def imap(corpus, gateway):
    """One read-only session; name -> UID by comparing BODY[] with the corpus files."""
    delivered, _ = corpus
    c = imaplib.IMAP4_SSL(gateway.addr, gateway.imaps_port, ssl_context=gateway.ssl_context(), timeout=60)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    by_body = {}
    for resp in raw_fetch_responses(data):
        _, items = parse_fetch(resp)
        by_body[bytes(items["BODY[]"][0])] = items["UID"][0]
    uid = {name: by_body.get(served(raw)) for name, raw in delivered.items()}
    c.uid_of = uid
    yield c
    c.logout()


def fetch(c, uid, items):
    typ, data = c.uid("FETCH", str(uid), "(%s)" % " ".join(items))
    assert typ == "OK", (items, data)
    resps = raw_fetch_responses(data)
    assert len(resps) == 1, resps
    n, parsed = parse_fetch(resps[0])
    return resps[0], parsed


# ---------------------------------------------------------------------------------- tests

def test_every_corpus_message_is_delivered(corpus, imap):
    delivered, refused = corpus
    # whatever an MTA accepted is kept: no header, bare CR/LF, NUL, 8-bit, long lines, empty
    assert not refused, refused
    missing = [n for n, u in imap.uid_of.items() if u is None]
    assert not missing, "delivered but not served byte-identically: %s" % missing


@pytest.mark.parametrize("name", NAMES)
def test_corpus_message(corpus, imap, name):
    delivered, refused = corpus
    assert name not in refused, "postern deliver refused it (exit %d): %s" % refused[name]
    raw, uid = served(delivered[name]), imap.uid_of[name]
    assert uid is not None
    c = imap

    resp, it = fetch(c, uid, ["UID", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "FLAGS",
                              "INTERNALDATE", "BODY.PEEK[]", "RFC822.HEADER"])
    assert it["UID"][0] == uid
    body = it["BODY[]"][0]
    assert body == raw
    assert it["RFC822.SIZE"][0] == len(body) == len(raw)
    for item, fname in (("ENVELOPE", "envelope"), ("BODYSTRUCTURE", "bodystructure")):
        want = (CORPUS / ("%s.%s" % (name, fname))).read_bytes()
        s, e = it[item][1]
        assert resp[s:e] == want, "%s %s:\n got  %r\n want %r" % (name, item, resp[s:e], want)
    bs = it["BODYSTRUCTURE"][0]
    assert it["BODY"][0] == strip_ext(bs), (it["BODY"][0], bs)
    start, end = corpus_delivered_between  # any date, any TZ: the instant of delivery
    assert start <= imap_date_time(resp[slice(*it["INTERNALDATE"][1])]) <= end

    ent = Entity(raw)
    assert it["RFC822.HEADER"][0] == ent.header
    leaves = compare_tree(bs, ent)

    exp = expected_sections(ent)
    specs = list(exp)
    got = {}
    for k in range(0, len(specs), 20):
        chunk = specs[k:k + 20]
        _, items = fetch(c, uid, ["BODY.PEEK[%s]" % s for s in chunk])
        for s in chunk:
            key = "BODY[%s]" % s
            assert key in items, (s, list(items))
            got[s] = bytes(items[key][0])
    bad = {s: (got[s], exp[s]) for s in specs if got[s] != exp[s]}
    assert not bad, "%s: sections differ (got, expected):\n%s" % (
        name, "\n".join("  BODY[%s]: %r\n      want %r" % (s, g[:300], w[:300]) for s, (g, w) in bad.items()))

    # leaf sizes and line counts in BODYSTRUCTURE describe the bytes BODY[part] serves
    for path, leaf, _ in leaves:
        data = got.get(path)
        if data is None:
            _, items = fetch(c, uid, ["BODY.PEEK[%s]" % path])
            data = bytes(items["BODY[%s]" % path][0])
        assert leaf[6] == len(data), (name, path, leaf[6], len(data))
        t = bs_type(leaf)
        if t.startswith("text/"):
            assert leaf[7] == data.count(b"\r\n"), (name, path, leaf[7], data)
        elif t == "message/rfc822":
            assert leaf[9] == data.count(b"\r\n"), (name, path, leaf[9], data)

    # partials of the whole message and of the text
    _, items = fetch(c, uid, ["BODY.PEEK[]<5.10>", "BODY.PEEK[TEXT]<0.3>", "BODY.PEEK[]<%d.10>" % len(raw)])
    assert bytes(items["BODY[]<5>"][0]) == raw[5:15]
    assert bytes(items["BODY[TEXT]<0>"][0]) == ent.body[:3]
    assert bytes(items["BODY[]<%d>" % len(raw)][0]) == b""
    # EXAMINE: nothing became \Seen
    _, items = fetch(c, uid, ["FLAGS"])
    assert b"\\Seen" not in items["FLAGS"][0]


def test_fetch_all_corpus_messages_at_once(corpus, imap):
    """One FETCH over the whole mailbox: many literals and 8-bit data in one stream."""
    delivered, _ = corpus
    typ, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    assert typ == "OK"
    resps = raw_fetch_responses(data)
    assert len(resps) == len(delivered)
    by_uid = {u: n for n, u in imap.uid_of.items()}
    for r in resps:
        _, it = parse_fetch(r)
        name = by_uid[it["UID"][0]]
        raw = served(delivered[name])
        assert bytes(it["BODY[HEADER]"][0]) + bytes(it["BODY[TEXT]"][0]) == raw
        assert it["RFC822.SIZE"][0] == len(raw)
        s, e = it["BODYSTRUCTURE"][1]
        assert r[s:e] == (CORPUS / (name + ".bodystructure")).read_bytes()


@pytest.fixture(scope="module")
def pop3_gateway(corpus, gateway):
    addr = gateway.addr
    gw = gateway.factory.start(pop3s="%s:%d" % (addr, _free_port(addr)))
    gw.pop3s_port = int(re.search(r"^pop3s = .*:(\d+)$", gw.conf.read_text(), re.M).group(1))
    return gw


def test_pop3_serves_every_corpus_message(corpus, pop3_gateway, monkeypatch):
    """LIST sizes, RETR bytes and the octets RETR sent agree with IMAP's served form for every
    shape, dot-stuffing included (a bare-CR message is one long line; NUL comes as 0x80)."""
    delivered, _ = corpus
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 20)  # long_lines: RFC 1939 sets no line limit
    gw = pop3_gateway
    p = poplib.POP3_SSL(gw.addr, gw.pop3s_port, context=gw.ssl_context(), timeout=60)
    try:
        p.user(USER)
        p.pass_(PASSWORD)
        _, listing, _ = p.list()
        sizes = dict(tuple(int(x) for x in ln.split()) for ln in listing)
        assert len(sizes) == len(delivered)
        want = sorted(served(raw) for raw in delivered.values())
        got = []
        for n, size in sizes.items():
            _, lines, octets = p.retr(n)
            body = b"".join(ln + b"\r\n" for ln in lines)
            assert octets == size == len(body), (n, octets, size, len(body))
            got.append(body)
            # TOP n 0: the header through its blank line; no blank line: all of it
            _, lines, _ = p.top(n, 0)
            assert b"".join(ln + b"\r\n" for ln in lines) == Entity(body).header, n
        assert sorted(got) == want
    finally:
        p.quit()


def test_search_over_every_shape(corpus, imap):
    """SEARCH decrypts and parses every shape and answers in RFC 3501 syntax."""
    uid = imap.uid_of
    def search(*keys):
        typ, data = imap.uid("SEARCH", *keys)
        assert typ == "OK", (keys, data)
        assert len(data) == 1 and re.fullmatch(rb"(\d+( \d+)*)?", data[0]), data
        return {int(x) for x in data[0].split()}
    body_line = search("BODY", '"body line"')
    assert uid["not_a_header"] in body_line and uid["bare_cr"] not in body_line  # bare CR: all header
    assert uid["no_header"] not in search("BODY", '"second line"')  # no blank line: all header
    assert uid["no_header"] in search("TEXT", '"second line"')
    assert uid["bare_cr"] in search("TEXT", '"body line two"')  # after bare CRs, in the header
    assert search("HEADER", "X-Long", "hhhhhhhh") == {uid["long_lines"]}
    assert uid["blank_first"] in search("BODY", "1")
    assert search("SUBJECT", '"after a continuation"') == {uid["continuation_first"]}
    assert len(search("ALL")) == len(corpus[0])
    assert uid["empty"] in search("SMALLER", "1")
