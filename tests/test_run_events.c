/* test_run_events.c -- the run's events: order, /stats's newest 100, the bound and its count. */
#include <stdio.h>
#include <string.h>

#include "run/run_internal.h"
#include "test.h"

static double t_of(json_t *a, size_t i)
{
    return json_number_value(json_object_get(json_array_get(a, i), "t_s"));
}

/* 250 events: all of them in order for the report, exactly the newest 100 (150..249) for
 * /stats, each with the EVENT shape (null where nothing was given). */
static void test_order_and_last(void)
{
    zlb_events_t ev;
    zlb_events_init(&ev, ZLB_EVENTS_MAX);
    for (int i = 0; i < 250; i++) {
        char client[32];
        snprintf(client, sizeof(client), "127.0.0.1:%d", 40000 + i);
        zlb_events_add(&ev, i * 0.5, i % 2 ? "pause" : "resume",
                       i % 3 ? json_pack("{s:i}", "connections", i) : NULL,
                       json_pack("{s:i}", "connections", i + 1), i % 5 ? client : NULL);
    }
    json_t *all = zlb_events_json(&ev, 0), *last = zlb_events_json(&ev, ZLB_EVENTS_LIVE);
    ASSERT_UEQ(json_array_size(all), 250);
    ASSERT_UEQ(json_array_size(last), 100);
    for (size_t i = 0; i < 250; i++)
        ASSERT_NEAR(t_of(all, i), i * 0.5, 1e-9);
    for (size_t i = 0; i < 100; i++)
        ASSERT_NEAR(t_of(last, i), (150 + i) * 0.5, 1e-9);
    json_t *e0 = json_array_get(all, 0), *e7 = json_array_get(all, 7);
    ASSERT(json_is_null(json_object_get(e0, "from")));   /* 0 % 3 == 0: no from */
    ASSERT(json_is_null(json_object_get(e0, "client"))); /* 0 % 5 == 0: no client */
    ASSERT_STREQ(json_string_value(json_object_get(e7, "what")), "pause");
    ASSERT_STREQ(json_string_value(json_object_get(e7, "client")), "127.0.0.1:40007");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(e7, "from"), "connections")), 7);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(e7, "to"), "connections")), 8);
    ASSERT_UEQ(json_object_size(e7), 5);
    ASSERT_UEQ(ev.dropped, 0);
    json_decref(all);
    json_decref(last);
    zlb_events_dispose(&ev);
}

/* Past the bound the oldest go, counted; what is kept stays in order across the ring's wrap. */
static void test_bound(void)
{
    zlb_events_t ev;
    zlb_events_init(&ev, 10);
    for (int i = 0; i < 37; i++)
        zlb_events_add(&ev, i, "patch", json_object(), json_object(), "127.0.0.1:1");
    json_t *all = zlb_events_json(&ev, 0), *last = zlb_events_json(&ev, 4);
    ASSERT_UEQ(json_array_size(all), 10);
    ASSERT_UEQ(ev.dropped, 27);
    ASSERT_UEQ(ev.total, 37);
    for (size_t i = 0; i < 10; i++)
        ASSERT_NEAR(t_of(all, i), 27.0 + (double)i, 1e-9);
    ASSERT_UEQ(json_array_size(last), 4);
    for (size_t i = 0; i < 4; i++)
        ASSERT_NEAR(t_of(last, i), 33.0 + (double)i, 1e-9);
    json_decref(all);
    json_decref(last);
    zlb_events_dispose(&ev);
}

int main(void)
{
    test_order_and_last();
    test_bound();
    fprintf(stderr, "test_run_events: ok\n");
    return 0;
}
