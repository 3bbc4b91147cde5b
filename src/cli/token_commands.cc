// `factory tokens create|list|revoke`: the bearer tokens of `factory serve`'s API.

#include <fmt/core.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "server/tokens.h"

namespace factory::cli {
namespace {

struct CreateFlags {
  std::string name;
  std::string scope;
  std::string expires;
  bool json = false;
};

int CreateToken(const CliContext& ctx, const CreateFlags& flags) {
  auto scope = server::ParseScope(flags.scope);
  if (!scope) return ReportError(scope.error());
  int64_t lifetime_ms = 0;
  if (!flags.expires.empty()) {
    auto parsed = server::ParseLifetime(flags.expires);
    if (!parsed) return ReportError(parsed.error());
    lifetime_ms = *parsed;
  }
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  auto issued = server::IssueToken(**store, flags.name, *scope, lifetime_ms);
  if (!issued) return ReportError(issued.error());
  if (flags.json) {
    std::cout << nlohmann::json{{"id", issued->record.id},
                                {"name", issued->record.name},
                                {"scope", issued->record.scope},
                                {"prefix", issued->record.prefix},
                                {"expires_at",
                                 issued->record.expires_ms != 0
                                     ? nlohmann::json(FormatTimestamp(issued->record.expires_ms))
                                     : nlohmann::json(nullptr)},
                                {"token", issued->token}}
                     .dump()
              << "\n";
  } else {
    std::cout << issued->token << "\n";
  }
  std::cerr << "factory: token " << issued->record.name << " (" << issued->record.scope
            << ") shown once: only its hash is stored\n";
  return kExitOk;
}

int ListTokens(const CliContext& ctx, bool as_json) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  auto tokens = server::ListTokens(**store);
  if (!tokens) return ReportError(tokens.error());
  const int64_t now = SystemClock().NowMillis();
  if (as_json) {
    std::cout << server::TokensJson(*tokens, now) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<20} {:<9} {:<13} {:<8} {:<24} {}\n", "NAME", "SCOPE", "PREFIX",
                           "STATE", "CREATED", "EXPIRES");
  for (const ApiToken& token : *tokens) {
    std::cout << fmt::format("{:<20} {:<9} {:<13} {:<8} {:<24} {}\n", token.name, token.scope,
                             token.prefix + "...", server::TokenState(token, now),
                             FormatTimestamp(token.created_ms),
                             token.expires_ms != 0 ? FormatTimestamp(token.expires_ms) : "never");
  }
  return kExitOk;
}

int RevokeToken(const CliContext& ctx, const std::string& id_or_name) {
  auto store = ctx.OpenStore(/*create_if_missing=*/false);
  if (!store) return ReportError(store.error());
  if (auto status = server::RevokeToken(**store, id_or_name); !status) {
    return ReportError(status.error());
  }
  std::cout << "factory: revoked token " << id_or_name << "\n";
  return kExitOk;
}

}  // namespace

void AddTokenCommands(CLI::App& app, CliContext& ctx) {
  auto* tokens =
      app.add_subcommand("tokens", "Bearer tokens of the `factory serve` API (hash stored only)");
  tokens->require_subcommand(1);
  static CreateFlags create_flags;
  auto* create = tokens->add_subcommand("create", "Issue a token; prints it once");
  create->add_option("--name", create_flags.name, "A unique name (shown in access logs)")
      ->required();
  create
      ->add_option("--scope", create_flags.scope,
                   "read (GET routes), operator (also actions), admin (also tokens, config)")
      ->required();
  create->add_option("--expires", create_flags.expires,
                     "Lifetime, e.g. 30d, 12h, 90m (default: never expires)");
  create->add_flag("--json", create_flags.json,
                   "Print {id, name, scope, prefix, expires_at, token} as JSON");
  create->callback([&ctx] { ctx.action = [&ctx] { return CreateToken(ctx, create_flags); }; });
  static bool list_json = false;
  auto* list = tokens->add_subcommand("list", "Every token (name, scope, state); never the token");
  list->add_flag("--json", list_json, "Print JSON");
  list->callback([&ctx] { ctx.action = [&ctx] { return ListTokens(ctx, list_json); }; });
  static std::string revoke_id;
  auto* revoke = tokens->add_subcommand("revoke", "Revoke a token by its name or id");
  revoke->add_option("NAME", revoke_id, "Token name or id")->required();
  revoke->callback([&ctx] { ctx.action = [&ctx] { return RevokeToken(ctx, revoke_id); }; });
}

}  // namespace factory::cli
