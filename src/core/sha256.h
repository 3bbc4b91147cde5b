#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace factory {

// Lower-case hex SHA-256 of data (OpenSSL).
std::string Sha256Hex(std::string_view data);

// `random_bytes` bytes from OpenSSL's CSPRNG as unpadded base64url (a bearer secret that is safe
// in URLs and headers); nullopt when the generator fails.
std::optional<std::string> RandomBase64Url(size_t random_bytes);

}  // namespace factory
