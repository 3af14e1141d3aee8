// envoy_descriptors_test.cc — upstream's load errors on upstream's own files
// (tests/fixtures/envoy/errors, ORIGIN.md), and the matching order of find_limit().
#include "config/envoy_descriptors.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace fg::config::envoy {
namespace {

ConfigFile fixture(const std::string& name) {
  std::ifstream in(std::string(FG_SOURCE_DIR) + "/tests/fixtures/envoy/errors/" + name);
  std::ostringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << name;
  return ConfigFile{name, text.str()};
}

std::string load_error(std::vector<ConfigFile> files, bool merge = false) {
  auto r = load_descriptor_config(files, LoadOptions{.merge_domains = merge});
  return r ? "loaded" : r.error().message;
}

TEST(EnvoyDescriptors, UpstreamLoadErrors) {
  EXPECT_EQ(load_error({fixture("empty_domain.yaml")}),
            "empty_domain.yaml: config file cannot have empty domain");
  EXPECT_EQ(load_error({fixture("basic_config.yaml"), fixture("duplicate_domain.yaml")}),
            "duplicate_domain.yaml: duplicate domain 'test-domain' in config file");
  EXPECT_EQ(load_error({fixture("empty_key.yaml")}), "empty_key.yaml: descriptor has empty key");
  EXPECT_EQ(load_error({fixture("duplicate_key.yaml")}),
            "duplicate_key.yaml: duplicate descriptor composite key 'test-domain.key1_value1'");
  EXPECT_EQ(load_error({fixture("bad_limit_unit.yaml")}),
            "bad_limit_unit.yaml: invalid rate limit unit 'foo'");
  EXPECT_EQ(load_error({fixture("replaces_self.yaml")}),
            "replaces_self.yaml: replaces should not contain name of same descriptor");
  EXPECT_EQ(load_error({fixture("replaces_empty.yaml")}),
            "replaces_empty.yaml: should not have an empty replaces entry");
  EXPECT_EQ(load_error({fixture("misspelled_key.yaml")}),
            "misspelled_key.yaml: config error, unknown key 'ratelimit'");
  EXPECT_EQ(load_error({fixture("non_string_key.yaml")}),
            "non_string_key.yaml: config error, key is not of type string: 0.25");
  EXPECT_EQ(load_error({fixture("non_map_list.yaml")}),
            "non_map_list.yaml: config error, yaml file contains list of type other than map: a");
  EXPECT_EQ(load_error({fixture("unlimited_with_unit.yaml")}),
            "unlimited_with_unit.yaml: should not specify rate limit unit when unlimited");
  // The parser's own words differ (yaml-cpp's, not Go's yaml.v2); the file and the prefix do not.
  EXPECT_TRUE(load_error({fixture("bad_yaml.yaml")})
                  .starts_with("bad_yaml.yaml: error loading config file: yaml: "));
  // The same domain twice: an error, unless MERGE_DOMAIN_CONFIG; then one tree, and a key that
  // both files define is still a duplicate.
  EXPECT_EQ(load_error({fixture("merge_domain_key1.yaml"), fixture("merge_domain_key2.yaml")}),
            "merge_domain_key2.yaml: duplicate domain 'test-domain' in config file");
  EXPECT_EQ(
      load_error({fixture("merge_domain_key1.yaml"), fixture("merge_domain_key2.yaml")}, true),
      "loaded");
  EXPECT_TRUE(
      load_error({fixture("merge_domain_key1.yaml"), fixture("merge_domain_key1.yaml")}, true)
          .find("duplicate descriptor composite key") != std::string::npos);
  EXPECT_EQ(load_error({ConfigFile{"st.yaml",
                                   "domain: d\ndescriptors:\n  - key: k\n    value: v\n"
                                   "    share_threshold: true\n"}}),
            "st.yaml: share_threshold can only be used with wildcard values (containing '*'), "
            "but found key 'k_v'");
}

TEST(EnvoyDescriptors, MatchesExactThenWildcardThenDefault) {
  auto cfg = load_descriptor_config(std::vector<ConfigFile>{fixture("wildcard.yaml")}, {});
  ASSERT_TRUE(cfg) << cfg.error().message;
  const auto rule_of = [&](std::vector<Entry> entries) -> std::string {
    const Match m = find_limit(*cfg, "test-domain", entries);
    return m.rule == nullptr ? "none" : m.rule->full_key;
  };
  EXPECT_EQ(rule_of({{"wild", "foo"}}), "test-domain.wild_foo*");
  EXPECT_EQ(rule_of({{"wild", "foobar"}}), "test-domain.wild_foo*");
  EXPECT_EQ(rule_of({{"wild", "bar"}}), "none");
  EXPECT_EQ(rule_of({{"noWild", "foo"}}), "test-domain.noWild_foo");
  EXPECT_EQ(rule_of({{"noWild", "foobar"}}), "none");
  EXPECT_EQ(rule_of({{"noVal", "anything"}}), "test-domain.noVal");
  EXPECT_EQ(rule_of({{"midWild", "barab"}}), "test-domain.midWild_bar*b");
  EXPECT_EQ(rule_of({{"midWild", "barac"}}), "none");
  EXPECT_EQ(rule_of({{"multiWild", "foo1bar2baz"}}), "test-domain.multiWild_foo*bar*baz");
  EXPECT_EQ(rule_of({{"multiWild", "foobazbar"}}), "none");
  EXPECT_EQ(rule_of({{"nestedWild", "val1"}, {"wild", "goose"}}),
            "test-domain.nestedWild_val1.wild_goo*");
  EXPECT_EQ(rule_of({{"nestedWild", "val1"}}), "none");  // no rule at that depth
  EXPECT_EQ(find_limit(*cfg, "other-domain", std::vector<Entry>{{"noVal", "x"}}).rule, nullptr);
}

TEST(EnvoyDescriptors, UnitsAsUpstreamDefinesThem) {
  EXPECT_EQ(unit_seconds(Unit::kWeek), 7 * 86400);
  EXPECT_EQ(unit_seconds(Unit::kMonth), 30 * 86400);
  EXPECT_EQ(unit_seconds(Unit::kYear), 365 * 86400);
  EXPECT_EQ(parse_unit("Minute"), Unit::kMinute);
  EXPECT_EQ(parse_unit("unknown"), std::nullopt);
}

}  // namespace
}  // namespace fg::config::envoy
