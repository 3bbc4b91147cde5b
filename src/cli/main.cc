// The `factory` executable: everything lives in the factory_cli library so tests can reuse it.
#include "cli/cli.h"

int main(int argc, char** argv) { return factory::cli::RunCli(argc, argv); }
