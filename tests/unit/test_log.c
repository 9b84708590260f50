/* Unit tests for the server log: one ag_log call is one line whatever the message contains, and a
 * flood of lines is cut to the bucket's budget with one line saying how many were suppressed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "ag_log.h"

typedef struct captured {
    char buf[1 << 20];
    size_t len;
    size_t lines;
} captured_t;

static captured_t cap;

static void capture(const char *line, size_t len, void *ctx)
{
    captured_t *c = ctx;
    assert_true(len > 0);
    assert_int_equal(line[len - 1], '\n');
    if (c->len + len < sizeof(c->buf)) {
        memcpy(c->buf + c->len, line, len);
        c->len += len;
        c->buf[c->len] = '\0';
    }
    c->lines++;
}

static int setup(void **state)
{
    (void)state;
    memset(&cap, 0, sizeof(cap));
    ag_log_set_level(AG_LOG_DEBUG);
    ag_log_set_sink(capture, &cap);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_log_set_sink(NULL, NULL);
    ag_log_set_level(AG_LOG_INFO);
    return 0;
}

static size_t count_newlines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_control_characters_escaped(void **state)
{
    (void)state;
    /* A subject as a client could send it: a newline followed by a forged log line. */
    const char *sub = "alice\n2026-12-02T00:00:00.000Z INFO  access 127.0.0.1 GET / 200";
    ag_log(AG_LOG_WARN, "authentication failed for sub=%s", sub);
    assert_int_equal(cap.lines, 1);
    assert_int_equal(count_newlines(cap.buf), 1);
    assert_non_null(strstr(cap.buf, "sub=alice\\n2026-12-02T00:00:00.000Z INFO  access"));

    ag_log(AG_LOG_INFO, "cr=[%s] tab=[%s] esc=[%s] del=[%s] bell=[%s] utf8=[%s]", "a\rb", "a\tb",
           "\x1b[31m", "\x7f", "\a", "caf\xc3\xa9");
    assert_int_equal(cap.lines, 2);
    assert_int_equal(count_newlines(cap.buf), 2);
    assert_non_null(strstr(cap.buf, "cr=[a\\rb] tab=[a\\tb] esc=[\\x1b[31m] del=[\\x7f] "
                                    "bell=[\\x07] utf8=[caf\xc3\xa9]"));
    for (const char *p = cap.buf; *p; p++)
        assert_true(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f));
}

static void test_long_message_is_one_line(void **state)
{
    (void)state;
    /* Larger than the message buffer, and full of newlines that escaping doubles. */
    static char big[10000];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = i % 2 ? '\n' : 'x';
    big[sizeof(big) - 1] = '\0';
    ag_log(AG_LOG_ERROR, "%s", big);
    assert_int_equal(cap.lines, 1);
    assert_int_equal(count_newlines(cap.buf), 1);
    assert_int_equal(cap.buf[cap.len - 1], '\n');
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lines of cap.buf containing needle, and the sum of N over "log: N WARN lines suppressed". */
static void tally(const char *needle, size_t *lines, unsigned long long *suppressed)
{
    *lines = 0;
    *suppressed = 0;
    for (const char *p = cap.buf; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
        if (strstr(line, needle))
            (*lines)++;
        const char *m = strstr(line, " log: ");
        unsigned long long n = 0;
        double secs = -1;
        if (m) {
            assert_int_equal(
                sscanf(m, " log: %llu WARN lines suppressed in the last %lf s", &n, &secs), 2);
            assert_true(secs >= 0.0 && secs < 600.0);
            *suppressed += n;
        }
        p = nl + 1;
    }
}

static void test_flood_is_rate_limited(void **state)
{
    (void)state;
    double t0 = now_s();
    for (int i = 0; i < 5000; i++)
        ag_log(AG_LOG_WARN, "authentication failed from 10.0.0.%d", i % 250);
    double took = now_s() - t0;
    size_t delivered;
    unsigned long long suppressed;
    tally("authentication failed", &delivered, &suppressed);
    /* The burst plus what refilled while the loop ran. */
    assert_true(delivered >= (size_t)AG_LOG_BURST);
    assert_true((double)delivered <= AG_LOG_BURST + took * AG_LOG_RATE + 1.0);
    size_t after_flood = cap.lines;

    /* Another level has its own budget: an ERROR still gets through. */
    ag_log(AG_LOG_ERROR, "disk full");
    assert_int_equal(cap.lines, after_flood + 1);

    /* Once the bucket refills, the next WARN line is preceded by the count of dropped ones. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ag_log(AG_LOG_WARN, "after the flood");
    assert_int_equal(cap.lines, after_flood + 3);
    tally("authentication failed", &delivered, &suppressed);
    assert_int_equal(delivered + suppressed, 5000);
    const char *last = cap.buf + cap.len - 1;
    while (last > cap.buf && last[-1] != '\n')
        last--;
    assert_non_null(strstr(last, "after the flood"));
    const char *prev = last - 1;
    while (prev > cap.buf && prev[-1] != '\n')
        prev--;
    assert_non_null(strstr(prev, " log: "));
    /* No second summary for the same gap. */
    ag_log(AG_LOG_WARN, "and again");
    assert_null(strstr(last, " log: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_control_characters_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_is_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood_is_rate_limited, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
