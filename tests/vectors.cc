#include "vectors.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "config/config.h"

namespace fg::test {
namespace {

[[noreturn]] void die(const std::string& file, const YAML::Node& n, const std::string& what) {
  std::fprintf(stderr, "%s:%d: bad vector: %s\n", file.c_str(), n.Mark().line + 1, what.c_str());
  std::abort();
}

Policy parse_policy(const std::string& file, const YAML::Node& n, std::size_t index) {
  Policy p;
  p.name = n["name"] ? n["name"].as<std::string>() : "p" + std::to_string(index);
  if (n["algorithm"]) {
    auto a = parse_algorithm(n["algorithm"].as<std::string>());
    if (!a) die(file, n, "unknown algorithm");
    p.algorithm = *a;
  }
  p.limit = n["limit"].as<std::int64_t>();
  // A concurrency policy's `lease` is its period (policy.h).
  const YAML::Node period_node = n["lease"] ? n["lease"] : n["period"];
  auto period = config::parse_duration(period_node.as<std::string>());
  if (!period) die(file, n, "bad period");
  p.period = *period;
  p.burst = n["burst"] ? n["burst"].as<std::int64_t>() : p.limit;
  p.shadow = n["shadow"] && n["shadow"].as<bool>();
  if (auto ok = validate_policy(p); !ok) die(file, n, ok.error().message);
  return p;
}

ExpectedDecision parse_expected(const std::string& file, const YAML::Node& n) {
  ExpectedDecision e;
  if (n["allowed"]) e.allowed = n["allowed"].as<bool>();
  if (n["remaining"]) e.remaining = n["remaining"].as<std::int64_t>();
  if (n["limit"]) e.limit = n["limit"].as<std::int64_t>();
  if (n["reset_after_us"]) e.reset_after_us = n["reset_after_us"].as<std::int64_t>();
  if (n["retry_after_us"]) e.retry_after_us = n["retry_after_us"].as<std::int64_t>();
  if (n["reason"]) {
    const auto r = n["reason"].as<std::string>();
    if (r == "over_limit") {
      e.reason = DenyReason::kOverLimit;
    } else if (r == "cost_exceeds_burst") {
      e.reason = DenyReason::kCostExceedsBurst;
    } else if (r == "none") {
      e.reason = DenyReason::kNone;
    } else {
      die(file, n, "unknown reason " + r);
    }
  }
  return e;
}

void compare_one(std::ostringstream& out, const std::string& who, const ExpectedDecision& e,
                 const Decision& d) {
  auto check = [&](const char* field, auto expected, auto actual) {
    if (expected && *expected != actual) {
      out << who << "." << field << ": expected " << *expected << ", got " << actual << "; ";
    }
  };
  check("allowed", e.allowed, d.allowed);
  check("remaining", e.remaining, d.remaining);
  check("limit", e.limit, d.limit);
  check("reset_after_us", e.reset_after_us, d.reset_after.count());
  check("retry_after_us", e.retry_after_us, d.retry_after.count());
  if (e.reason && *e.reason != d.reason) {
    out << who << ".reason: expected " << to_string(*e.reason) << ", got " << to_string(d.reason)
        << "; ";
  }
}

}  // namespace

std::vector<VectorCase> load_vectors(const std::string& path) {
  std::vector<VectorCase> out;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), e.what());
    std::abort();
  }
  const std::string file = std::filesystem::path(path).filename().string();
  for (const auto& c : root["cases"]) {
    VectorCase vc;
    vc.file = file;
    vc.name = c["name"].as<std::string>();
    if (c["policy"]) {
      vc.policies.push_back(parse_policy(file, c["policy"], 0));
    } else {
      std::size_t i = 0;
      for (const auto& p : c["policies"]) vc.policies.push_back(parse_policy(file, p, i++));
    }
    if (vc.policies.empty()) die(file, c, "case without policies");
    for (const auto& s : c["steps"]) {
      VectorStep step;
      step.line = s.Mark().line + 1;
      step.at_us = s["at_us"].as<std::int64_t>();
      if (s["cost"]) step.cost = s["cost"].as<std::int64_t>();
      if (s["allowed"]) step.allowed = s["allowed"].as<bool>();
      step.headline = parse_expected(file, s);
      step.headline.allowed.reset();  // step-level `allowed` is the verdict
      if (s["decisions"]) {
        for (const auto& d : s["decisions"]) step.decisions.push_back(parse_expected(file, d));
        if (step.decisions.size() != vc.policies.size()) die(file, s, "one decision per policy");
      }
      if (s["headline"]) step.headline_index = s["headline"].as<std::size_t>();
      if (s["refund"]) {
        step.refund_of = s["refund"].as<std::size_t>();
        if (*step.refund_of >= vc.steps.size() || vc.steps[*step.refund_of].refund_of) {
          die(file, s, "refund of a step that is not an earlier decision");
        }
        step.cost = vc.steps[*step.refund_of].cost;
      }
      if (s["release"]) {
        step.release_of = s["release"].as<std::size_t>();
        if (*step.release_of >= vc.steps.size() || vc.steps[*step.release_of].release_of ||
            vc.steps[*step.release_of].refund_of) {
          die(file, s, "release of a step that is not an earlier decision");
        }
      }
      vc.steps.push_back(std::move(step));
    }
    out.push_back(std::move(vc));
  }
  return out;
}

std::vector<VectorCase> load_concurrency_vectors() {
  return load_vectors(FG_SOURCE_DIR "/tests/vectors/concurrency/concurrency.yaml");
}

std::vector<VectorCase> load_all_vectors() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(FG_SOURCE_DIR "/tests/vectors")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<VectorCase> all;
  for (const auto& f : files) {
    auto cases = load_vectors(f);
    all.insert(all.end(), cases.begin(), cases.end());
  }
  return all;
}

std::string compare(const VectorStep& step, const Verdict& verdict) {
  std::ostringstream out;
  if (step.allowed && *step.allowed != verdict.allowed) {
    out << "verdict: expected " << (*step.allowed ? "allowed" : "denied") << "; ";
  }
  compare_one(out, "headline", step.headline, verdict.headline());
  if (step.headline_index && *step.headline_index != verdict.most_restrictive) {
    out << "headline: expected policy " << *step.headline_index << ", got "
        << verdict.most_restrictive << "; ";
  }
  for (std::size_t i = 0; i < step.decisions.size() && i < verdict.decisions.size(); ++i) {
    compare_one(out, "decisions[" + std::to_string(i) + "]", step.decisions[i],
                verdict.decisions[i]);
  }
  return out.str();
}

}  // namespace fg::test
