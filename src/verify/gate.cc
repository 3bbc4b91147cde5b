#include "verify/gate.h"

#include <algorithm>
#include <utility>

namespace factory {
namespace {

constexpr int kCommandStage = 0;
constexpr int kReviewStage = 1;

class CommandGate final : public Gate {
 public:
  CommandGate(GateConfig config, GateRunOptions options)
      : config_(std::move(config)), options_(std::move(options)) {}

  const std::string& name() const override { return config_.name; }
  std::string_view kind() const override { return GateKindName(GateKind::kCommand); }

  Result<GateReport> Run(const GateContext& context) override {
    if (context.subject == nullptr) return InvalidArgument("gate '" + name() + "': no subject");
    FACTORY_ASSIGN_OR_RETURN(std::string checkout, context.subject->Checkout());
    // Its log's number: its position among the command gates that ran.
    const size_t index = static_cast<size_t>(
        std::count_if(context.earlier.begin(), context.earlier.end(),
                      [&](const GateReport& report) { return report.kind == kind(); }));
    GateRunOptions options = options_;
    options.logs_dir = context.logs_dir;
    options.cancel = context.cancel;
    options.disk_quota = context.disk_quota;
    auto ran = RunCommandGate(config_, index, checkout, options);
    if (!ran) return std::unexpected(ran.error().Wrap("cannot run the gates"));
    GateResult result = std::move(*ran);

    GateReport report;
    report.name = name();
    report.kind = std::string(kind());
    report.verdict = result.passed ? GateVerdict::kPass : GateVerdict::kFail;
    report.cancelled = result.cancelled;
    report.log = result.output_tail;
    if (!result.passed) {
      report.error = "gate '" + name() + "' failed";
      if (result.quota_exceeded) {
        report.error += ": " + result.quota_message;
      } else {
        report.error += result.timed_out ? std::string(" (timed out)")
                                         : " (exit " + std::to_string(result.exit_code) + ")";
      }
      report.feedback = GateFeedback(result);
    }
    report.command = std::move(result);
    return report;
  }

 private:
  const GateConfig config_;
  const GateRunOptions options_;
};

}  // namespace

int StageOf(std::string_view kind) {
  return kind == GateKindName(GateKind::kReview) ? kReviewStage : kCommandStage;
}

Status GateRegistry::Register(std::string kind, GateFactory factory, bool replace) {
  if (kind.empty()) return InvalidArgument("a gate kind needs a name");
  if (!factory) return InvalidArgument("gate kind '" + kind + "' has no factory");
  if (!replace && factories_.contains(kind)) {
    return AlreadyExists("gate kind '" + kind + "' is already registered");
  }
  factories_.insert_or_assign(std::move(kind), std::move(factory));
  return Ok();
}

Result<std::unique_ptr<Gate>> GateRegistry::Make(const GateConfig& config) const {
  const std::string_view kind = GateKindName(config.kind);
  auto it = factories_.find(kind);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [name, factory] : factories_) known += (known.empty() ? "" : ", ") + name;
    return InvalidArgument("gate '" + config.name + "': unknown gate kind '" + std::string(kind) +
                           "' (known: " + known + ")");
  }
  return it->second(config);
}

Result<std::vector<std::unique_ptr<Gate>>> GateRegistry::MakeAll(
    const std::vector<GateConfig>& configs) const {
  std::vector<std::unique_ptr<Gate>> gates;
  for (const GateConfig& config : configs) {
    FACTORY_ASSIGN_OR_RETURN(std::unique_ptr<Gate> gate, Make(config));
    gates.push_back(std::move(gate));
  }
  std::stable_sort(gates.begin(), gates.end(), [](const auto& a, const auto& b) {
    return StageOf(a->kind()) < StageOf(b->kind());
  });
  return gates;
}

std::vector<std::string> GateRegistry::Kinds() const {
  std::vector<std::string> kinds;
  for (const auto& [name, factory] : factories_) kinds.push_back(name);
  return kinds;
}

std::unique_ptr<Gate> MakeCommandGate(const GateConfig& config, GateRunOptions options) {
  return std::make_unique<CommandGate>(config, std::move(options));
}

GateRegistry CommandGateRegistry(const GateRunOptions& options) {
  GateRegistry registry;
  (void)registry.Register(std::string(GateKindName(GateKind::kCommand)),
                          [options](const GateConfig& config) -> Result<std::unique_ptr<Gate>> {
                            return MakeCommandGate(config, options);
                          });
  return registry;
}

}  // namespace factory
