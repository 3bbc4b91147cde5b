#pragma once
// What the commands built on the service (src/service/service.h) share: opening it over the
// command's store, and printing its errors in the command line's terms.

#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "cli/cli.h"
#include "service/service.h"

namespace factory::cli {

// The store and the service over it; the service dies first.
struct OpenedService {
  std::unique_ptr<Store> store;
  std::unique_ptr<service::Service> service;
  OpenedService() = default;
  OpenedService(OpenedService&&) = default;
  OpenedService& operator=(OpenedService&&) = default;
  ~OpenedService() { service.reset(); }
};

// Opens the database (which must exist: only `factory init` creates one) and a service over it.
inline Result<OpenedService> OpenService(const CliContext& ctx,
                                         service::ServiceOptions options = {}) {
  OpenedService opened;
  FACTORY_ASSIGN_OR_RETURN(opened.store, ctx.OpenStore(/*create_if_missing=*/false));
  opened.service = service::Service::Create(*opened.store, std::move(options));
  return opened;
}

// ReportError, with the request field an error names put as the command's flag: "title must
// not be empty" becomes "--title must not be empty" (`flags` maps a field to its flag; a field
// missing from it becomes --field with '-' for '_'; one mapped to "" is dropped with its ": ").
inline int ReportServiceError(const Error& error,
                              const std::map<std::string, std::string>& flags = {}) {
  const std::string field = service::ErrorField(error);
  if (field.empty()) return ReportError(error);
  Error shown = error;
  std::string flag;
  if (auto found = flags.find(field); found != flags.end()) {
    flag = found->second;
  } else {
    flag = "--" + field;
    for (char& c : flag) c = c == '_' ? '-' : c;
  }
  std::string rest = error.message.substr(field.size());
  if (flag.empty() && rest.rfind(": ", 0) == 0) rest = rest.substr(2);
  shown.message = flag + rest;
  return ReportError(shown);
}

}  // namespace factory::cli
