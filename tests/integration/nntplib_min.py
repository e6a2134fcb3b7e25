"""Minimal NNTP client for postern's integration tests (raw sockets).

nntplib is deprecated since Python 3.11 and removed in 3.13, so this is a small RFC 3977
client with just what the tests need: AUTHINFO USER/PASS, GROUP, ARTICLE, STAT, LIST ACTIVE,
OVER, POST.  Every command returns the status line; multi-line commands also return the lines
(bytes, dot-unstuffed, without CRLF).
"""
import socket

__all__ = ["NNTP", "NNTPError", "make_article"]


class NNTPError(Exception):
    """A response with an unexpected status code."""

    def __init__(self, response):
        super().__init__(response)
        self.response = response
        self.code = int(response[:3]) if response[:3].isdigit() else 0


class NNTP:
    def __init__(self, host, port, user=None, password=None, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # nnrpd does not set TCP_NODELAY: ACK at once so multi-line replies are not delayed
        if hasattr(socket, "TCP_QUICKACK"):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.file = self.sock.makefile("rb")
        self.welcome = self._line()
        if not self.welcome.startswith(("200", "201")):
            raise NNTPError(self.welcome)
        if user is not None:
            self.login(user, password)

    # -- plumbing --
    def _line(self):
        line = self.file.readline()
        if not line:
            raise EOFError("connection closed by server")
        if hasattr(socket, "TCP_QUICKACK"):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return line.rstrip(b"\r\n").decode("utf-8", "replace")

    def cmd(self, command):
        """Send one command line, return the status line (str)."""
        self.sock.sendall(command.encode("utf-8") + b"\r\n")
        return self._line()

    def _multi(self):
        out = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("connection closed inside a multi-line reply")
            if line == b".\r\n":
                return out
            line = line.rstrip(b"\r\n")
            if line.startswith(b".."):
                line = line[1:]
            out.append(line)

    def _expect(self, response, *codes):
        if not response.startswith(codes):
            raise NNTPError(response)
        return response

    # -- commands --
    def login(self, user, password):
        r = self.cmd("AUTHINFO USER " + user)
        if r.startswith("381"):
            r = self.cmd("AUTHINFO PASS " + password)
        return self._expect(r, "281")

    def group(self, name):
        """Returns (count, low, high, name); raises NNTPError (411 no such group, 480 auth)."""
        r = self._expect(self.cmd("GROUP " + name), "211")
        _, count, low, high, gname = r.split()[:5]
        return int(count), int(low), int(high), gname

    def stat(self, spec=""):
        return self.cmd(("STAT " + str(spec)).strip())

    def article(self, spec=""):
        """Returns (status line, list of lines); raises NNTPError (423, 430, ...)."""
        r = self._expect(self.cmd(("ARTICLE " + str(spec)).strip()), "220")
        return r, self._multi()

    def body(self, spec=""):
        r = self._expect(self.cmd(("BODY " + str(spec)).strip()), "222")
        return r, self._multi()

    def list_active(self, wildmat=""):
        """Returns [(group, high, low, status)]."""
        r = self._expect(self.cmd(("LIST ACTIVE " + wildmat).strip()), "215")
        out = []
        for line in self._multi():
            f = line.decode("utf-8", "replace").split()
            out.append((f[0], int(f[1]), int(f[2]), f[3]))
        return out

    def over(self, rng=""):
        """Returns the OVER lines split at tabs (str fields)."""
        r = self._expect(self.cmd(("OVER " + rng).strip()), "224")
        return [line.decode("utf-8", "replace").split("\t") for line in self._multi()]

    def post(self, article):
        """POST bytes (LF or CRLF line ends); returns the final status line (240 on success)."""
        r = self.cmd("POST")
        if not r.startswith("340"):
            return r
        self.sock.sendall(_wire(article))
        return self._line()

    def quit(self):
        try:
            self.cmd("QUIT")
        except (OSError, EOFError):
            pass
        self.close()

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()


def _wire(article):
    lines = article.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


def make_article(group, msgid, body, subject="test", extra_headers=()):
    """Article bytes with the headers nnrpd needs; body is bytes."""
    head = ["From: postern test <test@postern.invalid>", "Newsgroups: " + group,
            "Subject: " + subject, "Message-ID: " + msgid]
    head.extend(extra_headers)
    return ("\n".join(head) + "\n\n").encode() + body
