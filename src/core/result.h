#pragma once
// Errors as values across module boundaries (abseil Status, leveldb Status).
// The codes say whether retrying makes sense; queue retries, model fallback and HTTP status
// mapping are driven by them.

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace factory {

enum class ErrorCode {
  kInvalidArgument,     // the caller's input is wrong; do not retry
  kNotFound,            // a named thing does not exist
  kAlreadyExists,       // creating something that is already there
  kFailedPrecondition,  // the system is not in a state where this works; do not retry
  kAborted,             // a conflict (stale lease, lost race); retry higher up
  kUnavailable,         // transient (busy database, 5xx, connection refused); retry the call
  kResourceExhausted,   // a budget or quota is used up
  kDeadlineExceeded,    // a timeout
  kPermissionDenied,    // not allowed
  kDataLoss,            // stored data is corrupt (a broken hash chain, a damaged file)
  kInternal,            // a bug or an unexpected library failure
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  // A copy with context prepended: "while X: <message>".
  [[nodiscard]] Error Wrap(std::string_view context) const {
    return Error{code, std::string(context) + ": " + message};
  }
  [[nodiscard]] std::string ToString() const {
    return std::string(ErrorCodeName(code)) + ": " + message;
  }
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}
inline std::unexpected<Error> InvalidArgument(std::string m) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(m));
}
inline std::unexpected<Error> NotFound(std::string m) {
  return MakeError(ErrorCode::kNotFound, std::move(m));
}
inline std::unexpected<Error> AlreadyExists(std::string m) {
  return MakeError(ErrorCode::kAlreadyExists, std::move(m));
}
inline std::unexpected<Error> FailedPrecondition(std::string m) {
  return MakeError(ErrorCode::kFailedPrecondition, std::move(m));
}
inline std::unexpected<Error> Aborted(std::string m) {
  return MakeError(ErrorCode::kAborted, std::move(m));
}
inline std::unexpected<Error> Unavailable(std::string m) {
  return MakeError(ErrorCode::kUnavailable, std::move(m));
}
inline std::unexpected<Error> ResourceExhausted(std::string m) {
  return MakeError(ErrorCode::kResourceExhausted, std::move(m));
}
inline std::unexpected<Error> DeadlineExceeded(std::string m) {
  return MakeError(ErrorCode::kDeadlineExceeded, std::move(m));
}
inline std::unexpected<Error> PermissionDenied(std::string m) {
  return MakeError(ErrorCode::kPermissionDenied, std::move(m));
}
inline std::unexpected<Error> DataLoss(std::string m) {
  return MakeError(ErrorCode::kDataLoss, std::move(m));
}
inline std::unexpected<Error> Internal(std::string m) {
  return MakeError(ErrorCode::kInternal, std::move(m));
}

inline Status Ok() { return {}; }

// Propagates an error from an expression yielding Result/Status.
#define FACTORY_RETURN_IF_ERROR(expr)                             \
  do {                                                            \
    if (auto factory_status_ = (expr); !factory_status_) {        \
      return std::unexpected(std::move(factory_status_.error())); \
    }                                                             \
  } while (0)

#define FACTORY_CONCAT_INNER_(a, b) a##b
#define FACTORY_CONCAT_(a, b) FACTORY_CONCAT_INNER_(a, b)
// FACTORY_ASSIGN_OR_RETURN(auto x, Compute()); declares x from the value or returns the error.
#define FACTORY_ASSIGN_OR_RETURN(lhs, expr) \
  FACTORY_ASSIGN_OR_RETURN_IMPL_(FACTORY_CONCAT_(factory_result_, __LINE__), lhs, expr)
#define FACTORY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)      \
  auto tmp = (expr);                                        \
  if (!tmp) return std::unexpected(std::move(tmp.error())); \
  lhs = std::move(*tmp)

}  // namespace factory
