#include "llm/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace factory::llm {
namespace {

std::vector<SseEvent> FeedAll(SseParser& parser, const std::vector<std::string>& chunks) {
  std::vector<SseEvent> events;
  for (const auto& chunk : chunks) {
    parser.Feed(chunk, [&](const SseEvent& event) { events.push_back(event); });
  }
  return events;
}

TEST(SseParserTest, ParsesEventsAndDone) {
  SseParser parser;
  auto events = FeedAll(parser, {"data: {\"a\":1}\n\ndata: [DONE]\n\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[0].event, "");
  EXPECT_EQ(events[1].data, "[DONE]");
  EXPECT_FALSE(parser.HasPartialEvent());
}

TEST(SseParserTest, LinesSplitAcrossChunksAtEveryPosition) {
  const std::string stream =
      "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n"
      ": keep-alive comment\n\nevent: ping\ndata: {}\n\n";
  for (size_t split = 0; split <= stream.size(); ++split) {
    SseParser parser;
    auto events = FeedAll(parser, {stream.substr(0, split), stream.substr(split)});
    ASSERT_EQ(events.size(), 2u) << "split at " << split;
    EXPECT_EQ(events[0].event, "message_start");
    EXPECT_EQ(events[0].data, "{\"type\":\"message_start\"}");
    EXPECT_EQ(events[1].event, "ping");
  }
}

TEST(SseParserTest, ByteByByte) {
  const std::string stream = "data: one\r\rdata: two\n\n";  // bare CR line endings too
  SseParser parser;
  std::vector<std::string> chunks;
  for (char c : stream) chunks.emplace_back(1, c);
  auto events = FeedAll(parser, chunks);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "one");
  EXPECT_EQ(events[1].data, "two");
}

TEST(SseParserTest, MultiLineDataAndFieldsWithoutSpace) {
  SseParser parser;
  auto events = FeedAll(parser, {"id:7\nevent:x\ndata:line1\ndata: line2\n\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "line1\nline2");
  EXPECT_EQ(events[0].event, "x");
  EXPECT_EQ(events[0].id, "7");
}

TEST(SseParserTest, TruncatedStreamLeavesPartialEvent) {
  SseParser parser;
  auto events = FeedAll(parser, {"data: {\"a\":1}\n\ndata: {\"b\""});
  EXPECT_EQ(events.size(), 1u);
  EXPECT_TRUE(parser.HasPartialEvent());
}

}  // namespace
}  // namespace factory::llm
