/* Unit tests for the snapshot archive format and backup schedules: the ustar writer's output is
 * read back by the strict reader; every entry the reader must refuse (traversal, absolute paths,
 * links, devices, duplicates, bad checksums, truncation) is refused and nothing lands outside the
 * extraction directory; five-field cron expressions parse and match as cron does. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_cron.h"
#include "ag_seal.h"
#include "ag_tar.h"

static char workdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(workdir, sizeof(workdir), "/tmp/aegis-tar-XXXXXX");
    return mkdtemp(workdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ag_tar_remove_tree(workdir);
    return 0;
}

/* A fresh extraction directory inside workdir. */
static void fresh_dir(char *out, size_t len)
{
    static int n;
    snprintf(out, len, "%s/x%d", workdir, n++);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* Writes a raw header (for entries the writer refuses to produce). */
static void raw_header(FILE *f, const char *name, char type, unsigned size, const char *link)
{
    unsigned char h[512] = {0};
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000600", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011o", size);
    memcpy(h + 136, "00000000000", 12);
    h[156] = (unsigned char)type;
    if (link)
        snprintf((char *)h + 157, 100, "%s", link);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    assert_int_equal(fwrite(h, 1, 512, f), 512);
    unsigned char pad[512];
    memset(pad, 'A', sizeof(pad));
    for (unsigned left = (size + 511) / 512 * 512; left > 0; left -= 512)
        assert_int_equal(fwrite(pad, 1, 512, f), 512);
}

/* Extracts the archive in path into a fresh directory; returns the result. */
static int extract(const char *path, char *dir, size_t dirlen, ag_diag_t *diag)
{
    fresh_dir(dir, dirlen);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    int rc = ag_tar_extract(fileno(f), 0, (uint64_t)len, dir, NULL, diag);
    fclose(f);
    return rc;
}

static void test_roundtrip(void **state)
{
    (void)state;
    char path[300], dir[300], file[400];
    snprintf(path, sizeof(path), "%s/ok.tar", workdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(ag_tar_put_file(f, "a.json", "{}", 2, 0), 0);
    ag_tar_entry_w_t e;
    assert_int_equal(ag_tar_begin_entry(f, &e, "dir/streamed.bin", 0), 0);
    for (int i = 0; i < 1000; i++)
        fputc(i & 0xff, f);
    assert_int_equal(ag_tar_end_entry(f, &e), 0);
    assert_int_equal(ag_tar_put_file(f, "empty", "", 0, 0), 0);
    assert_int_equal(ag_tar_finish(f), 0);
    fclose(f);
    ag_diag_t diag = {{0}};
    assert_int_equal(extract(path, dir, sizeof(dir), &diag), 0);
    struct stat st;
    snprintf(file, sizeof(file), "%s/dir/streamed.bin", dir);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 1000);
    FILE *in = fopen(file, "rb");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fgetc(in), i & 0xff);
    fclose(in);
    snprintf(file, sizeof(file), "%s/empty", dir);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 0);
}

static void test_writer_refuses_bad_names(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_int_equal(ag_tar_put_file(f, "../x", "", 0, 0), AG_EINVAL);
    assert_int_equal(ag_tar_put_file(f, "/abs", "", 0, 0), AG_EINVAL);
    assert_int_equal(ag_tar_put_file(f, "a/./b", "", 0, 0), AG_EINVAL);
    assert_int_equal(ag_tar_put_file(f, "a\\b", "", 0, 0), AG_EINVAL);
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ag_tar_put_file(f, longname, "", 0, 0), AG_EINVAL);
    fclose(f);
}

static void test_hostile_entries_refused(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        char type;
        const char *link;
        const char *why; /* a word the message must hold */
    } cases[] = {
        {"../escape", '0', NULL, ".."},
        {"a/../../escape", '0', NULL, ".."},
        {"/tmp/escape-abs", '0', NULL, "absolute"},
        {"link", '2', "/etc", "symbolic link"},
        {"hard", '1', "/etc/passwd", "hard link"},
        {"chr", '3', NULL, "character device"},
        {"blk", '4', NULL, "block device"},
        {"fifo", '6', NULL, "FIFO"},
        {"pax", 'x', NULL, "extension"},
        {"gnu-longname", 'L', NULL, "extension"},
        {"a//b", '0', NULL, "empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[300], dir[300];
        snprintf(path, sizeof(path), "%s/bad%zu.tar", workdir, i);
        FILE *f = fopen(path, "wb");
        raw_header(f, cases[i].name, cases[i].type, cases[i].type == '0' ? 10 : 0, cases[i].link);
        ag_tar_finish(f);
        fclose(f);
        ag_diag_t diag = {{0}};
        assert_int_equal(extract(path, dir, sizeof(dir), &diag), AG_EINVAL);
        assert_non_null(strstr(diag.msg, cases[i].why));
        /* nothing was created outside (nor inside) */
        char outside[400];
        snprintf(outside, sizeof(outside), "%s/escape", workdir);
        assert_int_not_equal(access(outside, F_OK), 0);
        assert_int_not_equal(access("/tmp/escape-abs", F_OK), 0);
    }
}

static void test_duplicates_and_damage(void **state)
{
    (void)state;
    char path[300], dir[300];
    ag_diag_t diag = {{0}};
    /* duplicate entry, also as "x" then "x/" (a directory over the file) */
    snprintf(path, sizeof(path), "%s/dup.tar", workdir);
    FILE *f = fopen(path, "wb");
    assert_int_equal(ag_tar_put_file(f, "x", "1", 1, 0), 0);
    assert_int_equal(ag_tar_put_file(f, "x", "2", 1, 0), 0);
    ag_tar_finish(f);
    fclose(f);
    assert_int_equal(extract(path, dir, sizeof(dir), &diag), AG_EINVAL);
    assert_non_null(strstr(diag.msg, "twice"));
    snprintf(path, sizeof(path), "%s/dup2.tar", workdir);
    f = fopen(path, "wb");
    assert_int_equal(ag_tar_put_file(f, "y", "1", 1, 0), 0);
    raw_header(f, "y/", '5', 0, NULL);
    ag_tar_finish(f);
    fclose(f);
    assert_int_equal(extract(path, dir, sizeof(dir), &diag), AG_EINVAL);
    /* a flipped byte in a header */
    snprintf(path, sizeof(path), "%s/flip.tar", workdir);
    f = fopen(path, "wb");
    assert_int_equal(ag_tar_put_file(f, "z", "abc", 3, 0), 0);
    ag_tar_finish(f);
    fseek(f, 0, SEEK_SET);
    fclose(f);
    f = fopen(path, "r+b");
    fseek(f, 1, SEEK_SET);
    fputc('Q', f);
    fclose(f);
    assert_int_equal(extract(path, dir, sizeof(dir), &diag), AG_EUNPROCESSABLE);
    /* truncated: data cut short, and no end marker */
    snprintf(path, sizeof(path), "%s/trunc.tar", workdir);
    f = fopen(path, "wb");
    raw_header(f, "big", '0', 2000, NULL);
    fclose(f);
    assert_int_equal(truncate(path, 1024), 0);
    assert_int_equal(extract(path, dir, sizeof(dir), &diag), AG_EUNPROCESSABLE);
    /* entry count and size limits */
    snprintf(path, sizeof(path), "%s/many.tar", workdir);
    f = fopen(path, "wb");
    for (int i = 0; i < 5; i++) {
        char n[16];
        snprintf(n, sizeof(n), "f%d", i);
        assert_int_equal(ag_tar_put_file(f, n, "abcd", 4, 0), 0);
    }
    ag_tar_finish(f);
    long len = ftell(f);
    fclose(f);
    fresh_dir(dir, sizeof(dir));
    int fd = open(path, 0);
    ag_tar_limits_t lim = {.max_entries = 4};
    assert_int_equal(ag_tar_extract(fd, 0, (uint64_t)len, dir, &lim, &diag), AG_EINVAL);
    fresh_dir(dir, sizeof(dir));
    lim = (ag_tar_limits_t){.max_total_bytes = 19};
    assert_int_equal(ag_tar_extract(fd, 0, (uint64_t)len, dir, &lim, &diag), AG_EINVAL);
    fresh_dir(dir, sizeof(dir));
    lim = (ag_tar_limits_t){.max_total_bytes = 20, .max_entries = 5};
    assert_int_equal(ag_tar_extract(fd, 0, (uint64_t)len, dir, &lim, &diag), 0);
    close(fd);
}

static time_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return timegm(&tm);
}

static void test_cron(void **state)
{
    (void)state;
    ag_cron_t c;
    ag_diag_t diag = {{0}};
    assert_int_equal(ag_cron_parse("0 3 * * *", &c, &diag), 0);
    assert_true(ag_cron_matches(&c, utc(2026, 12, 2, 3, 0)));
    assert_false(ag_cron_matches(&c, utc(2026, 12, 2, 3, 1)));
    assert_false(ag_cron_matches(&c, utc(2026, 12, 2, 4, 0)));
    assert_int_equal(ag_cron_parse("*/15 9-17 * * 1-5", &c, &diag), 0);
    assert_true(ag_cron_matches(&c, utc(2026, 12, 2, 9, 45)));      /* a Wednesday */
    assert_false(ag_cron_matches(&c, utc(2026, 12, 2, 9, 50)));     /* not a quarter */
    assert_false(ag_cron_matches(&c, utc(2026, 12, 6, 10, 0)));     /* a Sunday */
    assert_int_equal(ag_cron_parse("30 1 1,15 * 7", &c, &diag), 0); /* day 1/15 OR Sunday */
    assert_true(ag_cron_matches(&c, utc(2026, 12, 15, 1, 30)));
    assert_true(ag_cron_matches(&c, utc(2026, 12, 6, 1, 30)));
    assert_false(ag_cron_matches(&c, utc(2026, 12, 7, 1, 30)));
    assert_int_equal(ag_cron_parse("5/20 * * * *", &c, &diag), 0);
    assert_true(ag_cron_matches(&c, utc(2026, 1, 1, 0, 45)));
    assert_false(ag_cron_matches(&c, utc(2026, 1, 1, 0, 40)));
    static const char *const bad[] = {
        "",           "* * * *",   "* * * * * *", "60 * * * *",  "* 24 * * *", "* * 0 * *",
        "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *",  "1,,2 * * * *"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ag_cron_parse(bad[i], &c, &diag), AG_EINVAL);
}

static void test_seal(void **state)
{
    (void)state;
    char path[300], sealed[300], opened[300];
    snprintf(path, sizeof(path), "%s/plain", workdir);
    snprintf(sealed, sizeof(sealed), "%s/sealed", workdir);
    FILE *p = fopen(path, "wb");
    for (int i = 0; i < 200000; i++) /* several chunks */
        fputc((i * 7) & 0xff, p);
    fclose(p);
    const char *pass = "a long enough passphrase";
    ag_diag_t diag = {{0}};
    int in = open(path, O_RDONLY);
    FILE *out = fopen(sealed, "wb");
    assert_int_equal(ag_seal_write(out, in, 200000, "short", 5, &diag), AG_EINVAL);
    assert_int_equal(ag_seal_write(out, in, 200000, pass, strlen(pass), &diag), 0);
    fclose(out);
    close(in);
    /* the right passphrase gives the content back */
    snprintf(opened, sizeof(opened), "%s/opened1", workdir);
    FILE *s = fopen(sealed, "rb");
    int o = open(opened, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(ag_seal_read(s, o, pass, strlen(pass), &diag), 0);
    fclose(s);
    close(o);
    FILE *r = fopen(opened, "rb");
    for (int i = 0; i < 200000; i++)
        assert_int_equal(fgetc(r), (i * 7) & 0xff);
    assert_int_equal(fgetc(r), EOF);
    fclose(r);
    /* a wrong passphrase, a flipped byte, a truncation: refused */
    s = fopen(sealed, "rb");
    o = open(opened, O_WRONLY | O_TRUNC);
    assert_int_equal(ag_seal_read(s, o, "another passphrase", 18, &diag), AG_EINVAL);
    fclose(s);
    FILE *m = fopen(sealed, "r+b");
    fseek(m, 200, SEEK_SET);
    int c = fgetc(m);
    fseek(m, 200, SEEK_SET);
    fputc(c ^ 1, m);
    fclose(m);
    s = fopen(sealed, "rb");
    assert_int_equal(ag_seal_read(s, o, pass, strlen(pass), &diag), AG_EINVAL);
    fclose(s);
    m = fopen(sealed, "r+b");
    fseek(m, 200, SEEK_SET);
    fputc(c, m);
    fclose(m);
    struct stat st;
    stat(sealed, &st);
    assert_int_equal(truncate(sealed, st.st_size - 70000), 0);
    s = fopen(sealed, "rb");
    assert_int_equal(ag_seal_read(s, o, pass, strlen(pass), &diag), AG_EINVAL);
    fclose(s);
    close(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_writer_refuses_bad_names),
        cmocka_unit_test(test_hostile_entries_refused),
        cmocka_unit_test(test_duplicates_and_damage),
        cmocka_unit_test(test_cron),
        cmocka_unit_test(test_seal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
