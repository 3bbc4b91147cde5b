#pragma once
// Secret redaction: one Redactor per process (ProcessRedactor()) holds every secret value the
// factory knows of, and everything the factory hashes, stores, writes to a file or prints goes
// through it first: events (before the hash chain), attempts, results, runner and gate logs,
// prompt, spec and task files, console lines.
//
// What is a secret:
//   - the value of every variable of the factory's environment whose name looks secret
//     (IsSecretVariableName below), fed at start-up by AddSecretEnvironment();
//   - the values of the key variables models.yaml names (api_key_env), whatever their name;
//   - every gateway virtual key this process issues (gateway/keys.h adds it when created).
// Values are trimmed of surrounding white space; a value shorter than the redactor's minimum
// length (kMinSecretLength = 8 for the process redactor) is ignored: redacting "1" or "true"
// would garble every log without protecting anything real.
//
// An occurrence of a secret is replaced by "[REDACTED:NAME]", NAME being the variable it came
// from (e.g. [REDACTED:OPENAI_API_KEY], [REDACTED:VIRTUAL_KEY]), or "[REDACTED]" for a secret
// added without a name. The marker names where the value came from and holds nothing of the
// value. A secret's JSON-escaped form (quotes, backslashes, control characters) is redacted too,
// so a value is caught inside JSON text as well. Overlapping occurrences of several secrets
// become a single marker: no byte of any occurrence survives.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace factory {

inline constexpr size_t kMinSecretLength = 8;

// True for names that hold secrets by convention (compared case-insensitively):
//   - names ending in _KEY, _TOKEN, _SECRET, _PASSWORD, _PASSWD, _PASS, _PAT or _CREDENTIALS,
//     or equal to TOKEN;
//   - names containing API_KEY, APIKEY, SECRET, PASSWORD, PASSWD, ACCESS_KEY, PRIVATE_KEY,
//     AUTH_TOKEN, ACCESS_TOKEN or SESSION_TOKEN;
//   - every AWS_* name except the few that only configure the client (AWS_REGION,
//     AWS_DEFAULT_REGION, AWS_PROFILE, AWS_DEFAULT_PROFILE, AWS_DEFAULT_OUTPUT);
// except names ending in _FILE, _PATH, _DIR or _URL, which name a place, not a secret
// (OPENAI_API_KEY_FILE names where the key is; the key itself never reaches us).
bool IsSecretVariableName(std::string_view name);

namespace redact_internal {
struct Index;
}

// A set of secret values and the search over them. Thread-safe: Add and the searches may be
// called concurrently from any threads; a search sees the secrets added before it started.
// The search is linear in the text whatever the number of secrets: an index of the first two
// bytes rejects almost every position with one bit test, a hash of the first bytes then names
// the few candidates, compared with memcmp.
class Redactor {
 public:
  // REQUIRES: 2 <= min_secret_length.
  explicit Redactor(size_t min_secret_length = kMinSecretLength);
  Redactor(const Redactor&) = delete;
  Redactor& operator=(const Redactor&) = delete;
  ~Redactor();

  // Adds `value` (trimmed of surrounding white space) under `name` (empty: "[REDACTED]").
  // Returns true when the value is redacted from now on (false: too short). A value known
  // already keeps its first name.
  bool Add(std::string_view name, std::string_view value);
  // Adds the value of every variable of `envp` (NAME=value entries, null-terminated, e.g.
  // `environ`) whose name IsSecretVariableName. Returns how many values were added.
  int AddSecretEnvironment(const char* const* envp);

  // `text` with every occurrence of every secret replaced by its marker.
  std::string Redact(std::string_view text) const;
  // Redact in place; returns true when something was replaced (no copy when nothing was).
  bool RedactInPlace(std::string& text) const;
  // The names of the secrets that occur in `text` (each once, in order of first occurrence;
  // "" for a secret added without a name). Empty when the text holds none.
  std::vector<std::string> Find(std::string_view text) const;

  // Number of distinct searched values (a value and its JSON-escaped form count as two).
  size_t size() const;
  // Length of the longest searched value: how far back a secret may start that a stream
  // split cannot yet show whole (see StreamRedactor).
  size_t max_secret_length() const;

 private:
  friend class StreamRedactor;
  std::shared_ptr<const redact_internal::Index> Snapshot() const;

  const size_t min_length_;
  mutable std::mutex mu_;
  // Rebuilt (never changed in place) on every Add, so searches run on a snapshot unlocked.
  std::shared_ptr<const redact_internal::Index> index_;  // guarded by mu_
};

// The process-wide redactor, empty until start-up feeds it (cli/app.cc). Never destroyed, so
// threads still logging at exit can use it.
Redactor& ProcessRedactor();

// Redacts a stream that arrives in pieces (a child's output read by read(2)): a secret split
// across two pieces is still caught. Feed returns the text that can be released now; it holds
// back the last max_secret_length()-1 bytes (more while they may be part of an occurrence
// still incomplete) until the next piece or Finish. Not thread-safe: one per stream.
// REQUIRES: the redactor outlives the StreamRedactor.
class StreamRedactor {
 public:
  explicit StreamRedactor(const Redactor& redactor);
  // Appends a piece; returns the redacted text that can be released now (possibly empty).
  std::string Feed(std::string_view piece);
  // The rest, redacted, at the end of the stream. The StreamRedactor is empty afterwards.
  std::string Finish();
  // Bytes held back, not yet returned.
  size_t pending() const { return pending_.size(); }

 private:
  const Redactor& redactor_;
  std::string pending_;
};

}  // namespace factory
