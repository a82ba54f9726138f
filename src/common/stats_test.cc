#include "common/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace weft::stats {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

static_assert(sizeof(detail::U64Slot) == 64, "one slot per cache line");
static_assert(alignof(detail::I64Slot) == 64, "one slot per cache line");

TEST(StatsThreadBinding, BindAndUnbind) {
  EXPECT_EQ(currentWorker(), -1) << "a fresh thread is unbound";
  {
    ScopedWorkerBinding bind(3);
    EXPECT_EQ(currentWorker(), 3);
    {
      ScopedWorkerBinding inner(5);
      EXPECT_EQ(currentWorker(), 5);
    }
    EXPECT_EQ(currentWorker(), 3) << "the inner binding restores the outer one";
  }
  EXPECT_EQ(currentWorker(), -1);
}

TEST(StatsCounter, ConcurrentWorkersAndSharedThreadsSumExactly) {
  constexpr uint32_t kWorkers = 4;
  constexpr uint64_t kPerThread = 200'000;
  Registry registry(kWorkers);
  auto counter = registry.counter("test_events_total");
  std::vector<std::thread> threads;
  // Workers 0..3 on their own slots, one thread bound to an index beyond the registry's worker
  // count (falls back to the shared slot) and two unbound threads (shared slot, fetch_add).
  for (uint32_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      ScopedWorkerBinding bind(w);
      for (uint64_t i = 0; i < kPerThread; ++i) counter->inc();
    });
  }
  threads.emplace_back([&] {
    ScopedWorkerBinding bind(kWorkers + 7);
    for (uint64_t i = 0; i < kPerThread; ++i) counter->inc();
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 0; i < kPerThread; ++i) counter->inc(2);
    });
  }
  // Scrape concurrently: values must never go backwards.
  uint64_t last = 0;
  bool monotone = true;
  std::thread scraper([&] {
    for (int i = 0; i < 1000; ++i) {
      uint64_t v = counter->value();
      if (v < last) monotone = false;
      last = v;
    }
  });
  for (auto& t : threads) t.join();
  scraper.join();
  uint64_t expected = kPerThread * (kWorkers + 1) + 2 * 2 * kPerThread;
  EXPECT_EQ(counter->value(), expected)
      << "expected the exact sum of all increments from " << threads.size() << " threads";
  EXPECT_TRUE(monotone) << "a concurrent scrape saw the counter go backwards";
}

TEST(StatsGauge, AddSubAcrossThreadsAndSet) {
  Registry registry(2);
  auto gauge = registry.gauge("test_active");
  std::thread a([&] {
    ScopedWorkerBinding bind(0);
    for (int i = 0; i < 1000; ++i) gauge->add();
  });
  std::thread b([&] {
    ScopedWorkerBinding bind(1);
    for (int i = 0; i < 400; ++i) gauge->sub();
  });
  a.join();
  b.join();
  EXPECT_EQ(gauge->value(), 600) << "1000 adds on worker 0 and 400 subs on worker 1";

  auto level = registry.gauge("test_level");
  level->set(42);
  level->set(7);
  EXPECT_EQ(level->value(), 7) << "set() replaces the shared slot's value";
}

TEST(StatsRegistry, SameNameAndLabelsReturnTheSameObject) {
  Registry registry(1);
  auto a = registry.counter("rq_total", {{"cluster", "a"}});
  auto a2 = registry.counter("rq_total", {{"cluster", "a"}});
  auto b = registry.counter("rq_total", {{"cluster", "b"}});
  EXPECT_EQ(a.get(), a2.get()) << "same (name, labels) must return the same counter";
  EXPECT_NE(a.get(), b.get()) << "different labels must be different series";
  a->inc(5);
  EXPECT_EQ(a2->value(), 5u);
  EXPECT_EQ(b->value(), 0u);

  auto h = registry.histogram("lat", {{"route", "r"}});
  EXPECT_EQ(h.get(), registry.histogram("lat", {{"route", "r"}}).get());
  auto g = registry.gauge("active");
  EXPECT_EQ(g.get(), registry.gauge("active").get());
}

TEST(StatsRegistry, PruneDropsOnlyUnheldMetrics) {
  Registry registry(1);
  auto kept = registry.counter("a_total", {{"cluster", "kept"}});
  kept->inc(3);
  registry.counter("a_total", {{"cluster", "gone"}})->inc(9);
  registry.gauge("b");
  EXPECT_EQ(registry.prune(), 2u) << "the unheld counter series and the unheld gauge";
  EXPECT_EQ(registry.renderText(), "a_total{cluster=\"kept\"}: 3\n");
  EXPECT_EQ(registry.counter("a_total", {{"cluster", "kept"}})->value(), 3u);
}

using StatsRegistryDeathTest = ::testing::Test;

TEST_F(StatsRegistryDeathTest, NamingRulesAndTypeConflictsAreFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Registry registry(1);
  registry.gauge("thing");
  EXPECT_DEATH(registry.histogram("thing"), "thing already registered as a gauge");
  EXPECT_DEATH(registry.counter("requests"), "counter names must end in _total");
  EXPECT_DEATH(registry.gauge("open_total"), "counter names must end in _total");
  EXPECT_DEATH(registry.counter("9bad_total"), "invalid metric name");
  EXPECT_DEATH(registry.counter("ok_total", {{"bad-key", "v"}}), "invalid label name bad-key");
  EXPECT_DEATH(registry.counter("ok_total", {{"k", "1"}, {"k", "2"}}), "duplicate label name k");
  EXPECT_DEATH(registry.histogram("lat", {{"le", "1"}}), "`le` is reserved");
}

TEST(StatsHistogram, BucketBoundariesAreInclusiveUpperBounds) {
  EXPECT_EQ(Histogram::bucketFor(0), 0u);
  EXPECT_EQ(Histogram::bucketFor(500'000), 0u) << "exactly 0.5 ms belongs to le=0.5";
  EXPECT_EQ(Histogram::bucketFor(500'001), 1u) << "just above 0.5 ms belongs to le=1";
  EXPECT_EQ(Histogram::bucketFor(1'000'000), 1u);
  EXPECT_EQ(Histogram::bucketFor(60'000'000'000), 15u) << "exactly 60 s belongs to le=60000";
  EXPECT_EQ(Histogram::bucketFor(60'000'000'001), 16u) << "above 60 s belongs to +Inf";
}

TEST(StatsHistogram, SnapshotIsCumulativeWithSumInMs) {
  Registry registry(2);
  auto h = registry.histogram("lat");
  {
    ScopedWorkerBinding bind(0);
    h->record(microseconds(300));  // le=0.5
    h->record(milliseconds(3));    // le=5
  }
  {
    ScopedWorkerBinding bind(1);
    h->record(milliseconds(3));          // le=5
    h->record(std::chrono::minutes(2));  // +Inf
  }
  h->record(std::chrono::nanoseconds(-5));  // clamps to 0, shared slot
  HistogramSnapshot s = h->snapshot();
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.cumulative[0], 2u) << "0.3 ms and the clamped negative value";
  EXPECT_EQ(s.cumulative[2], 2u) << "nothing in (1, 2.5]";
  EXPECT_EQ(s.cumulative[3], 4u) << "two 3 ms observations in (2.5, 5]";
  EXPECT_EQ(s.cumulative[15], 4u);
  EXPECT_EQ(s.cumulative[16], 5u) << "+Inf holds everything";
  EXPECT_DOUBLE_EQ(s.sum_ms, 0.3 + 3 + 3 + 120000);
}

TEST(StatsHistogram, QuantilesInterpolateLikePrometheus) {
  Registry registry(1);
  auto h = registry.histogram("lat");
  EXPECT_TRUE(std::isnan(h->snapshot().quantile(0.5))) << "no observations: NaN";
  for (int i = 0; i < 100; ++i) h->record(milliseconds(2));  // all in (1, 2.5]
  HistogramSnapshot s = h->snapshot();
  EXPECT_DOUBLE_EQ(s.quantile(0.5), 1.75) << "rank 50 of 100 in (1,2.5] interpolates to 1.75";
  EXPECT_DOUBLE_EQ(s.quantile(0.99), 1 + 1.5 * 0.99);
  EXPECT_DOUBLE_EQ(s.quantile(0), 1.0) << "rank 0 is the lower edge of the first non-empty bucket";

  for (int i = 0; i < 100; ++i) h->record(milliseconds(40));  // (25, 50]
  s = h->snapshot();
  EXPECT_DOUBLE_EQ(s.quantile(0.5), 2.5) << "rank 100 of 200 is the top of the first bucket";
  EXPECT_DOUBLE_EQ(s.quantile(0.99), 25 + 25 * 0.98);

  auto slow = registry.histogram("slow");
  slow->record(std::chrono::minutes(5));
  EXPECT_DOUBLE_EQ(slow->snapshot().quantile(0.5), 60000)
      << "a quantile in the +Inf bucket reports the largest finite bound";
}

TEST(StatsRender, PrometheusGolden) {
  Registry registry(2);
  registry.counter(names::kClusterUpstreamRqTotal, {{"cluster", "b"}})->inc(7);
  {
    ScopedWorkerBinding bind(1);
    registry.counter(names::kClusterUpstreamRqTotal, {{"cluster", "a"}})->inc(3);
    registry.gauge("weft_test_active")->add(2);
  }
  registry.counter(names::kClusterUpstreamRqXx, {{"cluster", "a"}, {"response_code_class", "2xx"}})
      ->inc();
  auto h = registry.histogram("weft_test_rq_time", {{"route", "r1"}});
  h->record(microseconds(250));
  h->record(milliseconds(20));
  h->record(milliseconds(20));

  const std::string expected =
      "# HELP weft_cluster_upstream_rq_total Requests sent upstream.\n"
      "# TYPE weft_cluster_upstream_rq_total counter\n"
      "weft_cluster_upstream_rq_total{cluster=\"a\"} 3\n"
      "weft_cluster_upstream_rq_total{cluster=\"b\"} 7\n"
      "# HELP weft_cluster_upstream_rq_xx_total Upstream responses by status class.\n"
      "# TYPE weft_cluster_upstream_rq_xx_total counter\n"
      "weft_cluster_upstream_rq_xx_total{cluster=\"a\",response_code_class=\"2xx\"} 1\n"
      "# TYPE weft_test_active gauge\n"
      "weft_test_active 2\n"
      "# TYPE weft_test_rq_time histogram\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"0.5\"} 1\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"1\"} 1\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"2.5\"} 1\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"5\"} 1\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"10\"} 1\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"25\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"50\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"100\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"250\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"500\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"1000\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"2500\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"5000\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"10000\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"30000\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"60000\"} 3\n"
      "weft_test_rq_time_bucket{route=\"r1\",le=\"+Inf\"} 3\n"
      "weft_test_rq_time_sum{route=\"r1\"} 40.25\n"
      "weft_test_rq_time_count{route=\"r1\"} 3\n";
  std::string got = registry.renderPrometheus();
  EXPECT_EQ(got, expected) << "--- expected ---\n" << expected << "--- got ---\n" << got;
}

TEST(StatsRender, LabelValuesAreEscaped) {
  Registry registry(1);
  registry.counter("esc_total", {{"path", "C:\\logs\\\"a\"\nb"}})->inc();
  EXPECT_EQ(registry.renderPrometheus(),
            "# TYPE esc_total counter\n"
            "esc_total{path=\"C:\\\\logs\\\\\\\"a\\\"\\nb\"} 1\n");
  EXPECT_EQ(registry.renderText(), "esc_total{path=\"C:\\\\logs\\\\\\\"a\\\"\\nb\"}: 1\n");
  EXPECT_EQ(
      registry.renderJson(),
      "{\"stats\":[{\"name\":\"esc_total\",\"labels\":{\"path\":\"C:\\\\logs\\\\\\\"a\\\"\\nb\"},"
      "\"type\":\"counter\",\"value\":1}]}");
}

TEST(StatsRender, TextAndJson) {
  Registry registry(1);
  registry.counter("b_total", {{"listener", "l"}})->inc(4);
  registry.gauge("a_active")->sub(1);
  auto h = registry.histogram("c_time");
  registry.histogram("d_time");
  for (int i = 0; i < 100; ++i) h->record(milliseconds(2));
  EXPECT_EQ(registry.renderText(),
            "a_active: -1\n"
            "b_total{listener=\"l\"}: 4\n"
            "c_time: P50=1.75 P99=2.485 count=100\n"
            "d_time: P50=- P99=- count=0\n");
  EXPECT_EQ(
      registry.renderJson(),
      "{\"stats\":["
      "{\"name\":\"a_active\",\"labels\":{},\"type\":\"gauge\",\"value\":-1},"
      "{\"name\":\"b_total\",\"labels\":{\"listener\":\"l\"},\"type\":\"counter\",\"value\":4},"
      "{\"name\":\"c_time\",\"labels\":{},\"type\":\"histogram\",\"count\":100,"
      "\"sum_ms\":200,\"p50\":1.75,\"p99\":2.485},"
      "{\"name\":\"d_time\",\"labels\":{},\"type\":\"histogram\",\"count\":0,"
      "\"sum_ms\":0,\"p50\":null,\"p99\":null}]}");
}

TEST(StatsRender, ConstantLabelsGoInFrontOfEverySeries) {
  Registry r(1);
  r.counter("a_total", {{"cluster", "c"}})->inc(2);
  r.gauge("g")->set(1);
  r.setConstantLabels({{"appmesh_mesh", "m"}, {"cluster", "ignored"}});
  std::string prom = r.renderPrometheus();
  EXPECT_NE(prom.find("a_total{appmesh_mesh=\"m\",cluster=\"c\"} 2\n"), std::string::npos)
      << "a series keeps its own value of a label it has; got:\n"
      << prom;
  EXPECT_NE(prom.find("g{appmesh_mesh=\"m\",cluster=\"ignored\"} 1\n"), std::string::npos) << prom;
  EXPECT_NE(r.renderText().find("g{appmesh_mesh=\"m\",cluster=\"ignored\"}: 1"), std::string::npos)
      << r.renderText();
  EXPECT_NE(r.renderJson().find("\"labels\":{\"appmesh_mesh\":\"m\",\"cluster\":\"c\"}"),
            std::string::npos)
      << r.renderJson();
  r.setConstantLabels({});
  EXPECT_NE(r.renderPrometheus().find("\ng 1\n"), std::string::npos) << r.renderPrometheus();
  EXPECT_TRUE(r.constantLabels().empty());
}

TEST(StatsHelpers, ResponseCodeClassAndHelp) {
  EXPECT_EQ(responseCodeClass(101), "1xx");
  EXPECT_EQ(responseCodeClass(200), "2xx");
  EXPECT_EQ(responseCodeClass(304), "3xx");
  EXPECT_EQ(responseCodeClass(404), "4xx");
  EXPECT_EQ(responseCodeClass(599), "5xx");
  EXPECT_EQ(responseCodeClass(0), "other");
  EXPECT_EQ(responseCodeClass(600), "other");
  EXPECT_FALSE(helpFor(names::kListenerDownstreamCxTotal).empty());
  EXPECT_FALSE(helpFor(names::kAccessLogDropped).empty());
  EXPECT_TRUE(helpFor("not_a_known_metric").empty());
}

}  // namespace
}  // namespace weft::stats
