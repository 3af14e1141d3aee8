#include "store/redis/cluster.h"

#include <gtest/gtest.h>

namespace fg::redis {
namespace {

Reply integer(std::int64_t v) {
  Reply r;
  r.type = Reply::Type::kInteger;
  r.integer = v;
  return r;
}
Reply string(std::string s) {
  Reply r;
  r.type = Reply::Type::kString;
  r.str = std::move(s);
  return r;
}
Reply array(std::vector<Reply> e) {
  Reply r;
  r.type = Reply::Type::kArray;
  r.elements = std::move(e);
  return r;
}
Reply node(std::string host, int port) {
  return array({string(std::move(host)), integer(port), string("0123abcd")});
}

TEST(ParseNodeAddress, ReadsHostAndPort) {
  EXPECT_EQ(parse_node_address("127.0.0.1:7000"), (NodeAddress{"127.0.0.1", 7000}));
  EXPECT_EQ(parse_node_address("127.0.0.1:7000@17000"), (NodeAddress{"127.0.0.1", 7000}));
  EXPECT_EQ(parse_node_address("::1:7000"), (NodeAddress{"::1", 7000}));
  EXPECT_EQ(parse_node_address("[::1]:7000"), (NodeAddress{"::1", 7000}));
  EXPECT_FALSE(parse_node_address("127.0.0.1"));
  EXPECT_FALSE(parse_node_address("127.0.0.1:0"));
  EXPECT_FALSE(parse_node_address("127.0.0.1:70000"));
  EXPECT_FALSE(parse_node_address(":7000"));
}

TEST(ParseRedirect, ReadsMovedAndAsk) {
  auto moved = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->kind, RedirectKind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->node, (NodeAddress{"127.0.0.1", 6381}));
  auto ask = parse_redirect("ASK 0 10.0.0.2:7001");
  ASSERT_TRUE(ask);
  EXPECT_EQ(ask->kind, RedirectKind::kAsk);
  EXPECT_EQ(ask->slot, 0);
  EXPECT_FALSE(parse_redirect("ERR Function not found"));
  EXPECT_FALSE(parse_redirect("MOVED 16384 127.0.0.1:1"));
  EXPECT_FALSE(parse_redirect("MOVED x 127.0.0.1:1"));
  EXPECT_FALSE(parse_redirect("MOVED 1"));
}

TEST(ParseClusterSlots, ReadsRangesMastersAndReplicas) {
  const Reply reply = array({
      array({integer(0), integer(5460), node("127.0.0.1", 7000), node("127.0.0.1", 7003)}),
      array({integer(5461), integer(10922), node("", 7001)}),
  });
  auto ranges = parse_cluster_slots(reply, NodeAddress{"10.1.1.1", 7001});
  ASSERT_TRUE(ranges.has_value()) << ranges.error().to_string();
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].first, 0);
  EXPECT_EQ((*ranges)[0].last, 5460);
  EXPECT_EQ((*ranges)[0].master, (NodeAddress{"127.0.0.1", 7000}));
  ASSERT_EQ((*ranges)[0].replicas.size(), 1u);
  EXPECT_EQ((*ranges)[0].replicas[0].port, 7003);
  // An empty host means "the node you asked".
  EXPECT_EQ((*ranges)[1].master, (NodeAddress{"10.1.1.1", 7001}));
}

TEST(ParseClusterSlots, RejectsWhatIsNotASlotMap) {
  Reply error;
  error.type = Reply::Type::kError;
  error.str = "ERR This instance has cluster support disabled";
  EXPECT_EQ(parse_cluster_slots(error, {}).error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(parse_cluster_slots(array({array({integer(5), integer(1), node("h", 1)})}), {}));
  EXPECT_FALSE(parse_cluster_slots(array({array({integer(0), integer(16384), node("h", 1)})}), {}));
  EXPECT_FALSE(parse_cluster_slots(array({integer(1)}), {}));
  EXPECT_FALSE(parse_cluster_slots(string("x"), {}));
}

}  // namespace
}  // namespace fg::redis
