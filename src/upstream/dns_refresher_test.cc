#include "upstream/dns_refresher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "common/time.h"
#include "common/timer.h"

namespace weft::upstream {
namespace {

// Records lookups; the test completes them by hand. Honours the Resolver contract (never calls
// back from inside resolve(), never after cancel()).
class FakeResolver final : public Resolver {
 public:
  struct Pending {
    QueryId id;
    std::string hostname;
    DnsFamily family;
    Callback callback;
  };

  QueryId resolve(const std::string& hostname, DnsFamily family, Callback callback) override {
    QueryId id = next_id_++;
    pending.push_back({id, hostname, family, std::move(callback)});
    ++resolves;
    return id;
  }
  void cancel(QueryId id) override {
    cancelled.push_back(id);
    pending.erase(std::remove_if(pending.begin(), pending.end(),
                                 [id](const Pending& p) { return p.id == id; }),
                  pending.end());
  }

  bool hasPending(const std::string& name) const {
    return std::any_of(pending.begin(), pending.end(),
                       [&](const Pending& p) { return p.hostname == name; });
  }
  // Completes the oldest lookup of `name`.
  void complete(const std::string& name, Result<DnsAnswer> result) {
    auto it = std::find_if(pending.begin(), pending.end(),
                           [&](const Pending& p) { return p.hostname == name; });
    ASSERT_NE(it, pending.end()) << "no lookup of " << name << " is outstanding";
    Callback cb = std::move(it->callback);
    pending.erase(it);
    cb(std::move(result));
  }
  void answer(const std::string& name, std::vector<std::string> ips, Duration ttl) {
    DnsAnswer a;
    for (const std::string& ip : ips) a.addresses.push_back(*net::parseAddress(ip, 0));
    a.ttl = ttl;
    complete(name, std::move(a));
  }
  void fail(const std::string& name) {
    complete(name, makeError("DNS lookup of \"" + name + "\" failed: timeout", kDnsTimeout));
  }

  std::deque<Pending> pending;
  std::vector<QueryId> cancelled;
  int resolves = 0;

 private:
  QueryId next_id_ = 1;
};

class DnsRefresherTest : public ::testing::Test {
 protected:
  void make(std::vector<DnsEndpoint> endpoints, DnsRefresherOptions options = {}) {
    refresher_ = std::make_unique<DnsRefresher>(resolver_, timers_, std::move(endpoints), options,
                                                [this](const std::vector<ResolvedEndpoint>& list) {
                                                  ++updates_;
                                                  last_ = format(list);
                                                });
    refresher_->start();
  }
  void advance(Duration d) {
    time_.advance(d);
    timers_.runExpired();
  }
  static std::string format(const std::vector<ResolvedEndpoint>& list) {
    std::string out;
    for (const auto& e : list) {
      if (!out.empty()) out += " ";
      out += e.hostname + "=" + e.address.toString();
    }
    return out;
  }

  SimTimeSource time_;
  TimerQueue timers_{time_};
  FakeResolver resolver_;
  std::unique_ptr<DnsRefresher> refresher_;
  int updates_ = 0;
  std::string last_;
};

TEST_F(DnsRefresherTest, FirstUpdateWaitsForEveryName) {
  make({{"a.svc", 80}, {"b.svc", 81}});
  EXPECT_TRUE(resolver_.hasPending("a.svc"));
  EXPECT_TRUE(resolver_.hasPending("b.svc"));
  resolver_.answer("a.svc", {"10.0.0.2", "10.0.0.1"}, seconds(30));
  EXPECT_EQ(updates_, 0) << "no update before b.svc has an answer or a failure";
  EXPECT_FALSE(refresher_->initialized());
  resolver_.answer("b.svc", {"10.0.0.3"}, seconds(30));
  EXPECT_EQ(updates_, 1);
  EXPECT_TRUE(refresher_->initialized());
  EXPECT_EQ(last_, "a.svc=10.0.0.1:80 a.svc=10.0.0.2:80 b.svc=10.0.0.3:81");
}

TEST_F(DnsRefresherTest, NoEndpointsPublishesEmptyListAtOnce) {
  make({});
  EXPECT_EQ(updates_, 1);
  EXPECT_EQ(last_, "");
  EXPECT_TRUE(refresher_->initialized());
}

TEST_F(DnsRefresherTest, ReResolvesWhenTtlExpires) {
  make({{"a.svc", 80}});
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(30));
  EXPECT_FALSE(resolver_.hasPending("a.svc"));
  advance(milliseconds(29'999));
  EXPECT_FALSE(resolver_.hasPending("a.svc")) << "re-resolved before the 30 s TTL ran out";
  advance(milliseconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc")) << "not re-resolved when the 30 s TTL ran out";
}

TEST_F(DnsRefresherTest, ShortTtlIsRaisedToMinRefresh) {
  DnsRefresherOptions opts;
  opts.min_refresh = seconds(5);
  make({{"a.svc", 80}}, opts);
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(1));
  advance(milliseconds(4'999));
  EXPECT_FALSE(resolver_.hasPending("a.svc")) << "TTL 1 s must be raised to min_refresh 5 s";
  advance(milliseconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc"));
  // TTL 0 (hosts file, literal) also means min_refresh.
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(0));
  advance(milliseconds(4'999));
  EXPECT_FALSE(resolver_.hasPending("a.svc"));
  advance(milliseconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc"));
}

TEST_F(DnsRefresherTest, LongTtlIsCappedAtMaxRefresh) {
  make({{"a.svc", 80}});
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(86400));
  advance(seconds(299));
  EXPECT_FALSE(resolver_.hasPending("a.svc"));
  advance(seconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc")) << "a day-long TTL must be capped at 300 s";
}

TEST_F(DnsRefresherTest, FailureKeepsLastAnswerAndBacksOff) {
  make({{"a.svc", 80}});
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(10));
  ASSERT_EQ(updates_, 1);
  advance(seconds(10));
  resolver_.fail("a.svc");
  EXPECT_EQ(updates_, 1) << "a failure must not publish";
  EXPECT_EQ(format(refresher_->current()), "a.svc=10.0.0.1:80") << "last answer must be kept";

  // Backoff 1 s, 2 s, 4 s, ... after consecutive failures.
  for (Duration wait : {seconds(1), seconds(2), seconds(4)}) {
    advance(wait - milliseconds(1));
    EXPECT_FALSE(resolver_.hasPending("a.svc"))
        << "retried before " << std::chrono::duration_cast<seconds>(wait).count() << " s";
    advance(milliseconds(1));
    ASSERT_TRUE(resolver_.hasPending("a.svc"))
        << "no retry after " << std::chrono::duration_cast<seconds>(wait).count() << " s";
    resolver_.fail("a.svc");
  }
  EXPECT_EQ(updates_, 1);

  // Recovery resets the backoff and goes back to TTL scheduling.
  advance(seconds(8));
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(10));
  EXPECT_EQ(updates_, 1) << "same answer as before: no update";
  advance(seconds(10));
  resolver_.fail("a.svc");
  advance(seconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc")) << "backoff should restart at 1 s after a success";
}

TEST_F(DnsRefresherTest, BackoffIsCapped) {
  DnsRefresherOptions opts;
  opts.failure_backoff_base = seconds(1);
  opts.failure_backoff_max = seconds(3);
  make({{"a.svc", 80}}, opts);
  resolver_.fail("a.svc");
  advance(seconds(1));
  resolver_.fail("a.svc");
  advance(seconds(2));
  resolver_.fail("a.svc");
  advance(milliseconds(2'999));
  EXPECT_FALSE(resolver_.hasPending("a.svc"));
  advance(milliseconds(1));
  EXPECT_TRUE(resolver_.hasPending("a.svc")) << "backoff must stop growing at 3 s";
}

TEST_F(DnsRefresherTest, FirstFailurePublishesEmptyThenRecovers) {
  make({{"a.svc", 80}});
  resolver_.fail("a.svc");
  EXPECT_EQ(updates_, 1) << "the first attempt, even failed, ends warming";
  EXPECT_EQ(last_, "");
  advance(seconds(1));
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(10));
  EXPECT_EQ(updates_, 2);
  EXPECT_EQ(last_, "a.svc=10.0.0.1:80");
}

TEST_F(DnsRefresherTest, PublishesOnlyOnChange) {
  make({{"a.svc", 80}});
  resolver_.answer("a.svc", {"10.0.0.1", "10.0.0.2"}, seconds(5));
  ASSERT_EQ(updates_, 1);
  advance(seconds(5));
  resolver_.answer("a.svc", {"10.0.0.2", "10.0.0.1"}, seconds(5));
  EXPECT_EQ(updates_, 1) << "same addresses in another order are not a change";
  advance(seconds(5));
  resolver_.answer("a.svc", {"10.0.0.2", "10.0.0.3"}, seconds(5));
  EXPECT_EQ(updates_, 2);
  EXPECT_EQ(last_, "a.svc=10.0.0.2:80 a.svc=10.0.0.3:80");
  advance(seconds(5));
  resolver_.answer("a.svc", {"10.0.0.2", "10.0.0.3"}, seconds(5));
  EXPECT_EQ(updates_, 2);
}

TEST_F(DnsRefresherTest, PassesFamilyAndCancelsOnDestruction) {
  DnsRefresherOptions opts;
  opts.family = DnsFamily::kV6Only;
  make({{"a.svc", 80}, {"b.svc", 80}}, opts);
  ASSERT_EQ(resolver_.pending.size(), 2u);
  EXPECT_EQ(resolver_.pending[0].family, DnsFamily::kV6Only);
  resolver_.answer("a.svc", {"::1"}, seconds(5));
  Resolver::QueryId outstanding = resolver_.pending[0].id;
  refresher_.reset();
  EXPECT_EQ(resolver_.cancelled, std::vector<Resolver::QueryId>({outstanding}))
      << "only b.svc's lookup was outstanding";
  EXPECT_EQ(timers_.size(), 0u) << "the refresher's timers must be gone with it";
}

TEST_F(DnsRefresherTest, FirstAddressOnlyTakesTheAnswersFirstAddress) {
  DnsRefresherOptions opts;
  opts.first_address_only = true;
  make({{"lb.svc", 80}}, opts);
  resolver_.answer("lb.svc", {"10.0.0.9", "10.0.0.1"}, seconds(5));
  EXPECT_EQ(last_, "lb.svc=10.0.0.9:80") << "the first address as answered, not the lowest";
  advance(seconds(5));
  resolver_.answer("lb.svc", {"10.0.0.1", "10.0.0.9"}, seconds(5));
  EXPECT_EQ(last_, "lb.svc=10.0.0.1:80") << "a new answer's first address replaces it";
  EXPECT_EQ(updates_, 2);
}

TEST_F(DnsRefresherTest, SameAddressUnderTwoNamesIsKeptOnceInHostSet) {
  make({{"a.svc", 80}, {"b.svc", 80}});
  resolver_.answer("a.svc", {"10.0.0.1"}, seconds(5));
  resolver_.answer("b.svc", {"10.0.0.1", "10.0.0.2"}, seconds(5));
  EXPECT_EQ(last_, "a.svc=10.0.0.1:80 b.svc=10.0.0.1:80 b.svc=10.0.0.2:80");
  HostSetPtr set = makeHostSet(refresher_->current());
  ASSERT_EQ(set->size(), 2u);
  EXPECT_EQ((*set)[0].addressString(), "10.0.0.1:80");
  EXPECT_EQ((*set)[0].hostname(), "a.svc");
  EXPECT_EQ((*set)[1].addressString(), "10.0.0.2:80");
}

}  // namespace
}  // namespace weft::upstream
