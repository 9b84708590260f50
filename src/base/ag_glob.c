#include "ag_glob.h"

/* KMP failure table of seg[0..k) into fail[0..k). */
static void kmp_table(const char *seg, size_t k, uint16_t *fail)
{
    if (k == 0)
        return;
    fail[0] = 0;
    size_t j = 0;
    for (size_t i = 1; i < k; i++) {
        while (j > 0 && seg[i] != seg[j])
            j = fail[j - 1];
        if (seg[i] == seg[j])
            j++;
        fail[i] = (uint16_t)j;
    }
}

/* Leftmost occurrence of seg[0..k) in s[from..to); returns its start or SIZE_MAX. Linear. */
static size_t kmp_find(const char *seg, size_t k, const uint16_t *fail, const char *s, size_t from,
                       size_t to)
{
    size_t j = 0;
    for (size_t i = from; i < to; i++) {
        while (j > 0 && s[i] != seg[j])
            j = fail[j - 1];
        if (s[i] == seg[j])
            j++;
        if (j == k)
            return i + 1 - k;
    }
    return SIZE_MAX;
}

static int compile(const char *pattern, size_t len, bool literal, ag_glob_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!pattern || len == 0 || len > AG_GLOB_MAX_LEN || memchr(pattern, '\0', len))
        return AG_EINVAL;
    bool has_star = false, only_stars = true;
    for (size_t i = 0; i < len; i++) {
        if (pattern[i] == '*')
            has_star = true;
        else
            only_stars = false;
    }
    if (!literal && only_stars)
        return 0; /* AG_GLOB_ANY */
    char *text = malloc(len + 1);
    if (!text)
        return AG_ENOMEM;
    memcpy(text, pattern, len);
    text[len] = '\0';
    uint16_t *fail = NULL;
    if (!literal && has_star) {
        fail = calloc(len, sizeof(*fail));
        if (!fail) {
            free(text);
            return AG_ENOMEM;
        }
        /* One table per literal segment, stored at the segment's offset. */
        size_t start = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i == len || text[i] == '*') {
                kmp_table(text + start, i - start, fail + start);
                start = i + 1;
            }
        }
    }
    out->kind = (literal || !has_star) ? AG_GLOB_LITERAL : AG_GLOB_PATTERN;
    out->len = (uint16_t)len;
    out->text = text;
    out->fail = fail;
    return 0;
}

/* Memory: *out owns text and fail (ag_glob_release). */
int ag_glob_compile(const char *pattern, size_t len, ag_glob_t *out)
{
    return compile(pattern, len, false, out);
}

/* Memory: *out owns its text (ag_glob_release). */
int ag_glob_compile_literal(const char *text, size_t len, ag_glob_t *out)
{
    return compile(text, len, true, out);
}

/* Memory: *dst owns new copies of src's buffers. */
int ag_glob_copy(const ag_glob_t *src, ag_glob_t *dst)
{
    memset(dst, 0, sizeof(*dst));
    if (src->kind == AG_GLOB_ANY)
        return 0;
    return compile(src->text, src->len, src->kind == AG_GLOB_LITERAL, dst);
}

void ag_glob_release(ag_glob_t *g)
{
    if (!g)
        return;
    free(g->text);
    free(g->fail);
    memset(g, 0, sizeof(*g));
}

bool ag_glob_match(const ag_glob_t *g, const char *s, size_t n)
{
    if (g->kind == AG_GLOB_ANY)
        return true;
    if (!s)
        return false;
    const char *p = g->text;
    size_t m = g->len;
    if (g->kind == AG_GLOB_LITERAL)
        return n == m && memcmp(s, p, m) == 0;

    /* Pattern = first * mid_1 * ... * mid_k * last (first, last and mids may be empty). */
    const char *first_star = memchr(p, '*', m);
    size_t first_len = (size_t)(first_star - p);
    size_t last_start = m;
    while (last_start > 0 && p[last_start - 1] != '*')
        last_start--;
    size_t last_len = m - last_start;
    if (n < first_len + last_len)
        return false;
    if (memcmp(s, p, first_len) != 0 || memcmp(s + n - last_len, p + last_start, last_len) != 0)
        return false;

    size_t pos = first_len, end = n - last_len;
    size_t seg = first_len + 1;
    while (seg < last_start) {
        const char *star = memchr(p + seg, '*', last_start - seg);
        size_t seg_end = star ? (size_t)(star - p) : last_start - 1;
        size_t k = seg_end - seg;
        if (k > 0) {
            size_t at = kmp_find(p + seg, k, g->fail + seg, s, pos, end);
            if (at == SIZE_MAX)
                return false;
            pos = at + k;
        }
        seg = seg_end + 1;
    }
    return true;
}

bool ag_glob_match_str(const ag_glob_t *g, const char *s)
{
    return ag_glob_match(g, s, s ? strlen(s) : 0);
}

bool ag_glob_covers(const ag_glob_t *outer, const ag_glob_t *inner)
{
    if (outer->kind == AG_GLOB_ANY)
        return true;
    if (inner->kind == AG_GLOB_ANY)
        return false;
    if (outer->kind == AG_GLOB_LITERAL)
        return inner->kind == AG_GLOB_LITERAL && inner->len == outer->len &&
               memcmp(inner->text, outer->text, outer->len) == 0;
    /* outer's literal segments contain no '*', so they can never consume one of inner's
     * wildcards; only outer's own '*' can — which is exactly inclusion. A '*' inside a literal
     * inner is an ordinary character and is treated the same way, which is also exact. */
    return ag_glob_match(outer, inner->text, inner->len);
}

const char *ag_glob_text(const ag_glob_t *g)
{
    return g->kind == AG_GLOB_ANY ? "*" : g->text;
}
