#pragma once
// A thin RAII layer over the SQLite C API: one connection with a cache of prepared statements.
// Internal to store/sqlite; nothing outside store/ includes it.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"

namespace factory::sqlite {

// Maps an SQLite result code to our canonical error, naming what was being done.
Error ErrorFromCode(int code, sqlite3* db, std::string_view what);

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Bind by 1-based index. Text is bound without a copy: REQUIRES the bound text stays alive
  // until the statement has been stepped.
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& BindNull(int index);
  Statement& BindOptional(int index, const std::optional<std::string>& text);

  // Steps once: true when a row is available, false when done. Errors mapped.
  Result<bool> Step();
  // Steps to completion, expecting no rows.
  Status Run();
  // Resets for reuse and clears bindings. Called automatically by the cache before reuse.
  void Reset();

  std::string ColumnText(int column) const;
  int64_t ColumnInt(int column) const;
  bool ColumnIsNull(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class Connection {
 public:
  // Opens path with the given SQLITE_OPEN_* flags.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, int flags);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Executes one or more statements without results.
  Status Exec(std::string_view sql);
  // A cached prepared statement, reset and ready to bind. Valid until the connection closes.
  Result<Statement*> Prepare(const std::string& sql);
  // Resets every statement handed out since the last call. A statement left mid-result keeps
  // its read snapshot open, and a stale snapshot makes the next BEGIN IMMEDIATE fail with
  // SQLITE_BUSY_SNAPSHOT forever; call this before ending every transaction.
  void ResetStatements();

  sqlite3* handle() { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
  std::vector<Statement*> in_use_;  // handed out since the last ResetStatements
};

}  // namespace factory::sqlite
