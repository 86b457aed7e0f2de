// metrics::Registry: series identity and the Prometheus text exposition format.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "metrics/registry.h"

namespace mmchat::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RegistryTest, SameNameAndLabelsGiveTheSameSeries) {
  Registry r;
  Counter* a = r.GetCounter("requests_total", "Requests.", R"(route="/api/me",status="200")");
  Counter* b = r.GetCounter("requests_total", "Requests.", R"(route="/api/me",status="200")");
  Counter* c = r.GetCounter("requests_total", "Requests.", R"(route="/api/me",status="404")");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  a->Inc();
  b->Inc(2);
  EXPECT_EQ(a->Value(), 3u);
  EXPECT_EQ(c->Value(), 0u);

  Gauge* g1 = r.GetGauge("connections", "Open connections.");
  Gauge* g2 = r.GetGauge("connections", "Open connections.");
  EXPECT_EQ(g1, g2);

  Histogram* h1 = r.GetHistogram("latency_seconds", "Latency.", "", {0.1, 1});
  Histogram* h2 = r.GetHistogram("latency_seconds", "Latency.", "", {0.1, 1});
  Histogram* h3 = r.GetHistogram("latency_seconds", "Latency.", R"(route="/x")", {0.1, 1});
  EXPECT_EQ(h1, h2);
  EXPECT_NE(h1, h3);
}

TEST(RegistryTest, OneTypePerName) {
  Registry r;
  r.GetCounter("things", "Things.");
  EXPECT_THROW(r.GetGauge("things", "Things."), std::logic_error);
}

TEST(RegistryTest, EmptyRegistryRendersNothing) {
  Registry r;
  EXPECT_EQ(r.Render(), "");
}

TEST(RegistryTest, RendersCounterWithLabels) {
  Registry r;
  r.GetCounter("mmchat_http_requests_total", "HTTP requests by route and status.",
               R"(route="/api/me",status="200")")
      ->Inc(5);
  r.GetCounter("mmchat_http_requests_total", "HTTP requests by route and status.",
               R"(route="/api/login",status="401")")
      ->Inc();
  EXPECT_EQ(r.Render(),
            "# HELP mmchat_http_requests_total HTTP requests by route and status.\n"
            "# TYPE mmchat_http_requests_total counter\n"
            "mmchat_http_requests_total{route=\"/api/login\",status=\"401\"} 1\n"
            "mmchat_http_requests_total{route=\"/api/me\",status=\"200\"} 5\n");
}

TEST(RegistryTest, RendersGaugeWithoutLabels) {
  Registry r;
  Gauge* g = r.GetGauge("mmchat_connections", "Open connections.");
  g->Set(10);
  g->Add(-13);
  EXPECT_EQ(r.Render(),
            "# HELP mmchat_connections Open connections.\n"
            "# TYPE mmchat_connections gauge\n"
            "mmchat_connections -3\n");
}

TEST(RegistryTest, RendersHistogramCumulatively) {
  Registry r;
  Histogram* h = r.GetHistogram("mmchat_request_seconds", "Request latency.", R"(route="/api/me")",
                                {0.1, 1, 2.5});
  h->Observe(0.05);
  h->Observe(0.1);  // on a bound: counts in that bucket (le is "less or equal")
  h->Observe(0.5);
  h->Observe(3);
  h->Observe(7);
  EXPECT_EQ(r.Render(),
            "# HELP mmchat_request_seconds Request latency.\n"
            "# TYPE mmchat_request_seconds histogram\n"
            "mmchat_request_seconds_bucket{route=\"/api/me\",le=\"0.1\"} 2\n"
            "mmchat_request_seconds_bucket{route=\"/api/me\",le=\"1\"} 3\n"
            "mmchat_request_seconds_bucket{route=\"/api/me\",le=\"2.5\"} 3\n"
            "mmchat_request_seconds_bucket{route=\"/api/me\",le=\"+Inf\"} 5\n"
            "mmchat_request_seconds_sum{route=\"/api/me\"} 10.65\n"
            "mmchat_request_seconds_count{route=\"/api/me\"} 5\n");
}

TEST(RegistryTest, RendersUnlabelledHistogram) {
  Registry r;
  r.GetHistogram("h", "H.", "", {1})->Observe(0.25);
  EXPECT_EQ(r.Render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum 0.25\n"
            "h_count 1\n");
}

TEST(RegistryTest, EmptyHistogramRendersZeros) {
  Registry r;
  r.GetHistogram("h", "H.", "", LatencyBuckets());
  const std::string out = r.Render();
  EXPECT_THAT(out, HasSubstr("h_bucket{le=\"0.0005\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("h_bucket{le=\"10\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("h_bucket{le=\"+Inf\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("h_sum 0\n"));
  EXPECT_THAT(out, HasSubstr("h_count 0\n"));
}

TEST(RegistryTest, EachFamilyHasOneHelpAndTypeLine) {
  Registry r;
  r.GetCounter("b_total", "B.", "x=\"1\"")->Inc();
  r.GetCounter("b_total", "B.", "x=\"2\"")->Inc();
  r.GetGauge("a", "A.")->Set(1);
  const std::string out = r.Render();
  EXPECT_EQ(out,
            "# HELP a A.\n"
            "# TYPE a gauge\n"
            "a 1\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total{x=\"1\"} 1\n"
            "b_total{x=\"2\"} 1\n");
}

TEST(LatencyBucketsTest, AscendingFromHalfAMillisecondToTenSeconds) {
  const auto b = LatencyBuckets();
  ASSERT_FALSE(b.empty());
  EXPECT_DOUBLE_EQ(b.front(), 0.0005);
  EXPECT_DOUBLE_EQ(b.back(), 10);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
}

TEST(EscapeLabelTest, EscapesBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabel("plain/route"), "plain/route");
  EXPECT_EQ(EscapeLabel("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabel("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabel("two\nlines"), "two\\nlines");
  EXPECT_THAT(EscapeLabel("x\ny"), Not(HasSubstr("\n")));
}

}  // namespace
}  // namespace mmchat::metrics
