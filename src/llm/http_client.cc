#include "llm/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <mutex>

namespace factory::llm {
namespace {

constexpr size_t kMaxIdleHandles = 64;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Trim(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return std::string(text.substr(begin, end - begin));
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct TransferState {
  CURL* handle = nullptr;
  HttpResponse* response = nullptr;
  const BodyChunkHandler* on_chunk = nullptr;
  bool aborted_by_handler = false;
  int64_t idle_timeout_ms = 0;
  int64_t last_activity_ms = 0;  // steady clock
  bool idle_timed_out = false;
};

// libcurl calls this at least once a second while a transfer is idle; it enforces the idle
// timeout (libcurl's LOW_SPEED options average over a window, so they miss a stalled stream that
// started fast).
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* state = static_cast<TransferState*>(user);
  if (state->idle_timeout_ms > 0 &&
      SteadyNowMs() - state->last_activity_ms > state->idle_timeout_ms) {
    state->idle_timed_out = true;
    return 1;  // abort: CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  const size_t bytes = size * count;
  state->last_activity_ms = SteadyNowMs();
  std::string_view line(data, bytes);
  if (line.starts_with("HTTP/")) {
    // A new response (after a 100 Continue or a redirect): start over.
    state->response->headers.clear();
    return bytes;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return bytes;
  state->response->headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
  return bytes;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  const size_t bytes = size * count;
  state->last_activity_ms = SteadyNowMs();
  long status = 0;
  curl_easy_getinfo(state->handle, CURLINFO_RESPONSE_CODE, &status);
  if (state->on_chunk != nullptr && *state->on_chunk && status >= 200 && status < 300) {
    if (!(*state->on_chunk)(std::string_view(data, bytes))) {
      state->aborted_by_handler = true;
      return 0;  // makes libcurl fail the transfer with CURLE_WRITE_ERROR
    }
    return bytes;
  }
  state->response->body.append(data, bytes);
  return bytes;
}

}  // namespace

HttpClient::HttpClient() : plain_(std::make_unique<net::PlainHttpClient>()) { GlobalInitOnce(); }

HttpClient::~HttpClient() {
  std::lock_guard lock(mu_);
  for (void* handle : idle_handles_) curl_easy_cleanup(static_cast<CURL*>(handle));
  idle_handles_.clear();
}

HttpClient& HttpClient::Shared() {
  static HttpClient* client = new HttpClient();  // never destroyed: usable during exit
  return *client;
}

void* HttpClient::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_handles_.empty()) {
      void* handle = idle_handles_.back();
      idle_handles_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void HttpClient::Release(void* handle) {
  {
    std::lock_guard lock(mu_);
    if (idle_handles_.size() < kMaxIdleHandles) {
      idle_handles_.push_back(handle);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

Result<HttpResponse> HttpClient::Send(const HttpRequest& request,
                                      const BodyChunkHandler& on_chunk) {
  // Plain http:// goes over net::PlainHttpClient's keep-alive connections: one writev and one
  // recv per call on a warm connection, where libcurl adds a liveness poll of the connection
  // and polls of its wake-up pipe to every transfer (bench/RESULTS.md, gateway overhead).
  if (IsPlainHttp(request.url)) return plain_->Send(request, on_chunk);
  CURL* handle = static_cast<CURL*>(Acquire());
  if (handle == nullptr) return Internal("curl_easy_init failed");
  // reset() keeps the handle's connection cache, so the next call to the same host reuses the
  // connection.
  curl_easy_reset(handle);

  HttpResponse response;
  TransferState state;
  state.handle = handle;
  state.response = &response;
  state.on_chunk = &on_chunk;
  state.idle_timeout_ms = request.idle_timeout_ms;
  state.last_activity_ms = SteadyNowMs();
  char error_buffer[CURL_ERROR_SIZE] = {0};

  curl_slist* header_list = nullptr;
  for (const auto& [name, value] : request.headers) {
    header_list = curl_slist_append(header_list, (name + ": " + value).c_str());
  }
  header_list = curl_slist_append(header_list, "Expect:");  // no 100-continue round trip

  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list);
  curl_easy_setopt(handle, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(handle, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout_ms));
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(request.total_timeout_ms));
  if (request.idle_timeout_ms > 0) {
    curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &state);
    curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
  }
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &state);
  if (request.method == "GET") {
    curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(handle, CURLOPT_POST, 1L);
    curl_easy_setopt(handle, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  }

  const CURLcode code = curl_easy_perform(handle);
  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(header_list);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, nullptr);
  Release(handle);

  if (code != CURLE_OK) {
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    std::string message = request.method + " " + request.url + ": " + detail;
    if (state.aborted_by_handler)
      return Aborted(request.method + " " + request.url + ": aborted by the body handler");
    if (state.idle_timed_out) {
      return DeadlineExceeded("timeout: " + request.method + " " + request.url + ": nothing for " +
                              std::to_string(request.idle_timeout_ms) + " ms");
    }
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        return DeadlineExceeded("timeout: " + message);
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return InvalidArgument(message);
      default:
        return Unavailable(message);
    }
  }
  response.status = static_cast<int>(status);
  return response;
}

bool HttpClient::IsPlainHttp(const std::string& url) {
  return url.size() > 7 && Lower(url.substr(0, 7)) == "http://";
}

int64_t ParseRetryAfterMs(const std::string& value, int64_t now_ms) {
  const std::string text = Trim(value);
  if (text.empty()) return -1;
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc() && end == text.data() + text.size()) {
    if (!std::isfinite(seconds) || seconds < 0) return -1;
    return static_cast<int64_t>(std::ceil(seconds * 1000.0));
  }
  const time_t when = curl_getdate(text.c_str(), nullptr);
  if (when < 0) return -1;
  return std::max<int64_t>(0, static_cast<int64_t>(when) * 1000 - now_ms);
}

}  // namespace factory::llm
