/* IMAP dates. Calendar arithmetic is done by hand (days from civil and back) so results do
 * not depend on the process's locale, TZ or the width of time_t. */
#include <string.h>
#include <strings.h>

#include "imap/imap.h"

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

int pi_date_time_format(int64_t t, int tz_minutes, char *out)
{
    if (tz_minutes <= -24 * 60 || tz_minutes >= 24 * 60)
        return -1;
    /* Stay far from overflow; years outside 1..9999 are refused below anyway. */
    if (t < -100000LL * 366 * 86400 || t > 100000LL * 366 * 86400)
        return -1;
    int64_t local = t + (int64_t)tz_minutes * 60;
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t secs = local - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return -1;
    int tz = tz_minutes < 0 ? -tz_minutes : tz_minutes;
    /* Written by hand: every field's width is known, which snprintf's checker cannot see. */
    char *o = out;
    *o++ = '"';
    *o++ = d >= 10 ? (char)('0' + d / 10) : ' ';
    *o++ = (char)('0' + d % 10);
    *o++ = '-';
    memcpy(o, months[m - 1], 3);
    o += 3;
    *o++ = '-';
    int fields[] = {(int)(y / 100), (int)(y % 100), -' ', (int)(secs / 3600), -':', (int)(secs / 60 % 60), -':',
                    (int)(secs % 60), -' ', -(tz_minutes < 0 ? '-' : '+'), tz / 60, tz % 60};
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        if (fields[k] < 0) {
            *o++ = (char)-fields[k];
        } else {
            *o++ = (char)('0' + fields[k] / 10);
            *o++ = (char)('0' + fields[k] % 10);
        }
    }
    *o++ = '"';
    *o = '\0';
    return 0;
}

/* Reads exactly n digits. */
static int digits(const char *s, size_t len, size_t *i, size_t n, int *v)
{
    int x = 0;
    for (size_t k = 0; k < n; k++, (*i)++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        x = x * 10 + (s[*i] - '0');
    }
    *v = x;
    return 0;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy", with a leading space allowed for the one-digit day of
 * date-day-fixed. Advances *i. */
static int parse_date(const char *s, size_t len, size_t *i, pi_date *out)
{
    int d, y;
    if (*i < len && s[*i] == ' ')
        (*i)++;
    if (digits(s, len, i, 1, &d) < 0)
        return -1;
    if (*i < len && s[*i] >= '0' && s[*i] <= '9')
        d = d * 10 + (s[(*i)++] - '0');
    if (*i >= len || s[(*i)++] != '-' || len - *i < 4)
        return -1;
    int m = 0;
    for (int k = 0; k < 12; k++)
        if (strncasecmp(s + *i, months[k], 3) == 0)
            m = k + 1;
    if (!m)
        return -1;
    *i += 3;
    if (*i >= len || s[(*i)++] != '-' || digits(s, len, i, 4, &y) < 0)
        return -1;
    if (y < 1 || d < 1 || d > days_in_month(y, m))
        return -1;
    out->year = y;
    out->month = m;
    out->day = d;
    return 0;
}

int pi_date_parse(const char *s, size_t len, pi_date *out)
{
    size_t i = 0;
    if (len && s[0] == ' ')
        return -1; /* the space-padded form belongs to date-time only */
    if (parse_date(s, len, &i, out) < 0 || i != len)
        return -1;
    return 0;
}

int64_t pi_date_days(const pi_date *d)
{
    return days_from_civil(d->year, d->month, d->day);
}

int pi_date_time_parse(const char *s, size_t len, int64_t *t, int *tz_minutes)
{
    size_t i = 0;
    pi_date d;
    int hh, mm, ss, zh, zm;
    if (parse_date(s, len, &i, &d) < 0)
        return -1;
    if (i >= len || s[i++] != ' ' || digits(s, len, &i, 2, &hh) < 0 || i >= len || s[i++] != ':' ||
        digits(s, len, &i, 2, &mm) < 0 || i >= len || s[i++] != ':' || digits(s, len, &i, 2, &ss) < 0 ||
        i >= len || s[i++] != ' ' || i >= len || (s[i] != '+' && s[i] != '-'))
        return -1;
    int sign = s[i++] == '-' ? -1 : 1;
    if (digits(s, len, &i, 2, &zh) < 0 || digits(s, len, &i, 2, &zm) < 0 || i != len)
        return -1;
    /* 60 is a leap second; it is folded into the next minute as time_t does. */
    if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
        return -1;
    int tz = sign * (zh * 60 + zm);
    *t = pi_date_days(&d) * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)tz * 60;
    *tz_minutes = tz;
    return 0;
}
