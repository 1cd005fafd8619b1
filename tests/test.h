/* test.h -- minimal assertion macros for the unit tests; failures print both values. */
#ifndef ZLB_TEST_H
#define ZLB_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLB_TEST_FAIL(...)                                                                         \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ZLB_TEST_FAIL("assertion failed: %s", #cond);                                          \
    } while (0)

#define ASSERT_CMP_INT(a, op, b)                                                                   \
    do {                                                                                           \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                              \
        if (!(a_ op b_))                                                                           \
            ZLB_TEST_FAIL("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, a_, b_);               \
    } while (0)

#define ASSERT_CMP_UINT(a, op, b)                                                                  \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        if (!(a_ op b_))                                                                           \
            ZLB_TEST_FAIL("%s %s %s: %" PRIu64 " vs %" PRIu64, #a, #op, #b, a_, b_);               \
    } while (0)

#define ASSERT_CMP_DBL(a, op, b)                                                                   \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        if (!(a_ op b_))                                                                           \
            ZLB_TEST_FAIL("%s %s %s: %.6g vs %.6g", #a, #op, #b, a_, b_);                          \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP_INT(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP_INT(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP_INT(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP_INT(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP_INT(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP_INT(a, >=, b)
#define ASSERT_UEQ(a, b) ASSERT_CMP_UINT(a, ==, b)
#define ASSERT_NEAR(a, b, tol)                                                                     \
    do {                                                                                           \
        double x_ = (double)(a), y_ = (double)(b), t_ = (double)(tol);                             \
        if (!(x_ - y_ <= t_ && y_ - x_ <= t_))                                                     \
            ZLB_TEST_FAIL("%s ~= %s (±%s): %.6g vs %.6g", #a, #b, #tol, x_, y_);                   \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            ZLB_TEST_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)",                \
                          b_ ? b_ : "(null)");                                                     \
    } while (0)

/* A test that cannot run here says why and returns; the binary then exits with ctest's
 * SKIP_RETURN_CODE (77) after running the others, so the summary shows a skip, not a pass. */
static int zlb_test_skips __attribute__((unused));
#define TEST_SKIP(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "   SKIPPED: ");                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        zlb_test_skips++;                                                                          \
    } while (0)
/* What main returns: 0, or 77 when a test was skipped (the others all passed: failures abort). */
#define TEST_EXIT_CODE()                                                                           \
    (zlb_test_skips ? (fprintf(stderr, "%d test(s) skipped: exit 77\n", zlb_test_skips), 77) : 0)

/* Runs one test function and names it, so a failure's abort points at it. */
#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "-- %s\n", #fn);                                                           \
        fn();                                                                                      \
    } while (0)

#endif
