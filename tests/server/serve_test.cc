// `factory serve` and `factory tokens` through the real binary: every test starts the server as
// a child process on a free port of loopback, on a database `factory init` made, and talks to
// it over real HTTP (cpp-httplib, curl for TLS). Other `factory` processes write to the same
// database where a test needs events from elsewhere.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_test_util.h"
#include "common/test_repo.h"
#include "common/test_util.h"

namespace factory {
namespace {

using nlohmann::json;
using testing::CliSandbox;
using ::testing::HasSubstr;
using ::testing::Not;

// One `factory serve` child process.
class ServeProcess {
 public:
  ServeProcess(CliSandbox& sandbox, std::vector<std::string> extra = {}) : sandbox_(sandbox) {
    std::vector<std::string> args = {"serve", "--listen", "127.0.0.1:0", "--no-resume"};
    args.insert(args.end(), extra.begin(), extra.end());
    testing::SpawnOptions options;
    options.cwd = sandbox.dir();
    options.stdout_path = out_path_;
    options.stderr_path = err_path_;
    pid_ = testing::SpawnFactory(args, options);
    const std::regex listening(R"(listening on https?://127\.0\.0\.1:(\d+))");
    testing::WaitUntil(
        [&] {
          std::smatch match;
          const std::string out = testing::ReadFile(out_path_);
          if (std::regex_search(out, match, listening)) port_ = std::stoi(match[1]);
          return port_ != 0 || !testing::ProcessAlive(pid_);
        },
        30'000);
  }
  ~ServeProcess() {
    if (pid_ > 0 && testing::ProcessAlive(pid_)) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string err() const { return testing::ReadFile(err_path_); }
  // Sends SIGTERM and waits for the exit code (-1: not within the bound).
  int Terminate() {
    kill(pid_, SIGTERM);
    const int code = testing::WaitForExit(pid_, 30'000);
    if (code != -1) pid_ = -1;
    return code;
  }

  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(20, 0);
    return client;
  }

 private:
  CliSandbox& sandbox_;
  testing::TempDir io_;
  std::string out_path_ = (io_.path() / "serve.out").string();
  std::string err_path_ = (io_.path() / "serve.err").string();
  pid_t pid_ = -1;
  int port_ = 0;
};

httplib::Headers Bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A repository, as `factory serve` runs in one (runs, agents and merges need it).
    testing::InitGitRepo(sandbox_.dir(), {{"README.md", "serve test\n"}});
    sandbox_.Ok({"init"});
    read_ = Token("reader", "read");
    operator_ = Token("ops", "operator");
    admin_ = Token("root", "admin");
  }

  std::string Token(const std::string& name, const std::string& scope) {
    auto created = sandbox_.Ok({"tokens", "create", "--name", name, "--scope", scope});
    return created.Line();
  }

  static json Body(const httplib::Result& result) {
    if (!result) return json();
    return json::parse(result->body, nullptr, false);
  }

  std::string PostTask(httplib::Client& client, const json& body, int expected = 201) {
    auto result = client.Post("/api/tasks", Bearer(operator_), body.dump(), "application/json");
    EXPECT_TRUE(result);
    if (!result) return "";
    EXPECT_EQ(result->status, expected) << result->body;
    return Body(result).value("id", "");
  }

  CliSandbox sandbox_;
  std::string read_;
  std::string operator_;
  std::string admin_;
};

TEST_F(ServeTest, TokensArePrintedOnceStoredAsAHashListedAndRevoked) {
  EXPECT_EQ(read_.rfind("fa-", 0), 0u);
  EXPECT_EQ(read_.size(), 46u);
  auto listed = sandbox_.Ok({"tokens", "list", "--json"});
  const json tokens = listed.Json();
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0]["name"], "reader");
  EXPECT_EQ(tokens[0]["scope"], "read");
  EXPECT_EQ(tokens[0]["state"], "active");
  EXPECT_EQ(tokens[0]["expires_at"], nullptr);
  for (const std::string& token : {read_, operator_, admin_}) {
    EXPECT_THAT(listed.out, Not(HasSubstr(token)));
    // Not in the database either: only its hash.
    EXPECT_THAT(testing::ReadFile(sandbox_.DbPath()), Not(HasSubstr(token)));
  }
  auto expiring = sandbox_.Ok(
      {"tokens", "create", "--name", "temp", "--scope", "read", "--expires", "30d", "--json"});
  EXPECT_NE(expiring.Json()["expires_at"], nullptr);
  sandbox_.Ok({"tokens", "revoke", "reader"});
  auto again = sandbox_.Run({"tokens", "revoke", "reader"});
  EXPECT_EQ(again.exit_code, 4);
  EXPECT_THAT(again.err, HasSubstr("already revoked"));
  EXPECT_EQ(sandbox_.Run({"tokens", "revoke", "nobody"}).exit_code, 3);
  EXPECT_EQ(sandbox_.Ok({"tokens", "list", "--json"}).Json()[0]["state"], "revoked");
  auto table = sandbox_.Ok({"tokens", "list"});
  EXPECT_THAT(table.out, HasSubstr("revoked"));

  auto bad_scope = sandbox_.Run({"tokens", "create", "--name", "x", "--scope", "root"});
  EXPECT_EQ(bad_scope.exit_code, 2);
  EXPECT_THAT(bad_scope.err, HasSubstr("scope"));
  auto bad_expiry =
      sandbox_.Run({"tokens", "create", "--name", "x", "--scope", "read", "--expires", "soon"});
  EXPECT_EQ(bad_expiry.exit_code, 2);
  EXPECT_THAT(bad_expiry.err, HasSubstr("expires"));
  auto taken = sandbox_.Run({"tokens", "create", "--name", "ops", "--scope", "read"});
  EXPECT_NE(taken.exit_code, 0);
  EXPECT_THAT(taken.err, HasSubstr("taken"));
  for (const char* command : {"tokens", "serve"}) {
    auto help = sandbox_.Run({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_THAT(help.out, HasSubstr("Usage"));
  }
}

TEST_F(ServeTest, RoutesNeedATokenOfTheRightScope) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();

  auto anonymous = client.Get("/api/tasks");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(Body(anonymous)["error"]["code"], "unauthenticated");
  auto unknown = client.Get("/api/tasks", Bearer("fa-not-a-token"));
  EXPECT_EQ(unknown->status, 401);

  EXPECT_EQ(client.Get("/api/tasks", Bearer(read_))->status, 200);
  auto forbidden = client.Post("/api/tasks", Bearer(read_), R"({"title":"t"})", "application/json");
  EXPECT_EQ(forbidden->status, 403);
  EXPECT_EQ(Body(forbidden)["error"]["code"], "permission_denied");
  EXPECT_EQ(
      client.Post("/api/tasks", Bearer(operator_), R"({"title":"t"})", "application/json")->status,
      201);
  EXPECT_EQ(client.Get("/api/tokens", Bearer(operator_))->status, 403);
  auto tokens = client.Get("/api/tokens", Bearer(admin_));
  EXPECT_EQ(tokens->status, 200);
  EXPECT_THAT(tokens->body, Not(HasSubstr(admin_)));
  // The document and the probes need none.
  EXPECT_EQ(client.Get("/api/openapi.json")->status, 200);
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  EXPECT_EQ(client.Get("/readyz")->status, 200);

  // A token revoked while the server runs stops working at once.
  sandbox_.Ok({"tokens", "revoke", "reader"});
  EXPECT_EQ(client.Get("/api/tasks", Bearer(read_))->status, 401);

  // A token made through the API works; the answer is the only place it appears.
  auto made = client.Post("/api/tokens", Bearer(admin_), R"({"name":"bot","scope":"read"})",
                          "application/json");
  ASSERT_EQ(made->status, 201) << made->body;
  EXPECT_EQ(client.Get("/api/runs", Bearer(Body(made)["token"]))->status, 200);

  // The access log: one JSON line per request, with the token's name and never a token.
  const std::string log = serve.err();
  EXPECT_THAT(log, HasSubstr(R"("route":"/api/tasks")"));
  EXPECT_THAT(log, HasSubstr(R"("token":"ops")"));
  for (const std::string& token :
       {read_, operator_, admin_, Body(made)["token"].get<std::string>()}) {
    EXPECT_THAT(log, Not(HasSubstr(token)));
  }
}

TEST_F(ServeTest, BadBodiesAre400NamingTheField) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  struct Case {
    std::string body;
    std::string field;
  };
  for (const Case& bad : std::vector<Case>{{"not json", "body"},
                                           {R"({"spec":"no title"})", "title"},
                                           {R"({"title":5})", "title"},
                                           {R"({"title":"t","priority":"high"})", "priority"},
                                           {R"({"title":"t","depends_on":"x"})", "depends_on"},
                                           {R"({"title":"t","colour":"red"})", "colour"}}) {
    auto result = client.Post("/api/tasks", Bearer(operator_), bad.body, "application/json");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 400) << bad.body;
    EXPECT_EQ(Body(result)["error"]["field"], bad.field) << result->body;
  }
  auto run = client.Post("/api/runs", Bearer(operator_), R"({"run_id":"r"})", "application/json");
  EXPECT_EQ(run->status, 400);
  EXPECT_EQ(Body(run)["error"]["field"], "feature");
  auto limit = client.Get("/api/tasks?limit=0", Bearer(read_));
  EXPECT_EQ(limit->status, 400);
  EXPECT_EQ(Body(limit)["error"]["field"], "limit");
  auto kind = client.Get("/api/events?kind=no.such.kind", Bearer(read_));
  EXPECT_EQ(kind->status, 400);
  EXPECT_EQ(Body(kind)["error"]["field"], "kind");
  // Too large: 413, a JSON error.
  auto huge = client.Post("/api/tasks", Bearer(operator_), std::string(9 * 1024 * 1024, 'x'),
                          "application/json");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  EXPECT_EQ(Body(huge)["error"]["code"], "payload_too_large");
  // Unknown routes and methods.
  auto missing = client.Get("/api/nothing", Bearer(read_));
  EXPECT_EQ(missing->status, 404);
  auto method = client.Delete("/api/tasks", Bearer(operator_));
  EXPECT_EQ(method->status, 405);
  EXPECT_EQ(method->get_header_value("Allow"), "GET, POST");
  // No CORS unless configured.
  EXPECT_FALSE(client.Get("/api/tasks", Bearer(read_))->has_header("Access-Control-Allow-Origin"));
}

TEST_F(ServeTest, TasksAreAddedOnceListedByCursorAndActedOn) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  std::vector<std::string> ids;
  for (int index = 0; index < 5; ++index) {
    ids.push_back(
        PostTask(client, {{"title", "task " + std::to_string(index)}, {"priority", index}}));
  }
  const std::string again = PostTask(client, {{"title", "keyed"}, {"idempotency_key", "K"}});
  EXPECT_EQ(PostTask(client, {{"title", "keyed again"}, {"idempotency_key", "K"}}, 200), again);

  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = client.Get("/api/tasks?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor),
                           Bearer(read_));
    ASSERT_EQ(page->status, 200) << page->body;
    const json body = Body(page);
    EXPECT_LE(body["items"].size(), 2u);
    for (const auto& item : body["items"]) seen.push_back(item["id"]);
    cursor = body["next_cursor"].is_null() ? "" : body["next_cursor"].get<std::string>();
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 6u);

  auto shown = client.Get("/api/tasks/" + ids[0], Bearer(read_));
  ASSERT_EQ(shown->status, 200);
  EXPECT_EQ(Body(shown)["title"], "task 0");
  EXPECT_FALSE(Body(shown)["events"].empty());
  auto unknown = client.Get("/api/tasks/01NOSUCHTASK00000000000000", Bearer(read_));
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(Body(unknown)["error"]["code"], "not_found");

  auto cancelled = client.Post("/api/tasks/" + ids[1] + "/cancel", Bearer(operator_), "", "");
  ASSERT_EQ(cancelled->status, 200) << cancelled->body;
  EXPECT_EQ(Body(cancelled)["state"], "cancelled");
  auto retried = client.Post("/api/tasks/" + ids[1] + "/retry", Bearer(operator_), "", "");
  EXPECT_EQ(retried->status, 409) << retried->body;  // a cancelled task is not retried

  auto listed = client.Get("/api/tasks?state=cancelled", Bearer(read_));
  EXPECT_EQ(Body(listed)["items"].size(), 1u);
}

TEST_F(ServeTest, OpenApiDocumentAndRoutesMatchBothWays) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  const json doc = Body(client.Get("/api/openapi.json"));
  EXPECT_EQ(doc["openapi"], "3.1.0");
  // The issue's routes are all documented...
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"get", "/api/runs"},
      {"post", "/api/runs"},
      {"get", "/api/runs/{id}"},
      {"post", "/api/runs/{id}/cancel"},
      {"post", "/api/runs/{id}/resume"},
      {"post", "/api/runs/{id}/merge"},
      {"get", "/api/tasks"},
      {"post", "/api/tasks"},
      {"get", "/api/tasks/{id}"},
      {"post", "/api/tasks/{id}/cancel"},
      {"post", "/api/tasks/{id}/retry"},
      {"get", "/api/agents"},
      {"post", "/api/agents/{name}/pause"},
      {"post", "/api/agents/{name}/resume"},
      {"get", "/api/costs"},
      {"get", "/api/stats"},
      {"get", "/api/events"},
      {"get", "/api/openapi.json"},
      {"get", "/metrics"},
      {"get", "/healthz"},
      {"get", "/readyz"}};
  for (const auto& [method, path] : expected) {
    EXPECT_TRUE(doc["paths"].contains(path) && doc["paths"][path].contains(method))
        << method << " " << path;
  }
  // ...and every documented operation is served (a missing route answers "no such route").
  int operations = 0;
  for (const auto& [path, methods] : doc["paths"].items()) {
    const std::string concrete = std::regex_replace(path, std::regex(R"(\{[a-z_]+\})"), "zzz");
    for (const auto& [method, operation] : methods.items()) {
      ++operations;
      if (path == "/api/events") continue;  // a stream: checked by the SSE tests
      httplib::Result result =
          method == "get" ? client.Get(concrete, Bearer(admin_))
                          : client.Post(concrete, Bearer(admin_), "{}", "application/json");
      ASSERT_TRUE(result) << method << " " << path;
      EXPECT_NE(result->status, 405) << method << " " << path;
      EXPECT_THAT(result->body, Not(HasSubstr("no such route"))) << method << " " << path;
      EXPECT_TRUE(operation.contains("responses"));
    }
  }
  EXPECT_EQ(operations, static_cast<int>(expected.size()) + 3);  // + the three token routes
}

TEST_F(ServeTest, MetricsAreValidPrometheusText) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  PostTask(client, {{"title", "measured"}});
  EXPECT_EQ(client.Get("/api/tasks", Bearer(read_))->status, 200);
  auto metrics = client.Get("/metrics");
  ASSERT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->body, HasSubstr("factory_tasks{state=\"ready\"} 1"));
  EXPECT_THAT(
      metrics->body,
      HasSubstr(R"(factory_http_requests_total{route="/api/tasks",method="GET",status="200"} 1)"));
  EXPECT_THAT(
      metrics->body,
      HasSubstr("factory_http_request_duration_seconds_bucket{route=\"/api/tasks\",le=\"+Inf\"}"));
  EXPECT_THAT(metrics->body, HasSubstr("factory_sse_subscribers 0"));
  EXPECT_THAT(metrics->body, HasSubstr("factory_queue_lag_seconds"));
  const auto path = sandbox_.Path("metrics.txt");
  testing::WriteFile(path, metrics->body);
  std::string out;
  const int code = testing::Shell("promtool check metrics < " + path.string() + " 2>&1", &out);
  EXPECT_EQ(code, 0) << out;
}

// Reads an SSE stream on a thread of its own until told to stop.
class SseReader {
 public:
  SseReader(int port, const std::string& token, const std::string& path,
            const std::string& last_event_id = "") {
    thread_ = std::thread([=, this] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(30, 0);
      httplib::Headers headers = Bearer(token);
      headers.emplace("Accept", "text/event-stream");
      if (!last_event_id.empty()) headers.emplace("Last-Event-ID", last_event_id);
      auto result = client.Get(path, headers, [&](const char* data, size_t size) {
        std::lock_guard lock(mu_);
        text_.append(data, size);
        cv_.notify_all();
        return !stop_;
      });
      std::lock_guard lock(mu_);
      ended_ = true;
      status_ = result ? result->status : 0;
      cv_.notify_all();
    });
  }
  ~SseReader() {
    Stop();
    thread_.join();
  }
  void Stop() {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  // Waits until the stream holds `count` events (20 s at most); their ids.
  std::vector<int64_t> WaitForIds(size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return Ids().size() >= count || ended_; });
    return Ids();
  }
  bool WaitForEnd() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return ended_; });
  }
  std::string text() {
    std::lock_guard lock(mu_);
    return text_;
  }

 private:
  std::vector<int64_t> Ids() const {  // REQUIRES: mu_
    std::vector<int64_t> ids;
    static const std::regex id_line(R"((^|\n)id: (\d+)\n)");
    for (auto it = std::sregex_iterator(text_.begin(), text_.end(), id_line);
         it != std::sregex_iterator(); ++it) {
      ids.push_back(std::stoll((*it)[2]));
    }
    return ids;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  bool stop_ = false;
  bool ended_ = false;
  int status_ = 0;
  std::thread thread_;
};

TEST_F(ServeTest, EventsFromAnotherProcessReachSubscribersAndResumeWithoutGapOrDuplicate) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  std::vector<int64_t> first_ids;
  {
    SseReader reader(serve.port(), read_, "/api/events?kind=task.created");
    ASSERT_TRUE(testing::WaitUntil([&] { return !reader.text().empty(); }, 20'000));
    // Another process writes to the same database.
    sandbox_.AddTask({"--title", "from the cli 1"});
    sandbox_.AddTask({"--title", "from the cli 2"});
    first_ids = reader.WaitForIds(2);
    ASSERT_EQ(first_ids.size(), 2u) << reader.text();
    EXPECT_LT(first_ids[0], first_ids[1]);
    EXPECT_THAT(reader.text(), HasSubstr("from the cli 2"));
    EXPECT_THAT(reader.text(), HasSubstr("event: task.created"));
  }  // disconnects
  // While nobody listens, more events.
  sandbox_.AddTask({"--title", "missed 3"});
  sandbox_.AddTask({"--title", "missed 4"});
  SseReader resumed(serve.port(), read_, "/api/events?kind=task.created",
                    std::to_string(first_ids[1]));
  sandbox_.AddTask({"--title", "live 5"});
  const auto ids = resumed.WaitForIds(3);
  ASSERT_EQ(ids.size(), 3u) << resumed.text();
  EXPECT_GT(ids[0], first_ids[1]);
  EXPECT_LT(ids[0], ids[1]);
  EXPECT_LT(ids[1], ids[2]);
  const std::string text = resumed.text();
  EXPECT_THAT(text, Not(HasSubstr("from the cli")));
  EXPECT_LT(text.find("missed 3"), text.find("missed 4"));
  EXPECT_LT(text.find("missed 4"), text.find("live 5"));
}

TEST_F(ServeTest, SigtermEndsStreamsAndExitsCleanly) {
  ServeProcess serve(sandbox_);
  ASSERT_NE(serve.port(), 0) << serve.err();
  SseReader reader(serve.port(), read_, "/api/events");
  ASSERT_TRUE(testing::WaitUntil([&] { return !reader.text().empty(); }, 20'000));
  EXPECT_EQ(serve.Terminate(), 0) << serve.err();
  EXPECT_TRUE(reader.WaitForEnd());  // the stream was ended, not left hanging
  EXPECT_THAT(serve.err(), HasSubstr("factory serve: stopped"));
}

TEST_F(ServeTest, NonLoopbackNeedsTlsOrInsecureHttp) {
  auto refused = sandbox_.Run({"serve", "--listen", "0.0.0.0:0"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("--tls-cert"));
  auto half = sandbox_.Run({"serve", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"});
  EXPECT_EQ(half.exit_code, 2);
  auto listen = sandbox_.Run({"serve", "--listen", "nowhere"});
  EXPECT_EQ(listen.exit_code, 2);
  EXPECT_THAT(listen.err, HasSubstr("--listen"));
}

TEST_F(ServeTest, ServesHttpsWithTheGivenCertificate) {
  const auto cert = sandbox_.Path("cert.pem");
  const auto key = sandbox_.Path("key.pem");
  ASSERT_EQ(testing::Shell("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                           "-addext subjectAltName=DNS:localhost "
                           "-keyout " +
                           key.string() + " -out " + cert.string() + " 2>&1"),
            0);
  ServeProcess serve(sandbox_, {"--tls-cert", cert.string(), "--tls-key", key.string()});
  ASSERT_NE(serve.port(), 0) << serve.err();
  std::string out;
  const std::string base = "https://127.0.0.1:" + std::to_string(serve.port());
  EXPECT_EQ(testing::Shell("curl -sS --cacert " + cert.string() +
                               " --resolve localhost:" + std::to_string(serve.port()) +
                               ":127.0.0.1 https://localhost:" + std::to_string(serve.port()) +
                               "/api/tasks -H 'Authorization: Bearer " + read_ + "'",
                           &out),
            0);
  EXPECT_THAT(out, HasSubstr("\"items\""));
  // Plain HTTP on the TLS port gets no API answer.
  auto plain = serve.Client().Get("/healthz");
  EXPECT_TRUE(!plain || plain->status != 200);
}

TEST_F(ServeTest, ATokenOverItsRateIsAnswered429WithRetryAfter) {
  // One a minute, in bursts of 10: the 11th request within the minute is refused.
  ServeProcess serve(sandbox_, {"--rate-limit", "1"});
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  int ok = 0;
  int last_status = 0;
  std::string last_body;
  std::string retry_after;
  for (int index = 0; index < 12; ++index) {
    auto result = client.Get("/api/tasks", Bearer(read_));
    ASSERT_TRUE(result);
    if (result->status == 200) ++ok;
    last_status = result->status;
    last_body = result->body;
    retry_after = result->get_header_value("Retry-After");
  }
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(last_status, 429);
  EXPECT_EQ(json::parse(last_body)["error"]["code"], "rate_limited");
  ASSERT_FALSE(retry_after.empty());
  EXPECT_GE(std::stoi(retry_after), 1);
  // Another token has its own budget.
  EXPECT_EQ(client.Get("/api/tasks", Bearer(operator_))->status, 200);
}

TEST_F(ServeTest, GatewayRoutesShareTheListenerWithTheGatewaysVirtualKeys) {
  ServeProcess serve(sandbox_);  // `factory init` wrote .factory/models.yaml
  ASSERT_NE(serve.port(), 0) << serve.err();
  auto client = serve.Client();
  auto anonymous = client.Get("/v1/models");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(Body(anonymous)["error"]["code"], "invalid_api_key");  // the gateway's own shape
  // An API token is not a virtual key.
  EXPECT_EQ(client.Get("/v1/models", Bearer(admin_))->status, 401);
  const std::string key = sandbox_.Ok({"keys", "create", "--agent", "coder"}).Line();
  auto models = client.Get("/v1/models", Bearer(key));
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200) << models->body;
  EXPECT_EQ(Body(models)["object"], "list");
}

}  // namespace
}  // namespace factory
