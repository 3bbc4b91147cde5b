// One whole feature run, end to end, through the real `factory` binary on the example
// repository (examples/textkit copied into a temporary git repository). Only the model provider
// is faked: the scripted fake (loopback HTTP, OpenAI wire format) answers the planners, the
// backlog agent, the `llm` builders' tool calls, the reviewer and the rebase agent, choosing
// each answer from what the request says (its prompt template, its task, its feedback), never
// from the order of the calls. Everything else is real: the example's gates (python compileall
// and unittest) in the sandbox, git worktrees and merges, the SQLite store.
//
// The feature's three tasks form a chain (normalize -> slugify -> tokenize), as both later tasks
// add an import to textkit/__init__.py: run side by side, one would conflict and be redone,
// adding attempts the figures below would have to guess.
//   normalize  its builder only case-folds in fold() until its spec says more: attempts 1 and 2
//              fail the unittest gate, the rebase agent writes spec version 2, attempt 3 passes.
//   slugify    the reviewer rejects attempt 1 (its docstring does not say how max_length cuts);
//              the builder fixes exactly what the reviewer's reasons say, and attempt 2 passes.
//   tokenize   passes at once.
// Then, from the store, the spec folder and git (not from the script): the planners overlapped,
// the backlog was repaired, the rebase and the review happened as promised, every task is
// merged on the integration branch whose final gates passed, and `factory stats --json` equals
// what the store holds.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_test_util.h"
#include "feature_test_util.h"
#include "llm/fake_provider.h"

namespace factory {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using llm::ToolCall;
using llm::fake::FakeProviderServer;
using llm::fake::FakeReply;
using llm::fake::RecordedRequest;
using testing::CliResult;
using testing::CliSandbox;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyVariable[] = "FEATURE_E2E_TEST_KEY";
constexpr char kRunId[] = "e2e";
constexpr char kFeatureId[] = "textkit-helpers";
constexpr int kPlannerDelayMs = 300;

// Only the rebased spec says it; the normalize builder writes a correct fold() only then.
constexpr char kRebasedSpecMarker[] = "NORMALIZE-SPEC-V2";
constexpr char kRebasedSpec[] =
    "NORMALIZE-SPEC-V2. Add textkit/normalize.py with collapse_whitespace(text) and fold(text). "
    "fold(text) must case-fold AND remove accents: decompose the case-folded text with "
    "unicodedata.normalize(\"NFKD\", ...) and drop every combining character "
    "(unicodedata.combining), so that fold(\"Crème Brûlée\") == \"creme brulee\".";
// The reviewer's reason for rejecting slugify's first attempt, and what the fix puts in the
// diff (the reviewer passes the task once its diff has it).
constexpr char kReviewReason[] =
    "textkit/slug.py: the docstring of slugify must say how max_length shortens a slug";
constexpr char kReviewFix[] = "whole words are kept while they fit";

constexpr char kApiComment[] =
    "# The public API: the backlog's tasks add their imports below, one per line.\n";

constexpr char kNormalizeCaseOnly[] = R"py("""Whitespace and case folding."""

import re

_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text):
    """Runs of whitespace become one space; leading and trailing whitespace goes."""
    return _WHITESPACE.sub(" ", text).strip()


def fold(text):
    """Case-folded text, for comparing words."""
    return text.casefold()
)py";

constexpr char kNormalize[] = R"py("""Whitespace and case folding."""

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text):
    """Runs of whitespace become one space; leading and trailing whitespace goes."""
    return _WHITESPACE.sub(" ", text).strip()


def fold(text):
    """Case-folded text without accents ("Crème" -> "creme"), for comparing words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
)py";

// {DOC} is the docstring's second paragraph: empty, or kReviewFix's sentence.
constexpr char kSlugTemplate[] = R"py("""URL slugs."""

import re

from textkit.normalize import fold

_PART = re.compile(r"[^\W_]+")


def slugify(text, max_length=None):
    """Lowercase ASCII words joined by dashes: "Crème Brûlée!" -> "creme-brulee".{DOC}"""
    parts = _PART.findall(fold(text).replace("'", ""))
    slug = "-".join(parts)
    if max_length is None or len(slug) <= max_length:
        return slug
    kept = ""
    for part in parts:
        candidate = f"{kept}-{part}" if kept else part
        if len(candidate) > max_length:
            break
        kept = candidate
    return kept or parts[0][:max_length]
)py";

constexpr char kTokenize[] = R"py("""Splitting text into words."""

import re

from textkit.normalize import fold

# Letters and digits, with apostrophes inside a word ("don't") kept.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text):
    """The folded words of `text`, in order."""
    return _WORD.findall(fold(text))
)py";

std::string Sh(const fs::path& dir, const std::string& command) {
  std::string out;
  testing::Shell("cd '" + dir.string() + "' && " + command + " 2>&1", &out);
  return out;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The backlog the backlog agent answers. `with_cycle`: normalize also depends on tokenize, which
// closes the chain into a cycle (what the validator must send back).
std::string BacklogJson(bool with_cycle) {
  json normalize = {
      {"id", "normalize"},
      {"scope", {"textkit/**"}},
      {"title", "Whitespace and case folding helpers"},
      {"type", "code"},
      {"capabilities", {"code"}},
      {"description",
       "Add textkit/normalize.py with collapse_whitespace(text) and fold(text), the basis of the "
       "tokenizer and the slugs."},
      {"acceptance",
       {"collapse_whitespace turns runs of whitespace into one space and strips the ends",
        "fold case-folds and removes accents: fold('Crème Brûlée') == 'creme brulee'",
        "tests/test_normalize.py passes"}}};
  if (with_cycle) normalize["depends_on"] = {"tokenize"};
  const json slugify = {
      {"id", "slugify"},
      {"scope", {"textkit/**"}},
      {"title", "URL slugs"},
      {"type", "code"},
      {"capabilities", {"code"}},
      {"depends_on", {"normalize"}},
      {"description",
       "Add textkit/slug.py with slugify(text, max_length=None) and export it from the package "
       "(textkit.slugify)."},
      {"acceptance",
       {"slugify('  Crème   Brûlée ') == 'creme-brulee'", "max_length never cuts inside a word",
        "tests/test_slug.py passes"}}};
  const json tokenize = {
      {"id", "tokenize"},
      {"scope", {"textkit/**"}},
      {"title", "Split text into words"},
      {"type", "code"},
      {"capabilities", {"code"}},
      {"depends_on", {"slugify"}},
      {"description",
       "Add textkit/tokenize.py with words(text): the folded words of a text, in order, and "
       "export it from the package (textkit.words)."},
      {"acceptance",
       {"punctuation separates words; apostrophes inside a word are kept (don't)",
        "textkit.words is textkit.tokenize.words", "tests/test_tokenize.py passes"}}};
  return json{{"tasks", {normalize, slugify, tokenize}}}.dump(1);
}

std::string ModelsYaml(const std::string& base_url) {
  return "providers:\n"
         "  fake: {kind: openai, base_url: \"" +
         base_url + "\", api_key_env: " + kKeyVariable +
         ", timeout_s: 30}\n"
         "models:\n"
         "  plan-model: {provider: fake, model: fake-plan, input_per_mtok: 2.0, "
         "output_per_mtok: 8.0, context_window: 100000, max_output_tokens: 2000}\n"
         "  build-model: {provider: fake, model: fake-build, input_per_mtok: 3.0, "
         "output_per_mtok: 15.0, context_window: 100000, max_output_tokens: 2000}\n"
         "  review-model: {provider: fake, model: fake-review, input_per_mtok: 15.0, "
         "output_per_mtok: 75.0, context_window: 100000, max_output_tokens: 2000}\n"
         "aliases:\n"
         "  cloud/plan: [plan-model]\n"
         "  cloud/build: [build-model]\n"
         "  cloud/review: [review-model]\n"
         "routing:\n"
         "  - {task_type: plan, chain: [cloud/plan]}\n"
         "  - {task_type: rebase, chain: [cloud/plan]}\n"
         "  - {task_type: \"*\", chain: [cloud/build]}\n"
         "retry: {max_attempts: 1, base_ms: 10, max_ms: 50}\n"
         "cache: {enabled: false}\n";
}

// The example's config.yaml plus a review gate on a model no builder uses, and rebasing after
// two gate failures (at most once per task).
std::string ConfigYaml(const fs::path& example_config) {
  YAML::Node config = YAML::LoadFile(example_config.string());
  YAML::Node review;
  review["name"] = "review";
  review["kind"] = "review";
  review["model"] = "cloud/review";
  review["timeout"] = "1m";
  config["gates"].push_back(review);
  config["rebase"]["after_failures"] = 2;
  config["rebase"]["max_per_task"] = 1;
  YAML::Emitter out;
  out << config;
  return std::string(out.c_str()) + "\n";
}

// --- Reading a request at the fake --------------------------------------------------------

std::string MessageText(const json& body, size_t index) {
  const json messages = body.value("messages", json::array());
  if (index >= messages.size() || !messages[index].contains("content") ||
      !messages[index]["content"].is_string()) {
    return "";
  }
  return messages[index]["content"].get<std::string>();
}

// Which step a request is: the planning steps of testing::StepOf, else "review" or "rebase"
// (their templates' opening sentences, sent as the only user message), else "implement" (a
// builder's tool-loop turn).
std::string StepOf(const RecordedRequest& request) {
  const std::string planning = testing::StepOf(request);
  if (planning != "other") return planning;
  const std::string first = MessageText(request.Json(), 0);
  if (Contains(first, "You are the reviewer of one change")) return "review";
  if (Contains(first, "You improve task specifications")) return "rebase";
  return "implement";
}

// The task a prompt is about: the templates open the task with "# Task ID: TITLE".
std::string TaskOf(const std::string& prompt) {
  const size_t at = prompt.find("# Task ");
  if (at == std::string::npos) return "";
  const size_t start = at + 7;
  const size_t colon = prompt.find(':', start);
  return colon == std::string::npos ? "" : prompt.substr(start, colon - start);
}

// The builder's implementation prompt: the first user message of its tool loop.
std::string ImplementPromptOf(const RecordedRequest& request) {
  return MessageText(request.Json(), 1);
}

ToolCall Write(const std::string& id, const std::string& path, const std::string& content) {
  return ToolCall{id, "write_file", json{{"path", path}, {"content", content}}.dump()};
}

ToolCall Export(const std::string& id, const std::string& import_line) {
  return ToolCall{id, "edit_file",
                  json{{"path", "textkit/__init__.py"},
                       {"search", kApiComment},
                       {"replace", std::string(kApiComment) + import_line + "\n"}}
                      .dump()};
}

// A builder's first turn: the code its prompt asks for, as a careful agent that follows its
// spec and its feedback (and nothing else) would write it.
FakeReply BuildReply(const std::string& prompt) {
  const llm::Usage usage{.input_tokens = 1000, .output_tokens = 400};
  const std::string task = TaskOf(prompt);
  if (task == "normalize") {
    return FakeReply::Tools(
        {Write("w1", "textkit/normalize.py",
               Contains(prompt, kRebasedSpecMarker) ? kNormalize : kNormalizeCaseOnly)},
        usage);
  }
  if (task == "slugify") {
    std::string slug = kSlugTemplate;
    const std::string doc = Contains(prompt, kReviewReason)
                                ? std::string("\n\n    With max_length, ") + kReviewFix +
                                      "; a first word longer than the limit is cut.\n    "
                                : "";
    slug.replace(slug.find("{DOC}"), 5, doc);
    return FakeReply::Tools(
        {Write("w1", "textkit/slug.py", slug), Export("e1", "from textkit.slug import slugify")},
        usage);
  }
  if (task == "tokenize") {
    return FakeReply::Tools({Write("w1", "textkit/tokenize.py", kTokenize),
                             Export("e1", "from textkit.tokenize import words")},
                            usage);
  }
  return FakeReply::Error(400, "the fake knows no task '" + task + "'");
}

FakeReply Respond(const RecordedRequest& request) {
  const std::string step = StepOf(request);
  if (step == "spec" || step == "architecture" || step == "qa") {
    // Each planner takes a while: overlapping in time is then a property of the planning code
    // (three calls in flight at once), not of how fast a reply happens to come back.
    return FakeReply::Text(testing::PlannerDocument(step),
                           {.input_tokens = 900, .output_tokens = 300})
        .WithDelay(kPlannerDelayMs);
  }
  if (step == "backlog") {
    return FakeReply::Text(BacklogJson(/*with_cycle=*/true),
                           {.input_tokens = 1500, .output_tokens = 600});
  }
  if (step == "repair") {
    return FakeReply::Text(BacklogJson(/*with_cycle=*/false),
                           {.input_tokens = 2100, .output_tokens = 580});
  }
  const std::string prompt = MessageText(request.Json(), 0);
  if (step == "rebase") {
    if (TaskOf(prompt) != "normalize") return FakeReply::Error(400, "unexpected rebase");
    return FakeReply::Text(
        json{{"spec", kRebasedSpec},
             {"changes", {"fold must remove accents too: said how (NFKD, drop combining marks)"}}}
            .dump(),
        {.input_tokens = 1800, .output_tokens = 250});
  }
  if (step == "review") {
    // slugify's diff must document max_length; everything else is fine as it is.
    const bool fails = TaskOf(prompt) == "slugify" && !Contains(prompt, kReviewFix);
    const json verdict =
        fails ? json{{"verdict", "fail"}, {"reasons", {kReviewReason}}}
              : json{{"verdict", "pass"}, {"reasons", {"every acceptance criterion is met"}}};
    return FakeReply::Text(verdict.dump(), {.input_tokens = 2500, .output_tokens = 60});
  }
  // A builder's turn: after its tool results, it finishes.
  if (testing::IsToolResultTurn(request.Json())) {
    return FakeReply::Tools({ToolCall{"f1", "finish", R"({"summary": "done"})"}},
                            {.input_tokens = 1300, .output_tokens = 30});
  }
  return BuildReply(ImplementPromptOf(request));
}

// --- Reading the store --------------------------------------------------------------------

// The SQLite file read directly (read-only), independently of the factory's store code.
class StoreFile {
 public:
  explicit StoreFile(const fs::path& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db_);
    }
  }
  ~StoreFile() { sqlite3_close(db_); }
  StoreFile(const StoreFile&) = delete;
  StoreFile& operator=(const StoreFile&) = delete;

  // The rows of `sql` (with ?1 = run id) as JSON objects.
  json Rows(const std::string& sql, const std::string& run_id) const {
    json rows = json::array();
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    sqlite3_bind_text(statement, 1, run_id.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(statement) == SQLITE_ROW) {
      json row = json::object();
      for (int column = 0; column < sqlite3_column_count(statement); ++column) {
        const std::string name = sqlite3_column_name(statement, column);
        switch (sqlite3_column_type(statement, column)) {
          case SQLITE_INTEGER:
            row[name] = static_cast<int64_t>(sqlite3_column_int64(statement, column));
            break;
          case SQLITE_FLOAT:
            row[name] = sqlite3_column_double(statement, column);
            break;
          case SQLITE_NULL:
            row[name] = nullptr;
            break;
          default:
            row[name] =
                std::string(reinterpret_cast<const char*>(sqlite3_column_text(statement, column)));
        }
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(statement);
    return rows;
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(FeatureE2eTest, AFeatureIsPlannedRepairedRebasedReviewedMergedAndCounted) {
  FakeProviderServer fake;
  CliSandbox sandbox;
  const fs::path dir = sandbox.dir();
  const fs::path example = fs::path(FACTORY_SOURCE_DIR) / "examples" / "textkit";
  fs::copy(example, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  testing::WriteFile(
      dir / ".factory/agents/coder.md",
      testing::AsLlmAgent(example / ".factory/agents/coder.md", "code", "cloud/build"));
  testing::WriteFile(
      dir / ".factory/agents/writer.md",
      testing::AsLlmAgent(example / ".factory/agents/writer.md", "docs", "cloud/build"));
  testing::WriteFile(dir / ".factory/config.yaml", ConfigYaml(example / ".factory/config.yaml"));
  testing::WriteFile(dir / ".factory/models.yaml", ModelsYaml(fake.openai_base_url()));
  Sh(dir,
     "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@example.com "
     "commit -qm textkit");
  testing::WriteFile(dir / (std::string(kFeatureId) + ".md"),
                     "# Text helpers\n\nAdd the text helpers the test suite expects: whitespace "
                     "and case folding, URL slugs, and splitting text into words.\n");
  fake.SetResponder([](const RecordedRequest& request) { return Respond(request); });

  // Only `factory init` creates a database; made elsewhere, so that the example files init
  // writes do not join the example's own.
  testing::TempDir scratch;
  sandbox.Ok({"--db", (scratch.path() / "factory.db").string(), "init"});
  fs::copy_file(scratch.path() / "factory.db", dir / ".factory" / "factory.db");
  testing::SpawnOptions options;
  options.env[kKeyVariable] = "sk-feature-e2e-test";
  CliResult run =
      sandbox.Run({"run", std::string(kFeatureId) + ".md", "--run-id", kRunId, "--plain", "--json"},
                  options, 120'000);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  const json summary = run.Json();

  const fs::path spec_dir = dir / ".factory/specs" / kFeatureId;
  const json metadata = json::parse(testing::ReadFile(spec_dir / "metadata.json"));
  StoreFile store(sandbox.DbPath());
  const json tasks =
      store.Rows("SELECT id, title, state FROM tasks WHERE run_id = ?1 ORDER BY id", kRunId);
  const json attempts = store.Rows(
      "SELECT a.task_id, a.id, a.epoch, a.number, a.status, a.error, a.details FROM attempts a "
      "JOIN tasks t ON t.id = a.task_id WHERE t.run_id = ?1 ORDER BY a.task_id, a.epoch",
      kRunId);
  const json events = store.Rows(
      "SELECT seq, task_id, kind, actor, payload FROM events WHERE run_id = ?1 ORDER BY seq",
      kRunId);
  const json calls = store.Rows(
      "SELECT id, task_id, attempt_id, agent, model, purpose, input_tokens, output_tokens, "
      "cached_tokens, cost_usd FROM model_calls WHERE run_id = ?1 ORDER BY id",
      kRunId);

  // The store's task id of each backlog task (the titles are the backlog's).
  std::map<std::string, std::string> id_of;
  for (const auto& task : tasks) {
    const std::string title = task["title"];
    if (title == "Whitespace and case folding helpers") id_of["normalize"] = task["id"];
    if (title == "URL slugs") id_of["slugify"] = task["id"];
    if (title == "Split text into words") id_of["tokenize"] = task["id"];
  }
  ASSERT_EQ(id_of.size(), 3u) << tasks.dump(1);
  auto attempts_of = [&](const std::string& key) {
    std::vector<json> rows;
    for (const auto& attempt : attempts) {
      if (attempt["task_id"] == id_of.at(key)) rows.push_back(attempt);
    }
    return rows;
  };
  auto details_of = [](const json& attempt) {
    return json::parse(attempt["details"].get<std::string>());
  };
  auto events_of = [&](const std::string& kind, const std::string& key = "") {
    std::vector<json> rows;
    for (const auto& event : events) {
      if (event["kind"] != kind) continue;
      if (!key.empty() && event["task_id"] != id_of.at(key)) continue;
      rows.push_back(event);
    }
    return rows;
  };
  auto payload_of = [](const json& event) {
    return json::parse(event["payload"].get<std::string>());
  };
  const fs::path run_dir = dir / ".factory/runs" / kRunId;
  auto prompt_of = [&](const std::string& key, int attempt) {
    return testing::ReadFile(run_dir / (key + "-" + std::to_string(attempt)) / "prompt.md");
  };
  // What reached the provider: the implementation prompts of a task's attempts, in order.
  auto requested_prompts = [&](const std::string& key) {
    std::vector<std::string> prompts;
    for (const auto& request : fake.requests()) {
      if (StepOf(request) != "implement" || testing::IsToolResultTurn(request.Json())) continue;
      const std::string prompt = ImplementPromptOf(request);
      if (TaskOf(prompt) == key) prompts.push_back(prompt);
    }
    return prompts;
  };

  // 1. The three planners overlapped in time: each started before any of them ended, by the
  //    timestamps of the spec folder and of the events alike.
  {
    int64_t last_start = 0;
    int64_t first_end = INT64_MAX;
    for (const char* name : {"spec", "architecture", "qa"}) {
      const json& planner = metadata["planners"][name];
      ASSERT_TRUE(planner.is_object()) << metadata.dump(1);
      EXPECT_EQ(planner["status"], "done") << name;
      const int64_t started = planner["started_ms"];
      const int64_t ended = planner["ended_ms"];
      EXPECT_GE(ended - started, kPlannerDelayMs) << name;
      last_start = std::max(last_start, started);
      first_end = std::min(first_end, ended);
    }
    EXPECT_LT(last_start, first_end) << "the planners did not overlap: " << metadata.dump(1);

    std::map<std::string, int64_t> started, ended;
    for (const auto& event : events_of("feature.planner.started")) {
      const json payload = payload_of(event);
      started[payload["planner"]] = payload["started_ms"];
    }
    for (const auto& event : events_of("feature.planner.finished")) {
      const json payload = payload_of(event);
      ended[payload["planner"]] = payload["ended_ms"];
    }
    ASSERT_EQ(started.size(), 3u);
    ASSERT_EQ(ended.size(), 3u);
    for (const auto& [name, start] : started) {
      for (const auto& [other, end] : ended) {
        EXPECT_LT(start, end) << name << " started after " << other << " ended";
      }
    }
    // And each in a fresh context: one call each, none carrying another planner's document.
    int planner_calls = 0;
    for (const auto& request : fake.requests()) {
      const std::string step = StepOf(request);
      if (step != "spec" && step != "architecture" && step != "qa") continue;
      ++planner_calls;
      EXPECT_THAT(request.body, Not(HasSubstr("PLANNING-MARKER")));
    }
    EXPECT_EQ(planner_calls, 3);
  }

  // 2. The first backlog (a dependency cycle) was sent back with its errors; the repair was
  //    accepted.
  {
    EXPECT_EQ(metadata["attempts"], 2) << metadata.dump(1);
    const auto invalid = events_of("feature.backlog.invalid");
    ASSERT_EQ(invalid.size(), 1u);
    const std::string errors = payload_of(invalid[0])["errors"].dump();
    EXPECT_THAT(errors, HasSubstr("dependency cycle")) << errors;
    EXPECT_EQ(events_of("feature.backlog.accepted").size(), 1u);
    EXPECT_LT(invalid[0]["seq"], events_of("feature.backlog.accepted")[0]["seq"]);
    EXPECT_THAT(testing::ReadFile(spec_dir / "planners/backlog.1.errors.txt"),
                HasSubstr("dependency cycle"));
    // The repair request carried the validator's errors, and the stored backlog is the repair.
    bool repair_had_errors = false;
    for (const auto& request : fake.requests()) {
      if (StepOf(request) == "repair" && Contains(request.body, "dependency cycle")) {
        repair_had_errors = true;
      }
    }
    EXPECT_TRUE(repair_had_errors);
    const YAML::Node backlog = YAML::LoadFile((spec_dir / "BACKLOG.yaml").string());
    ASSERT_EQ(backlog["tasks"].size(), 3u);
    for (const auto& task : backlog["tasks"]) {
      if (task["id"].as<std::string>() == "normalize") {
        EXPECT_FALSE(task["depends_on"].IsDefined() && task["depends_on"].size() > 0);
      }
    }
  }

  // 3. normalize failed the unittest gate twice, was rebased to spec version 2, and its third
  //    attempt, with the new spec and nothing of the old feedback, passed.
  {
    const auto rows = attempts_of("normalize");
    ASSERT_EQ(rows.size(), 3u);
    for (int index : {0, 1}) {
      const json details = details_of(rows[index]);
      EXPECT_EQ(rows[index]["status"], "failed") << index;
      EXPECT_EQ(details["failed_phase"], "gates") << details.dump(1);
      EXPECT_EQ(details["spec_version"], 1);
      // The example's real test suite failed on the builder's fold().
      EXPECT_THAT(details["feedback"].get<std::string>(), HasSubstr("test_strips_accents"));
    }
    EXPECT_EQ(rows[2]["status"], "succeeded");
    const json third_details = details_of(rows[2]);
    EXPECT_EQ(third_details["spec_version"], 2);
    EXPECT_EQ(third_details["had_feedback"], false);

    // Attempt 2 was told why attempt 1 failed; attempt 3 only the new spec.
    const std::string second = prompt_of("normalize", 2);
    EXPECT_THAT(second, HasSubstr("## Why the previous attempt was rejected"));
    EXPECT_THAT(second, HasSubstr("test_strips_accents"));
    const std::string third = prompt_of("normalize", 3);
    EXPECT_THAT(third, HasSubstr(kRebasedSpec));
    EXPECT_THAT(third, Not(HasSubstr("Why the previous attempt was rejected")));
    EXPECT_THAT(third, Not(HasSubstr("test_strips_accents")));
    EXPECT_THAT(third, Not(HasSubstr("AssertionError")));
    EXPECT_THAT(third, Not(HasSubstr("the basis of the tokenizer and the slugs")))
        << "spec version 1 is gone";
    // ...and that is what reached the model.
    const auto sent = requested_prompts("normalize");
    ASSERT_EQ(sent.size(), 3u);
    EXPECT_EQ(sent[1], second);
    EXPECT_EQ(sent[2], third);

    // The rebase: after the second failure, before the third attempt's success.
    const auto rebased = events_of("task.rebased", "normalize");
    ASSERT_EQ(rebased.size(), 1u);
    const json payload = payload_of(rebased[0]);
    EXPECT_EQ(payload["spec_version"], 2);
    EXPECT_EQ(payload["previous_spec_version"], 1);
    EXPECT_EQ(payload["spec"], kRebasedSpec);
    EXPECT_EQ(payload["attempt"], 3);
    const auto gate_failures = events_of("gate.failed", "normalize");
    ASSERT_EQ(gate_failures.size(), 2u);
    EXPECT_GT(rebased[0]["seq"], gate_failures[1]["seq"]);
    const auto completed = events_of("task.completed", "normalize");
    ASSERT_EQ(completed.size(), 1u);
    EXPECT_LT(rebased[0]["seq"], completed[0]["seq"]);
    EXPECT_EQ(testing::ReadFile(run_dir / "normalize-3" / "spec.v2.md"), kRebasedSpec);
    // The rebase agent was asked once, with both failure reports.
    int rebase_calls = 0;
    for (const auto& request : fake.requests()) {
      if (StepOf(request) != "rebase") continue;
      ++rebase_calls;
      EXPECT_EQ(TaskOf(MessageText(request.Json(), 0)), "normalize");
      EXPECT_THAT(request.body, HasSubstr("### Attempt 1 (failed in gates)"));
      EXPECT_THAT(request.body, HasSubstr("### Attempt 2 (failed in gates)"));
    }
    EXPECT_EQ(rebase_calls, 1);
    // Every other task's spec stayed at version 1.
    EXPECT_EQ(events_of("task.rebased").size(), 1u);
  }

  // 4. The reviewer, on a model no builder uses, rejected slugify once with a reason; the next
  //    attempt was given the reason and passed.
  {
    std::set<std::string> review_models, builder_models;
    for (const auto& call : calls) {
      if (call["purpose"] == "review") review_models.insert(call["model"].get<std::string>());
      if (call["purpose"] == "tool_loop") builder_models.insert(call["model"].get<std::string>());
    }
    EXPECT_EQ(review_models, std::set<std::string>{"review-model"});
    EXPECT_EQ(builder_models, std::set<std::string>{"build-model"});
    for (const auto& request : fake.requests()) {
      const std::string step = StepOf(request);
      if (step == "review") {
        EXPECT_EQ(request.Json()["model"], "fake-review");
      } else if (step == "implement") {
        EXPECT_EQ(request.Json()["model"], "fake-build");
      }
    }

    const auto rows = attempts_of("slugify");
    ASSERT_EQ(rows.size(), 2u);
    const json first = details_of(rows[0]);
    EXPECT_EQ(rows[0]["status"], "failed");
    EXPECT_EQ(first["failed_phase"], "review") << first.dump(1);
    EXPECT_THAT(first["feedback"].get<std::string>(), HasSubstr(kReviewReason));
    EXPECT_EQ(rows[1]["status"], "succeeded");
    const std::string second = prompt_of("slugify", 2);
    EXPECT_THAT(second, HasSubstr("## Why the previous attempt was rejected"));
    EXPECT_THAT(second, HasSubstr(kReviewReason));
    EXPECT_THAT(prompt_of("slugify", 1), Not(HasSubstr(kReviewReason)));
    const auto sent = requested_prompts("slugify");
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_EQ(sent[1], second);

    const auto verdicts = events_of("review.verdict", "slugify");
    ASSERT_EQ(verdicts.size(), 2u);
    const json rejected = payload_of(verdicts[0]);
    EXPECT_EQ(rejected["verdict"], "fail");
    EXPECT_EQ(rejected["reasons"], json::array({kReviewReason}));
    EXPECT_EQ(rejected["model"], "review-model");
    EXPECT_EQ(payload_of(verdicts[1])["verdict"], "pass");
    // The other tasks were reviewed once each, on their passing attempt.
    EXPECT_EQ(events_of("review.verdict", "normalize").size(), 1u);
    EXPECT_EQ(events_of("review.verdict", "tokenize").size(), 1u);
    EXPECT_EQ(events_of("review.verdict").size(), 4u);
    // The merged code has the fix the reviewer asked for.
    EXPECT_THAT(Sh(dir, std::string("git show factory/") + kRunId + ":textkit/slug.py"),
                HasSubstr(kReviewFix));
  }

  // 5. Every task done and merged on the integration branch; the final gates passed there.
  {
    EXPECT_EQ(summary["done"], 3) << run.out;
    EXPECT_EQ(summary["total"], 3);
    EXPECT_EQ(summary["feature"]["status"], "done");
    EXPECT_EQ(summary["feature"]["final_gates"], "passed");
    for (const auto& task : tasks) EXPECT_EQ(task["state"], "done") << task.dump();
    const std::string branch = std::string("factory/") + kRunId;
    for (const auto& [key, id] : id_of) {
      const auto merged = events_of("task.merged", key);
      ASSERT_EQ(merged.size(), 1u) << key;
      const std::string commit = payload_of(merged[0])["merge_commit"];
      EXPECT_EQ(Sh(dir, "git merge-base --is-ancestor " + commit + " " + branch + " && echo yes"),
                "yes\n")
          << key;
    }
    const std::string files = Sh(dir, "git ls-tree -r --name-only " + branch + " textkit");
    EXPECT_THAT(files, HasSubstr("textkit/normalize.py"));
    EXPECT_THAT(files, HasSubstr("textkit/slug.py"));
    EXPECT_THAT(files, HasSubstr("textkit/tokenize.py"));
    const std::string init = Sh(dir, "git show " + branch + ":textkit/__init__.py");
    EXPECT_THAT(init, HasSubstr("from textkit.slug import slugify"));
    EXPECT_THAT(init, HasSubstr("from textkit.tokenize import words"));
    EXPECT_EQ(metadata["status"], "done");
    EXPECT_EQ(metadata["final_gates"]["status"], "passed");
    EXPECT_EQ(metadata["final_gates"]["commit"], Sh(dir, "git rev-parse " + branch).substr(0, 40));
    EXPECT_EQ(events_of("feature.final_gates.passed").size(), 1u);
  }

  // 6. `factory stats --run RUN --json` equals what the store holds.
  {
    CliResult stats_run = sandbox.Run({"stats", "--run", kRunId, "--json"}, options);
    ASSERT_EQ(stats_run.exit_code, 0) << stats_run.err;
    const json stats = stats_run.Json();
    const json& total = stats["total"];

    int64_t done = 0, failed = 0, blocked = 0;
    for (const auto& task : tasks) {
      done += task["state"] == "done";
      failed += task["state"] == "failed";
      blocked += task["state"] == "blocked";
    }
    EXPECT_EQ(total["tasks"], static_cast<int64_t>(tasks.size()));
    EXPECT_EQ(total["done"], done);
    EXPECT_EQ(total["failed"], failed);
    EXPECT_EQ(total["blocked"], blocked);

    // Attempts per task, first attempts: from the attempts rows (none released here).
    std::map<std::string, int64_t> attempts_per_task;
    std::map<std::string, bool> first_succeeded;
    for (const auto& attempt : attempts) {
      ASSERT_NE(attempt["status"], "released");
      const std::string task = attempt["task_id"];
      if (!first_succeeded.contains(task)) first_succeeded[task] = attempt["status"] == "succeeded";
      ++attempts_per_task[task];
    }
    int64_t first_successes = 0;
    for (const auto& [task, succeeded] : first_succeeded) first_successes += succeeded;
    EXPECT_EQ(total["attempts"], static_cast<int64_t>(attempts.size()));
    EXPECT_EQ(attempts.size(), 6u) << "normalize 3, slugify 2, tokenize 1";
    EXPECT_EQ(total["first_attempts"], static_cast<int64_t>(first_succeeded.size()));
    EXPECT_EQ(total["first_attempt_successes"], first_successes);
    EXPECT_DOUBLE_EQ(
        total["first_attempt_success_rate"].get<double>(),
        static_cast<double>(first_successes) / static_cast<double>(first_succeeded.size()));
    EXPECT_DOUBLE_EQ(
        total["attempts_per_task"].get<double>(),
        static_cast<double>(attempts.size()) / static_cast<double>(attempts_per_task.size()));

    // Rebases: the task.rebased events.
    const int64_t rebases = static_cast<int64_t>(events_of("task.rebased").size());
    EXPECT_EQ(total["rebases"], rebases);
    EXPECT_EQ(rebases, 1);

    // Tokens and cost: the model_calls ledger of the run (planning, building, review, rebase).
    int64_t input = 0, output = 0, cached = 0;
    double cost = 0;
    std::map<std::string, json> by_task;  // store task id -> {input, output, cost}
    std::map<std::string, json> by_model;
    for (const auto& call : calls) {
      input += call["input_tokens"].get<int64_t>();
      output += call["output_tokens"].get<int64_t>();
      cached += call["cached_tokens"].get<int64_t>();
      cost += call["cost_usd"].get<double>();
      for (json* group : {&by_task[call["task_id"]], &by_model[call["model"]]}) {
        if (group->is_null()) *group = {{"input", 0}, {"output", 0}, {"cost", 0.0}};
        (*group)["input"] = (*group)["input"].get<int64_t>() + call["input_tokens"].get<int64_t>();
        (*group)["output"] =
            (*group)["output"].get<int64_t>() + call["output_tokens"].get<int64_t>();
        (*group)["cost"] = (*group)["cost"].get<double>() + call["cost_usd"].get<double>();
      }
    }
    // 3 planners + 2 backlog answers + 6 attempts x 2 turns + 1 rebase + 4 reviews.
    EXPECT_EQ(calls.size(), 22u) << calls.dump(1);
    EXPECT_GT(cost, 0);
    EXPECT_EQ(total["model_calls"], static_cast<int64_t>(calls.size()));
    EXPECT_EQ(total["input_tokens"], input);
    EXPECT_EQ(total["output_tokens"], output);
    EXPECT_EQ(total["cached_tokens"], cached);
    EXPECT_NEAR(total["cost_usd"].get<double>(), cost, 1e-9);
    // The build's own cost in the spec folder: every call made for a task (builders, reviewers,
    // the rebase agent), i.e. all but the planning calls.
    double build_cost = 0;
    for (const auto& call : calls) {
      if (!call["task_id"].get<std::string>().empty()) build_cost += call["cost_usd"].get<double>();
    }
    EXPECT_NEAR(metadata["build"]["cost_usd"].get<double>(), build_cost, 1e-9)
        << metadata["build"].dump(1);
    EXPECT_NEAR(total["cost_per_task_usd"].get<double>(), cost / static_cast<double>(tasks.size()),
                1e-9);

    // Per task: its attempts, first attempt, rebases, and its calls in the ledger.
    ASSERT_EQ(stats["tasks"].size(), 3u) << stats.dump(1);
    for (const auto& task : stats["tasks"]) {
      const std::string id = task["id"];
      ASSERT_TRUE(attempts_per_task.contains(id)) << id;
      EXPECT_EQ(task["attempts"], attempts_per_task.at(id)) << id;
      EXPECT_EQ(task["first_attempt_succeeded"], first_succeeded.at(id)) << id;
      EXPECT_EQ(task["rebases"], id == id_of.at("normalize") ? 1 : 0) << id;
      EXPECT_EQ(task["state"], "done");
      ASSERT_TRUE(by_task.contains(id)) << id;
      EXPECT_EQ(task["input_tokens"], by_task.at(id)["input"]) << id;
      EXPECT_EQ(task["output_tokens"], by_task.at(id)["output"]) << id;
      EXPECT_NEAR(task["cost_usd"].get<double>(), by_task.at(id)["cost"].get<double>(), 1e-9) << id;
    }
    // Per model: each model's calls in the ledger.
    std::map<std::string, json> stats_by_model;
    for (const auto& group : stats["by_model"]) stats_by_model[group["key"]] = group;
    for (const auto& [model, figures] : by_model) {
      ASSERT_TRUE(stats_by_model.contains(model)) << model << "\n" << stats.dump(1);
      EXPECT_EQ(stats_by_model.at(model)["input_tokens"], figures["input"]) << model;
      EXPECT_EQ(stats_by_model.at(model)["output_tokens"], figures["output"]) << model;
      EXPECT_NEAR(stats_by_model.at(model)["cost_usd"].get<double>(), figures["cost"].get<double>(),
                  1e-9)
          << model;
    }
  }
}

}  // namespace
}  // namespace factory
