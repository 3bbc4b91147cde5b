#pragma once
// Opening a store from a location: the one place that knows which backend a URL names, so the
// CLI, the service and workers never assume the database is a file.
//
//   a path ("/abs/factory.db", ".factory/factory.db")  SQLite file
//   sqlite:///abs/path/factory.db                      SQLite file (absolute path only)
//   postgresql://user:pass@host/db, postgres://...     PostgreSQL (not built yet)
//
//   auto store = OpenStore(".factory/factory.db", {.create_if_missing = false});

#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/store.h"

namespace factory {

enum class StoreBackend { kSqlite, kPostgres };

// Where a store lives, parsed from its URL.
struct StoreLocation {
  StoreBackend backend = StoreBackend::kSqlite;
  std::string path;  // kSqlite: the file path, as given (relative paths stay relative)
  std::string url;   // the URL as given, with any password masked: safe to print
};

// Parses a store URL. InvalidArgument naming the (masked) URL for an empty string, an unknown
// scheme, a sqlite:// URL without an absolute path, or a URL with a query or fragment.
Result<StoreLocation> ParseStoreUrl(std::string_view url);

// The URL with the password of its user-info part ("user:secret@") replaced by "***". Anything
// else is returned unchanged.
std::string MaskStoreUrl(std::string_view url);

// What every backend understands; SQLite-only knobs are ignored by the others.
struct StoreOpenOptions {
  SqliteSync synchronous = SqliteSync::kNormal;
  int busy_timeout_ms = 10'000;
  int reader_connections = 4;
  // false: a store that does not exist yet (a missing or empty SQLite file) is NotFound.
  bool create_if_missing = true;
};

// Opens the store a URL names and applies pending migrations. Errors: ParseStoreUrl's;
// FailedPrecondition "PostgreSQL support is not built yet" for postgres URLs; otherwise the
// backend's (OpenSqliteStore). Messages never contain a password from the URL.
Result<std::unique_ptr<Store>> OpenStore(std::string_view url,
                                         const StoreOpenOptions& options = {});

}  // namespace factory
