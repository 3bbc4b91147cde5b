#include "store/sqlite/sqlite_db.h"

#include <spdlog/spdlog.h>

#include <mutex>

namespace factory::sqlite {

Error ErrorFromCode(int code, sqlite3* db, std::string_view what) {
  std::string message =
      std::string(what) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code));
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error{ErrorCode::kUnavailable, message + " (database busy)"};
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Error{ErrorCode::kAlreadyExists, message};
      }
      return Error{ErrorCode::kFailedPrecondition, message};
    case SQLITE_NOTADB:
      return Error{ErrorCode::kInvalidArgument, message};
    case SQLITE_CORRUPT:
      return Error{ErrorCode::kDataLoss, message};
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_PERM:
      return Error{ErrorCode::kUnavailable, message};
    default:
      return Error{ErrorCode::kInternal, message};
  }
}

Statement& Statement::Bind(int index, std::string_view text) {
  // SQLITE_STATIC: callers keep the text alive until the statement is stepped (every call site
  // binds from values that outlive Step), which saves a copy per bound value.
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Statement& Statement::BindOptional(int index, const std::optional<std::string>& text) {
  return text ? Bind(index, std::string_view(*text)) : BindNull(index);
}

Result<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // The statement's text is for whoever debugs the store, not for the user's error message.
  spdlog::debug("sqlite: statement failed ({}): {}", sqlite3_errmsg(db_), sqlite3_sql(stmt_));
  Error error = ErrorFromCode(sqlite3_extended_errcode(db_), db_, "database query failed");
  sqlite3_reset(stmt_);
  return std::unexpected(std::move(error));
}

Status Statement::Run() {
  FACTORY_ASSIGN_OR_RETURN(bool has_row, Step());
  while (has_row) {
    FACTORY_ASSIGN_OR_RETURN(has_row, Step());
  }
  return Ok();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string Statement::ColumnText(int column) const {
  const auto* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

int64_t Statement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path, int flags) {
  static std::once_flag configured;
  std::call_once(configured, [] {
    // Memory statistics take a global mutex on every allocation; we never read them.
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error error = ErrorFromCode(rc, db, "cannot open database " + path);
    sqlite3_close_v2(db);
    return std::unexpected(std::move(error));
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Connection>(new Connection(db));
}

Connection::~Connection() {
  cache_.clear();  // finalize statements before closing
  sqlite3_close_v2(db_);
}

Status Connection::Exec(std::string_view sql) {
  char* message = nullptr;
  std::string sql_text(sql);
  int rc = sqlite3_exec(db_, sql_text.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string detail = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    int code = sqlite3_extended_errcode(db_);
    spdlog::debug("sqlite: statement failed ({}): {}", detail, sql_text);
    Error error = ErrorFromCode(code, nullptr, "database command failed");
    error.message = "database command failed: " + detail;
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) {
      error.message += " (database busy)";
    }
    return std::unexpected(std::move(error));
  }
  return Ok();
}

Result<Statement*> Connection::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    it->second->Reset();
    in_use_.push_back(it->second.get());
    return it->second.get();
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    spdlog::debug("sqlite: cannot prepare ({}): {}", sqlite3_errmsg(db_), sql);
    return std::unexpected(ErrorFromCode(rc, db_, "cannot prepare a database query"));
  }
  auto [inserted, unused] = cache_.emplace(sql, std::make_unique<Statement>(db_, stmt));
  in_use_.push_back(inserted->second.get());
  return inserted->second.get();
}

void Connection::ResetStatements() {
  for (Statement* statement : in_use_) statement->Reset();
  in_use_.clear();
}

}  // namespace factory::sqlite
