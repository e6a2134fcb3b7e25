"""RFC 3501 date-time (INTERNALDATE) checks that hold on any day, in any time zone."""
import calendar
import re

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# date-day-fixed = (SP DIGIT) / 2DIGIT: days 1-9 are " 1" .. " 9", never "01"
DATE_TIME = re.compile(rb'"( [1-9]|[12][0-9]|3[01])-(%s)-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"'
                       % "|".join(MONTHS).encode())


def imap_date_time(raw):
    """Seconds since the epoch of a quoted RFC 3501 date-time; AssertionError if malformed."""
    m = DATE_TIME.fullmatch(raw)
    assert m, "not an RFC 3501 date-time: %r" % raw
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    t = calendar.timegm((int(year), MONTHS.index(mon.decode()) + 1, int(day), int(hh), int(mm), int(ss)))
    offset = (int(zh) * 60 + int(zm)) * 60
    assert int(zm) < 60 and offset < 24 * 3600, raw
    return t - offset if sign == b"+" else t + offset

