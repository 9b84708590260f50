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

static void test_flood_is_rate_limited(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++)
        ag_log(AG_LOG_WARN, "authentication failed from 10.0.0.%d", i % 250);
    /* The burst plus what refills while the loop runs (well under a second). */
    assert_true(cap.lines >= (size_t)AG_LOG_BURST);
    assert_true(cap.lines <= (size_t)AG_LOG_BURST + 60);
    size_t after_flood = cap.lines;

    /* Another level has its own budget: an ERROR still gets through. */
    ag_log(AG_LOG_ERROR, "disk full");
    assert_int_equal(cap.lines, after_flood + 1);

    /* Once the bucket refills, the next WARN line is preceded by the count of dropped ones. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ag_log(AG_LOG_WARN, "after the flood");
    assert_int_equal(cap.lines, after_flood + 3);
    char *summary = strstr(cap.buf, "log: ");
    assert_non_null(summary);
    unsigned long long n = 0;
    double secs = 0;
    assert_int_equal(
        sscanf(summary, "log: %llu WARN lines suppressed in the last %lf s", &n, &secs), 2);
    assert_int_equal(n + after_flood, 5000);
    assert_true(secs >= 0.0 && secs < 60.0);
    assert_non_null(strstr(summary, "after the flood"));
    /* No second summary for the same gap. */
    ag_log(AG_LOG_WARN, "and again");
    assert_null(strstr(summary + 5, "log: "));
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
