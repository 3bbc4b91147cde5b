// Path confinement and the tools, on real files: every escape attempt is refused with a message
// for the model and nothing outside the worktree is read or written.

#include "toolloop/tools.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/test_repo.h"
#include "toolloop/workspace_fs.h"

namespace factory::toolloop {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFileBytes;
using testing::WriteFileBytes;

constexpr char kSecret[] = "TOP-SECRET-OUTSIDE-CONTENT";

class ToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = temp_.path().string();
    outside_ = base_ + "/outside";
    work_ = base_ + "/work";
    WriteFileBytes(outside_ + "/secret.txt", std::string(kSecret) + "\n");
    WriteFileBytes(work_ + "/README.md", "# demo\nhello world\n");
    WriteFileBytes(work_ + "/src/a.txt", "alpha\nbeta\nalpha beta\n");
    WriteFileBytes(work_ + "/.git/config", "alpha in git metadata\n");
    namespace fs = std::filesystem;
    fs::create_directory_symlink("/etc", work_ + "/etc_link");
    fs::create_symlink(outside_ + "/secret.txt", work_ + "/secret_link");
    fs::create_symlink(outside_ + "/created_through_dangling.txt", work_ + "/dangling");
    fs::create_directory_symlink(outside_, work_ + "/src/mid");
    fs::create_symlink("README.md", work_ + "/inside_link");
    auto opened = WorkspaceFs::Open(work_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    fs_.emplace(std::move(*opened));
    env_.fs = &*fs_;
  }

  ToolResult Call(const std::string& name, const nlohmann::json& arguments) {
    return ExecuteTool(env_, llm::ToolCall{"call-1", name, arguments.dump()});
  }

  // Nothing outside changed: the secret is intact and no new file appeared.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(ReadFileBytes(outside_ + "/secret.txt"), std::string(kSecret) + "\n");
    size_t entries = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(outside_)) {
      ++entries;
    }
    EXPECT_EQ(entries, 1u);
  }

  testing::TempDir temp_{"factory-toolloop"};
  std::string base_, outside_, work_;
  std::optional<WorkspaceFs> fs_;
  ToolEnv env_;
};

TEST(NormalizePathTest, LexicalRules) {
  EXPECT_EQ(NormalizePath("a/./b//c").value(), "a/b/c");
  EXPECT_EQ(NormalizePath("a/../b").value(), "b");
  EXPECT_EQ(NormalizePath("").value(), "");
  EXPECT_EQ(NormalizePath(".").value(), "");
  EXPECT_EQ(NormalizePath("../x").error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(NormalizePath("a/../../x").error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(NormalizePath("/etc/passwd").error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(NormalizePath("bad\xff.txt").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(NormalizePath("over\xC0\xAFlong").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(NormalizePath(std::string("nul\0byte", 8)).error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_EQ(SanitizeUtf8("a\xff"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
}

TEST_F(ToolsTest, DotDotAndAbsolutePathsAreRefused) {
  const std::vector<std::string> paths = {"../outside/secret.txt", "/etc/passwd",
                                          "src/../../outside/secret.txt", outside_ + "/secret.txt"};
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    auto read = Call("read_file", {{"path", path}});
    EXPECT_FALSE(read.ok);
    EXPECT_THAT(read.output, HasSubstr("refused"));
    EXPECT_THAT(read.output, Not(HasSubstr(kSecret)));
    EXPECT_THAT(read.output, Not(HasSubstr("root:")));
    auto write = Call("write_file", {{"path", path}, {"content", "pwned"}});
    EXPECT_FALSE(write.ok);
    EXPECT_THAT(write.output, HasSubstr("refused"));
    EXPECT_FALSE(Call("list_dir", {{"path", path}}).ok);
    EXPECT_FALSE(Call("grep", {{"pattern", "SECRET"}, {"path", path}}).ok);
  }
  ExpectOutsideUntouched();
}

TEST_F(ToolsTest, SymlinksAnywhereInThePathAreRefused) {
  struct Case {
    std::string path;
    std::string what;
  };
  const Case cases[] = {{"etc_link/passwd", "directory symlink to /etc"},
                        {"etc_link", "directory symlink itself"},
                        {"secret_link", "file symlink to outside"},
                        {"dangling", "dangling symlink to outside"},
                        {"src/mid/secret.txt", "directory symlink in the middle"},
                        {"src/mid/new.txt", "creating below a middle symlink"},
                        {"inside_link", "symlink inside (not followed either)"}};
  for (const auto& test_case : cases) {
    SCOPED_TRACE(test_case.what);
    auto read = Call("read_file", {{"path", test_case.path}});
    EXPECT_FALSE(read.ok) << read.output;
    EXPECT_THAT(read.output, HasSubstr("symlink"));
    EXPECT_THAT(read.output, Not(HasSubstr(kSecret)));
    EXPECT_THAT(read.output, Not(HasSubstr("root:")));
    auto write = Call("write_file", {{"path", test_case.path}, {"content", "pwned"}});
    EXPECT_FALSE(write.ok) << write.output;
    auto edit = Call("edit_file", {{"path", test_case.path}, {"search", "TOP"}, {"replace", "x"}});
    EXPECT_FALSE(edit.ok) << edit.output;
    auto grep = Call("grep", {{"pattern", "SECRET"}, {"path", test_case.path}});
    EXPECT_THAT(grep.output, Not(HasSubstr(kSecret)));
  }
  EXPECT_FALSE(Call("list_dir", {{"path", "etc_link"}}).ok);
  EXPECT_FALSE(Call("list_dir", {{"path", "src/mid"}}).ok);
  // A walk from the root never descends into symlinks.
  auto grep_all = Call("grep", {{"pattern", "SECRET"}});
  EXPECT_EQ(grep_all.output, "no matches");
  ExpectOutsideUntouched();
  EXPECT_FALSE(std::filesystem::exists(outside_ + "/created_through_dangling.txt"));
  EXPECT_TRUE(std::filesystem::is_symlink(work_ + "/dangling"));
  // The listing shows symlinks as such.
  auto listing = Call("list_dir", {{"path", "."}});
  EXPECT_THAT(listing.output, HasSubstr("etc_link  (symlink, not followed)"));
}

TEST_F(ToolsTest, HardLinkIsReplacedNotWrittenThrough) {
  ASSERT_EQ(::link((outside_ + "/secret.txt").c_str(), (work_ + "/hard.txt").c_str()), 0);
  auto write = Call("write_file", {{"path", "hard.txt"}, {"content", "replaced"}});
  EXPECT_TRUE(write.ok) << write.output;
  EXPECT_EQ(ReadFileBytes(work_ + "/hard.txt"), "replaced");
  EXPECT_EQ(ReadFileBytes(outside_ + "/secret.txt"), std::string(kSecret) + "\n");
}

TEST_F(ToolsTest, WritesKeepModeCreateParentsAndStayOutOfGit) {
  WriteFileBytes(work_ + "/run.sh", "#!/bin/sh\n");
  ::chmod((work_ + "/run.sh").c_str(), 0755);
  EXPECT_TRUE(Call("write_file", {{"path", "run.sh"}, {"content", "#!/bin/sh\necho\n"}}).ok);
  struct stat st {};
  ASSERT_EQ(::stat((work_ + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_TRUE(Call("write_file", {{"path", "new/deep/file.txt"}, {"content", "x"}}).ok);
  EXPECT_EQ(ReadFileBytes(work_ + "/new/deep/file.txt"), "x");
  auto git = Call("write_file", {{"path", ".git/hooks/pre-commit"}, {"content", "x"}});
  EXPECT_FALSE(git.ok);
  EXPECT_THAT(git.output, HasSubstr(".git"));
  // No temporary files left behind.
  for (const auto& entry : std::filesystem::directory_iterator(work_)) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr("factory-tmp")));
  }
}

TEST_F(ToolsTest, ArgumentsAreValidated) {
  auto missing = Call("write_file", {{"path", "x.txt"}});
  EXPECT_FALSE(missing.ok);
  EXPECT_THAT(missing.output, HasSubstr("missing required argument 'content'"));
  auto ill_typed = Call("read_file", {{"path", 42}});
  EXPECT_THAT(ill_typed.output, HasSubstr("'path' must be a string"));
  auto bad_offset = Call("read_file", {{"path", "README.md"}, {"offset", "one"}});
  EXPECT_THAT(bad_offset.output, HasSubstr("'offset' must be an integer"));
  auto not_json = ExecuteTool(env_, llm::ToolCall{"c", "read_file", "{not json"});
  EXPECT_THAT(not_json.output, HasSubstr("not a JSON object"));
  auto unknown = Call("rm_rf", nlohmann::json::object());
  EXPECT_THAT(unknown.output, HasSubstr("unknown tool 'rm_rf'"));
  auto finish_without_summary = Call("finish", nlohmann::json::object());
  EXPECT_FALSE(finish_without_summary.finished);
  auto finish = Call("finish", {{"summary", "done"}});
  EXPECT_TRUE(finish.finished);
  EXPECT_EQ(finish.summary, "done");
  // Tools the agent may not use.
  env_.allowed = {"read_file"};
  EXPECT_THAT(Call("write_file", {{"path", "x"}, {"content", "y"}}).output,
              HasSubstr("not allowed"));
  std::vector<std::string> names;
  for (const auto& spec : ToolSpecs(env_.allowed)) names.push_back(spec.name);
  EXPECT_THAT(names, ::testing::ElementsAre("read_file", "finish"));
  EXPECT_EQ(ToolSpecs().size(), 7u);
  for (const auto& spec : ToolSpecs()) {
    EXPECT_TRUE(nlohmann::json::accept(spec.parameters_json_schema)) << spec.name;
  }
}

TEST_F(ToolsTest, ReadFilePagesAndCapsAndSanitises) {
  auto whole = Call("read_file", {{"path", "src/a.txt"}});
  EXPECT_TRUE(whole.ok);
  EXPECT_EQ(whole.output, "alpha\nbeta\nalpha beta\n");
  auto page = Call("read_file", {{"path", "src/a.txt"}, {"offset", 2}, {"limit", 1}});
  EXPECT_THAT(page.output, ::testing::StartsWith("beta\n"));
  EXPECT_THAT(page.output, HasSubstr("[showing lines 2-2"));
  std::string big;
  for (int line = 0; line < 20'000; ++line) big += "line " + std::to_string(line) + " of text\n";
  WriteFileBytes(work_ + "/big.txt", big);
  auto capped = Call("read_file", {{"path", "big.txt"}});
  EXPECT_LE(capped.output.size(), kMaxReadBytes + 300);
  EXPECT_THAT(capped.output, HasSubstr("truncated at 256 KB"));
  WriteFileBytes(work_ + "/latin1.txt", "caf\xE9\n");
  auto latin1 = Call("read_file", {{"path", "latin1.txt"}});
  EXPECT_TRUE(IsValidUtf8(latin1.output));
  WriteFileBytes(work_ + "/bin.dat", std::string("\x01\x00\x02", 3));
  EXPECT_THAT(Call("read_file", {{"path", "bin.dat"}}).output, HasSubstr("binary"));
  EXPECT_THAT(Call("read_file", {{"path", "src"}}).output, HasSubstr("directory"));
  EXPECT_THAT(Call("read_file", {{"path", "nope.txt"}}).output, HasSubstr("no such file"));
  ASSERT_EQ(::mkfifo((work_ + "/fifo").c_str(), 0644), 0);
  EXPECT_THAT(Call("read_file", {{"path", "fifo"}}).output, HasSubstr("not a regular file"));
}

TEST_F(ToolsTest, EditFileNeedsExactlyOneOccurrence) {
  auto absent = Call("edit_file", {{"path", "src/a.txt"}, {"search", "gamma"}, {"replace", "x"}});
  EXPECT_FALSE(absent.ok);
  EXPECT_THAT(absent.output, HasSubstr("not found"));
  auto ambiguous =
      Call("edit_file", {{"path", "src/a.txt"}, {"search", "alpha"}, {"replace", "x"}});
  EXPECT_FALSE(ambiguous.ok);
  EXPECT_THAT(ambiguous.output, HasSubstr("occurs 2 times"));
  EXPECT_EQ(ReadFileBytes(work_ + "/src/a.txt"), "alpha\nbeta\nalpha beta\n");
  auto edited =
      Call("edit_file", {{"path", "src/a.txt"}, {"search", "alpha beta"}, {"replace", "gamma"}});
  EXPECT_TRUE(edited.ok) << edited.output;
  EXPECT_EQ(ReadFileBytes(work_ + "/src/a.txt"), "alpha\nbeta\ngamma\n");
}

TEST_F(ToolsTest, GrepLiteralRegexSkipsGitAndCaps) {
  auto literal = Call("grep", {{"pattern", "alpha"}});
  EXPECT_EQ(literal.output, "src/a.txt:1: alpha\nsrc/a.txt:3: alpha beta\n");
  auto regex = Call("grep", {{"pattern", "^be.a$"}, {"regex", true}, {"path", "src"}});
  EXPECT_EQ(regex.output, "src/a.txt:2: beta\n");
  auto single_file = Call("grep", {{"pattern", "hello"}, {"path", "README.md"}});
  EXPECT_EQ(single_file.output, "README.md:2: hello world\n");
  auto bad = Call("grep", {{"pattern", "("}, {"regex", true}});
  EXPECT_FALSE(bad.ok);
  EXPECT_THAT(bad.output, HasSubstr("invalid regular expression"));
  std::string many;
  for (int line = 0; line < 500; ++line) many += "needle\n";
  WriteFileBytes(work_ + "/many.txt", many);
  auto capped = Call("grep", {{"pattern", "needle"}});
  EXPECT_THAT(capped.output, HasSubstr("[stopped at 200 matches]"));
}

TEST_F(ToolsTest, RunCommandThroughTheRealSandbox) {
  auto sandbox = MakeSandbox();
  env_.sandbox = sandbox.get();
  env_.command_env = CommandEnvironment();
  ::setenv("FACTORY_TOOLLOOP_TEST_SECRET", "sk-not-for-commands-123456", 1);
  auto run =
      Call("run_command",
           {{"command",
             "echo made > made.txt; cat README.md; echo \"s=$FACTORY_TOOLLOOP_TEST_SECRET\"; "
             "echo oops >&2; exit 3"},
            {"timeout_s", 30}});
  ::unsetenv("FACTORY_TOOLLOOP_TEST_SECRET");
  EXPECT_FALSE(run.ok);
  EXPECT_THAT(run.output, HasSubstr("exit code 3"));
  EXPECT_THAT(run.output, HasSubstr("hello world"));
  EXPECT_THAT(run.output, HasSubstr("oops"));
  EXPECT_THAT(run.output, HasSubstr("s=\n"));
  EXPECT_THAT(run.output, Not(HasSubstr("sk-not-for-commands")));
  EXPECT_EQ(ReadFileBytes(work_ + "/made.txt"), "made\n");
  auto slow = Call("run_command", {{"command", "sleep 20"}, {"timeout_s", 1}});
  EXPECT_FALSE(slow.ok);
  EXPECT_THAT(slow.output, HasSubstr("timed out"));
  auto missing = Call("run_command", {{"timeout_s", 1}});
  EXPECT_THAT(missing.output, HasSubstr("missing required argument 'command'"));
}

}  // namespace
}  // namespace factory::toolloop
